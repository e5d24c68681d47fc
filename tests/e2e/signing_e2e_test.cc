// End-to-end: signed global models (docs/model-signing.md) with the real
// fedge-coordinator, fedge-agent and fedge binaries on 127.0.0.1 (TLS,
// synthetic data). The keys are deploy/make-certs.sh's: model-signing.key
// and .pub.pem in CertDir(), and another pair in CertDir()/foreign.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "tests/e2e/federation_fixture.h"

namespace fedge::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

class SigningTest : public FederationTest {
 protected:
  static std::string Key() { return CertDir() + "/model-signing.key"; }
  static std::string PublicKey() {
    return CertDir() + "/model-signing.pub.pem";
  }
  static std::string ForeignPublicKey() {
    return CertDir() + "/foreign/model-signing.pub.pem";
  }
  static std::string Pin(const std::string& pub) {
    return "--model_signing_public_key_paths=" + pub;
  }

  // `fedge-agent predict` on agent i's state dir, with `flags`; its exit
  // code, and its output in *log.
  std::optional<int> Predict(int i, const std::vector<std::string>& flags,
                             std::string* log) {
    std::vector<std::string> argv = {
        kBinaryDir + "/edge_agent/fedge-agent", "predict",
        absl::StrCat("--state_dir=", dir_, "/agent-", i),
        "--data.source=synthetic", "--limit=20"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    Process p(argv, absl::StrCat(dir_, "/predict-", ++runs_, ".log"));
    std::optional<int> code = p.Wait(absl::Seconds(60));
    *log = p.Log();
    return code;
  }

  // The global model's SHA-256 as `fedge status` reports it.
  std::string ModelSha(int port) {
    const auto [code, log] = RunFedge(port, {"status"});
    EXPECT_EQ(code, 0) << log;
    const size_t at = log.find("model_sha256: \"");
    if (at == std::string::npos) return "";
    return log.substr(at + 15, 64);
  }

  bool LogShows(Process& p, const std::string& what) {
    return WaitFor([&] { return absl::StrContains(p.Log(), what); },
                   absl::Seconds(90));
  }

  int runs_ = 0;
};

// The newest model file in agent i's cache ("" when none).
std::string NewestCachedModel(const std::string& state_dir) {
  std::string newest;
  int64_t newest_version = -1;
  for (const fs::directory_entry& e :
       fs::directory_iterator(state_dir + "/models")) {
    const std::string file = e.path().filename().string();
    absl::string_view name = file;
    int64_t v;
    if (absl::ConsumePrefix(&name, "model-") &&
        absl::ConsumeSuffix(&name, ".fedge") && absl::SimpleAtoi(name, &v) &&
        v > newest_version) {
      newest_version = v;
      newest = e.path().string();
    }
  }
  return newest;
}

// (1) and (3): a signed federation trains; its agents keep the signatures
// with their cached models and predict offline; a cached model tampered
// with so that its SHA-256 file still matches is refused by predict.
TEST_F(SigningTest, SignedFederation_Trains_TamperedCacheRefusedByPredict) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=2", "--strategy.count=2", "--strategy.min_available_agents=2",
       "--strategy.min_fit_agents=2", "--model_signing_key_path=" + Key()},
      &port);
  auto a1 = StartAgent(1, port, {Pin(PublicKey())});
  auto a2 = StartAgent(2, port, {Pin(PublicKey())});
  ASSERT_EQ(coordinator->Wait(absl::Seconds(180)), 0) << coordinator->Log();
  EXPECT_EQ(a1->Wait(absl::Seconds(60)), 0) << a1->Log();
  EXPECT_EQ(a2->Wait(absl::Seconds(60)), 0) << a2->Log();
  EXPECT_THAT(coordinator->Log(), HasSubstr("signing global models with key"));
  const auto rows = History();
  ASSERT_EQ(rows.size(), 2u) << coordinator->Log();
  for (const auto& row : rows) EXPECT_EQ(row.at("num_agents"), "2");
  for (Process* a : {a1.get(), a2.get()}) {
    EXPECT_THAT(a->Log(), HasSubstr("verifying global models against"));
    EXPECT_THAT(a->Log(), Not(HasSubstr("refusing model")));
  }

  const std::string model = NewestCachedModel(dir_ + "/agent-1");
  ASSERT_FALSE(model.empty());
  const std::string stem = model.substr(0, model.size() - 6);  // ".fedge"
  EXPECT_TRUE(fs::exists(stem + ".sig")) << stem;
  std::string log;
  EXPECT_EQ(Predict(1, {Pin(PublicKey())}, &log), 0) << log;
  EXPECT_THAT(log, HasSubstr("accuracy"));
  // Pinned to another key, the same cache is refused.
  EXPECT_EQ(Predict(1, {Pin(ForeignPublicKey())}, &log), 1) << log;
  EXPECT_THAT(log, HasSubstr("not pinned"));

  // Tamper: flip a bit of the last weight and record the new SHA-256, so
  // that the cache's own hash check passes.
  std::string bytes = ReadFileOrEmpty(model);
  ASSERT_GT(bytes.size(), 4u);
  bytes[bytes.size() - 4] ^= 0x01;
  std::ofstream(model, std::ios::binary | std::ios::trunc) << bytes;
  std::ofstream(stem + ".sha256", std::ios::trunc)
      << ToHex(Sha256Of(bytes)) << "\n";
  // Without a pinned key the tampered model is used (the hash matches) ...
  EXPECT_EQ(Predict(1, {}, &log), 0) << log;
  EXPECT_THAT(log, HasSubstr("not verified"));
  // ... with the key it is refused, naming the version and the reason.
  EXPECT_EQ(Predict(1, {Pin(PublicKey())}, &log), 1) << log;
  EXPECT_THAT(log, HasSubstr("refusing the cached model"));
  EXPECT_THAT(log, HasSubstr("does not verify"));
}

// (2): an agent that pins another key refuses to train, gives the round up
// with the reason, and the global model stays what it was; an agent with
// the right key then trains it.
TEST_F(SigningTest, AgentPinnedToAnotherKey_RefusesToTrain_ModelUnchanged) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=2", "--strategy.count=1", "--strategy.min_available_agents=1",
       "--strategy.min_fit_agents=1", "--strategy.round_deadline_ms=20000",
       "--model_signing_key_path=" + Key()},
      &port);
  const std::string initial = ModelSha(port);
  ASSERT_EQ(initial.size(), 64u);
  auto wrong = StartAgent(2, port, {Pin(ForeignPublicKey())});
  ASSERT_TRUE(LogShows(*wrong, "round 1: refusing model version 0"))
      << wrong->Log();
  EXPECT_THAT(wrong->Log(), HasSubstr("not pinned"));
  ASSERT_TRUE(LogShows(*coordinator, "agent agent-2 gave up round 1"))
      << coordinator->Log();
  ASSERT_TRUE(WaitForRounds(1, absl::Seconds(60))) << coordinator->Log();
  EXPECT_EQ(History()[0]["num_agents"], "0");
  EXPECT_EQ(History()[0]["num_failed"], "1");
  EXPECT_EQ(ModelSha(port), initial);
  EXPECT_THAT(wrong->Log(), Not(HasSubstr("submitted in")));
  EXPECT_FALSE(fs::exists(dir_ + "/agent-2/models/model-0.fedge"));
  wrong->Signal(SIGTERM);
  EXPECT_EQ(wrong->Wait(absl::Seconds(60)), 0) << wrong->Log();
  EXPECT_EQ(ModelSha(port), initial);

  auto right = StartAgent(1, port, {Pin(PublicKey())});
  ASSERT_EQ(coordinator->Wait(absl::Seconds(180)), 0) << coordinator->Log();
  EXPECT_EQ(right->Wait(absl::Seconds(60)), 0) << right->Log();
  const auto rows = History();
  ASSERT_GE(rows.size(), 3u);
  EXPECT_EQ(rows.back().at("num_agents"), "1");
  EXPECT_THAT(right->Log(), Not(HasSubstr("refusing model")));
}

// (4) A stream whose models carry no valid signature: a coordinator that
// signs nothing (as a relay that strips or replaces signatures would send
// them). The pinning agent fetches nothing, trains nothing, and the model
// stays.
TEST_F(SigningTest, UnsignedStream_RefusedByPinningAgent_ModelUnchanged) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=1", "--strategy.count=1", "--strategy.min_available_agents=1",
       "--strategy.min_fit_agents=1", "--strategy.round_deadline_ms=20000",
       "--exit_when_done=false"},
      &port);
  EXPECT_TRUE(LogShows(*coordinator, "published unsigned"));
  const std::string initial = ModelSha(port);
  auto agent = StartAgent(1, port, {Pin(PublicKey())});
  ASSERT_TRUE(LogShows(*agent, "round 1: refusing model version 0"))
      << agent->Log();
  EXPECT_THAT(agent->Log(), HasSubstr("carries no signature"));
  ASSERT_TRUE(WaitForRounds(1, absl::Seconds(60))) << coordinator->Log();
  EXPECT_EQ(History()[0]["num_agents"], "0");
  EXPECT_EQ(ModelSha(port), initial);
  EXPECT_FALSE(fs::exists(dir_ + "/agent-1/models/model-0.fedge"));
  agent->Signal(SIGTERM);
  EXPECT_EQ(agent->Wait(absl::Seconds(60)), 0) << agent->Log();
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(coordinator->Wait(absl::Seconds(60)), 0) << coordinator->Log();
}

}  // namespace
}  // namespace fedge::testing
