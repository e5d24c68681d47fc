// End-to-end: a federation whose coordinator is SIGKILLed after round 3 and
// restarted on the same state_dir and port ends round 6 with the same
// global model, byte for byte, as an uninterrupted run with the same seeds,
// for the strategies that keep state across rounds (fedavgm's velocity,
// fedadam's moments, SCAFFOLD's server control variate in the checkpoint,
// the agents' control variates in their state dirs). The real
// fedge-coordinator and fedge-agent binaries on 127.0.0.1, synthetic data.
//
// The kill falls between rounds, before any agent starts round 4: an agent
// stores its SCAFFOLD control variate as soon as it has trained and answers
// a round only once, so a round trained before the kill would not be the
// same round after it (docs/strategies.md).
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/model_codec.h"
#include "gmock/gmock.h"
#include "tests/e2e/federation_fixture.h"
#include "tests/e2e/model_diff.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kRounds = 6;
constexpr int kKillAfter = 3;
constexpr int kAgents = 3;

// Every call an agent makes waits this long first: after a round closes,
// no agent can start training the next one (fetch its model) before this
// has passed, which leaves the coordinator time to checkpoint, evaluate and
// record the round, and the test time to kill it between rounds.
constexpr char kAgentLatency[] = "--profile.added_latency_ms=1000";

// "model vN sha256 H" of every "round N completed" line of a coordinator
// log: version -> the hash's first 12 hex digits.
std::map<int, std::string> VersionHashes(const std::string& log) {
  std::map<int, std::string> hashes;
  const std::string key = " model v";
  for (size_t at = log.find(key); at != std::string::npos;
       at = log.find(key, at + 1)) {
    const size_t space = log.find(' ', at + key.size());
    int version;
    if (space == std::string::npos ||
        !absl::SimpleAtoi(log.substr(at + key.size(), space - at - key.size()),
                          &version) ||
        log.compare(space, 8, " sha256 ") != 0) {
      continue;
    }
    hashes[version] = log.substr(space + 8, 12);
  }
  return hashes;
}

std::string DescribeHashes(const std::map<int, std::string>& a,
                           const std::map<int, std::string>& b) {
  std::string out;
  for (const auto& [version, hash] : a) {
    auto it = b.find(version);
    absl::StrAppend(&out, "  v", version, ": ", hash, " vs ",
                    it == b.end() ? "-" : it->second,
                    it != b.end() && it->second == hash ? "" : "  <- differs",
                    "\n");
  }
  return out;
}

// How two encoded models differ, or why they cannot be compared.
std::string MaxAbsDifference(const std::string& a, const std::string& b) {
  absl::StatusOr<ModelState> ma = DecodeModel(a);
  absl::StatusOr<ModelState> mb = DecodeModel(b);
  if (!ma.ok() || !mb.ok()) return "the models do not decode";
  return Describe(CompareModels(*ma, *mb));
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos;
       at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

class ResumeEqualityTest : public FederationTest,
                           public ::testing::WithParamInterface<std::string> {
 protected:
  std::vector<std::string> CoordinatorFlags() const {
    return {"--strategy.name=" + GetParam(), absl::StrCat("--rounds=", kRounds),
            absl::StrCat("--strategy.count=", kAgents),
            absl::StrCat("--strategy.min_available_agents=", kAgents),
            absl::StrCat("--strategy.min_fit_agents=", kAgents),
            // The agents' added latency makes them slow to show signs of
            // life when idle; they are not meant to time out here.
            "--agent_timeout_ms=60000", "--keep_checkpoints=10"};
  }

  // Starts the agents one at a time, each once the previous one joined, so
  // that the coordinator hands out the partitions in the same order in
  // every run (agent-i gets partition i - 1).
  void StartAgents(int port, Process& coordinator) {
    for (int i = 1; i <= kAgents; ++i) {
      agents_.push_back(StartAgent(i, port, {kAgentLatency}));
      const std::string joined = absl::StrCat("agent agent-", i, " joined");
      ASSERT_TRUE(WaitFor(
          [&] { return coordinator.Log().find(joined) != std::string::npos; },
          absl::Seconds(60)))
          << coordinator.Log();
    }
  }

  std::string FinalModel() const {
    return ReadFileOrEmpty(dir_ + "/coordinator/final_model.fedge");
  }

  std::vector<std::unique_ptr<Process>> agents_;
};

TEST_P(ResumeEqualityTest, SigkillAfterRound3_Round6ModelEqualsUninterrupted) {
  // The uninterrupted run.
  ASSERT_NO_FATAL_FAILURE(UseRunDir("uninterrupted"));
  int port;
  auto straight = StartCoordinator(CoordinatorFlags(), &port);
  ASSERT_NO_FATAL_FAILURE(StartAgents(port, *straight));
  ASSERT_EQ(straight->Wait(absl::Seconds(240)), 0) << straight->Log();
  const std::string expected = FinalModel();
  ASSERT_FALSE(expected.empty()) << straight->Log();
  const std::string straight_log = straight->Log();
  agents_.clear();  // Stops them.

  // The same federation, its coordinator killed between rounds 3 and 4.
  ASSERT_NO_FATAL_FAILURE(UseRunDir("resumed"));
  auto first = StartCoordinator(CoordinatorFlags(), &port);
  ASSERT_NO_FATAL_FAILURE(StartAgents(port, *first));
  const std::string ckpt = absl::StrFormat(
      "%s/coordinator/checkpoints/ckpt-%08d.fedge", dir_, kKillAfter);
  ASSERT_TRUE(WaitFor(
      [&] {
        return History().size() >= static_cast<size_t>(kKillAfter) &&
               !ReadFileOrEmpty(ckpt).empty();
      },
      absl::Seconds(180)))
      << first->Log();
  first->Signal(SIGKILL);
  first->Wait(absl::Seconds(10));
  const std::string first_log = first->Log();
  ASSERT_EQ(History().size(), static_cast<size_t>(kKillAfter)) << first_log;
  // A round the agents had started before the kill would be trained twice.
  const std::string next_round = absl::StrCat("round ", kKillAfter + 1, ":");
  for (const auto& agent : agents_) {
    ASSERT_THAT(agent->Log(), Not(HasSubstr(next_round)))
        << "killed too late: an agent already worked on " << next_round;
  }
  std::vector<std::string> restart_flags = CoordinatorFlags();
  restart_flags.push_back(absl::StrCat("--listen_address=127.0.0.1:", port));
  int port2;
  auto restarted =
      StartCoordinator(restart_flags, &port2, "coordinator-restarted");
  ASSERT_EQ(port2, port);
  ASSERT_EQ(restarted->Wait(absl::Seconds(240)), 0) << restarted->Log();
  const std::string resumed_log = restarted->Log();
  EXPECT_THAT(resumed_log,
              HasSubstr(absl::StrCat("resumed from checkpoint: model version ",
                                     kKillAfter)));
  EXPECT_EQ(History().size(), static_cast<size_t>(kRounds)) << resumed_log;
  // Each agent trained each round once (none twice, none skipped).
  for (int i = 0; i < kAgents; ++i) {
    const std::string log = agents_[i]->Log();
    for (int round = 1; round <= kRounds; ++round) {
      EXPECT_EQ(Count(log, absl::StrCat("round ", round, ": model in")), 1)
          << "agent-" << i + 1 << ", round " << round << ":\n"
          << log;
    }
  }

  const std::string actual = FinalModel();
  ASSERT_FALSE(actual.empty()) << resumed_log;
  std::map<int, std::string> straight_hashes = VersionHashes(straight_log);
  std::map<int, std::string> resumed_hashes = VersionHashes(first_log);
  for (const auto& [v, h] : VersionHashes(resumed_log)) resumed_hashes[v] = h;
  EXPECT_TRUE(actual == expected)
      << GetParam() << ": the resumed run's round-" << kRounds
      << " model differs from the uninterrupted run's ("
      << MaxAbsDifference(expected, actual)
      << "); model hashes by version, uninterrupted vs resumed:\n"
      << DescribeHashes(straight_hashes, resumed_hashes);
}

INSTANTIATE_TEST_SUITE_P(StatefulStrategies, ResumeEqualityTest,
                         ::testing::Values("fedavgm", "fedadam", "scaffold"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace fedge::testing
