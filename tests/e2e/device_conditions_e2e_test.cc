// End-to-end: agents that train only on external power (their
// power_supply folder is one the test writes), with the real
// fedge-coordinator, fedge-agent and fedge binaries on 127.0.0.1 (TLS,
// synthetic data). Bounded in time; the power flips are triggered by what
// the processes log or do, never by a guess at how long something takes.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "tests/e2e/federation_fixture.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos;
       at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

// User + system CPU seconds of process `pid` so far (-1 when unreadable).
double CpuSeconds(pid_t pid) {
  const std::string stat =
      ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/stat"));
  const size_t end = stat.rfind(')');  // After the command name.
  if (end == std::string::npos) return -1;
  std::vector<std::string> f =
      absl::StrSplit(stat.substr(end + 2), ' ', absl::SkipEmpty());
  double user = 0, sys = 0;  // Fields 14 and 15 of the file.
  if (f.size() < 13 || !absl::SimpleAtod(f[11], &user) ||
      !absl::SimpleAtod(f[12], &sys)) {
    return -1;
  }
  return (user + sys) / sysconf(_SC_CLK_TCK);
}

class DeviceConditionsTest : public FederationTest {
 protected:
  // Agent i's power supplies: one mains supply, online or not.
  void SetPower(int i, bool online) {
    const std::string dir = absl::StrCat(dir_, "/power-", i, "/AC");
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/type") << "Mains\n";
    std::ofstream(dir + "/online.tmp") << (online ? "1\n" : "0\n");
    std::filesystem::rename(dir + "/online.tmp", dir + "/online");
  }
  std::vector<std::string> PowerFlags(int i) {
    return {"--eligibility.require_external_power=true",
            absl::StrCat("--eligibility.power_supply_dir=", dir_, "/power-", i),
            "--eligibility.check_interval_ms=100"};
  }
  // Runs `fedge ARGS` against the coordinator; its output.
  std::string Fedge(const std::vector<std::string>& args, int port) {
    return RunFedge(port, args).second;
  }
  // The coordinator's /metrics (HTTPS, its certificate).
  std::string Metrics() {
    const int http = WaitForHttpPort();
    Process p({"/usr/bin/curl", "-s", "--max-time", "10", "--cacert",
               CertDir() + "/ca.pem",
               absl::StrCat("https://127.0.0.1:", http, "/metrics")},
              absl::StrCat(dir_, "/metrics-", ++runs_, ".txt"));
    p.Wait(absl::Seconds(30));
    return p.Log();
  }
  bool LogShows(Process& p, const std::string& what) {
    return WaitFor([&] { return absl::StrContains(p.Log(), what); },
                   absl::Seconds(90));
  }

  int runs_ = 0;
};

TEST_F(DeviceConditionsTest,
       OnBattery_HoldsBackSaysWhyGivesUp_RoundClosesWithQuorum) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=2", "--strategy.count=2", "--strategy.min_available_agents=2",
       "--strategy.min_fit_agents=1", "--strategy.round_deadline_ms=8000",
       "--exit_when_done=false"},
      &port);
  SetPower(2, false);
  auto a1 = StartAgent(1, port);
  auto a2 = StartAgent(2, port, PowerFlags(2));

  // Held back: the operator sees why.
  std::string agents;
  ASSERT_TRUE(WaitFor(
      [&] {
        agents = Fedge({"agents"}, port);
        return absl::StrContains(agents, "paused: power: on battery");
      },
      absl::Seconds(90)))
      << agents << a2->Log();
  EXPECT_TRUE(
      LogShows(*coordinator, "agent agent-2 holds back: power: on battery"));
  // Near the deadline it gives the round up, which closes with agent-1.
  ASSERT_TRUE(LogShows(*a2, "round 1: giving up (power: on battery)"))
      << a2->Log();
  EXPECT_TRUE(LogShows(*coordinator,
                       "agent agent-2 gave up round 1: power: on battery"));
  EXPECT_THAT(Metrics(),
              HasSubstr("fedge_agent_failures_total{reason=\"power\"} 1\n"));
  ASSERT_TRUE(WaitForRounds(1, absl::Seconds(60))) << coordinator->Log();
  EXPECT_EQ(History()[0]["num_agents"], "1");
  EXPECT_EQ(History()[0]["num_failed"], "1");

  // Power back: it trains the next round, and says nothing any more.
  SetPower(2, true);
  ASSERT_TRUE(WaitForRounds(2, absl::Seconds(120))) << coordinator->Log();
  EXPECT_EQ(History()[1]["num_agents"], "2") << a2->Log();
  EXPECT_THAT(Fedge({"agents"}, port), ::testing::Not(HasSubstr("paused")));
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(coordinator->Wait(absl::Seconds(60)), 0) << coordinator->Log();
}

TEST_F(DeviceConditionsTest, PowerLostMidTraining_ResumesAndCountsOnce) {
  int port;
  // A long local training (40 epochs), so that power goes in the middle.
  auto coordinator = StartCoordinator(
      {"--rounds=1", "--strategy.count=1", "--strategy.min_available_agents=1",
       "--strategy.min_fit_agents=1", "--strategy.round_deadline_ms=600000",
       "--train.epochs=40"},
      &port);
  SetPower(1, true);
  auto agent = StartAgent(1, port, PowerFlags(1));
  ASSERT_TRUE(LogShows(*coordinator, "round 1 started")) << coordinator->Log();
  // Training: a second of CPU after the round started.
  const double start = CpuSeconds(agent->pid());
  ASSERT_TRUE(WaitFor([&] { return CpuSeconds(agent->pid()) > start + 1; },
                      absl::Seconds(120)));
  SetPower(1, false);
  ASSERT_TRUE(LogShows(*agent, "training stopped at step")) << agent->Log();
  EXPECT_TRUE(
      LogShows(*coordinator, "agent agent-1 holds back: power: on battery"));
  SetPower(1, true);
  ASSERT_TRUE(LogShows(*agent, "round 1: resuming the training at step"))
      << agent->Log();
  ASSERT_EQ(coordinator->Wait(absl::Seconds(300)), 0) << coordinator->Log();

  ASSERT_EQ(History().size(), 1u);
  EXPECT_EQ(History()[0]["num_agents"], "1");
  EXPECT_EQ(History()[0]["num_failed"], "0");
  // One update, trained in two pieces, submitted and counted once.
  EXPECT_EQ(Count(agent->Log(), "submitted in"), 1) << agent->Log();
  EXPECT_EQ(Count(agent->Log(), "training stopped at step"), 1);
  EXPECT_THAT(agent->Log(), ::testing::Not(HasSubstr("giving up")));
  EXPECT_EQ(agent->Wait(absl::Seconds(60)), 0);
}

}  // namespace
}  // namespace fedge::testing
