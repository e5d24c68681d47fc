// The agent loop with pinned model-signing keys (AgentOptions::
// model_verifier): it trains on, evaluates and caches only models whose
// signature verifies, and gives a task with any other model up.
#include <string>

#include "common/model_signature.h"
#include "common/signing.h"
#include "edge_agent/agent.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/edge_agent/agent_test_fixture.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// A model-signing key pair: the coordinator's signer, the agents' verifier.
struct KeyPair {
  KeyPair()
      : key(*Ed25519PrivateKey::Generate()),
        signer(*Ed25519PrivateKey::FromPem(key.ToPem())),
        verifier({key.public_key()}) {}
  Ed25519PrivateKey key;
  ModelSigner signer;
  ModelVerifier verifier;
};

// The spec FakeCoordinatorClient's Join hands out.
v1::ModelSpecProto FakeSpec() {
  v1::ModelSpecProto spec;
  spec.set_architecture("2nn");
  return spec;
}

ModelSignature SignOf(const ModelSigner& signer, int64_t version,
                      const std::string& sha256_hex) {
  absl::StatusOr<ModelSignature> s =
      signer.Sign(version, FakeSpec(), sha256_hex);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.value_or(ModelSignature());
}

v1::PollResponse SignedTaskPoll(int64_t round, int64_t version,
                                const ModelState& model,
                                const ModelSignature& signature) {
  v1::PollResponse poll = TaskPoll(round, version, model);
  poll.mutable_train()->set_model_signature(signature.signature);
  poll.mutable_train()->set_model_signing_key_id(signature.key_id);
  return poll;
}

class AgentSigningTest : public AgentTest {
 protected:
  AgentOptions PinnedOptions() {
    AgentOptions o = DefaultOptions();
    o.model_verifier = &pinned_.verifier;
    return o;
  }

  // Runs an agent that pins `pinned_` through one poll of `poll` (then
  // "finished").
  std::unique_ptr<Agent> RunWith(v1::PollResponse poll) {
    client_.poll_results.push_back(std::move(poll));
    std::unique_ptr<Agent> agent = MakeAgent(PinnedOptions());
    EXPECT_EQ(agent->Run(), absl::OkStatus());
    return agent;
  }

  // Nothing was fetched, trained, submitted or cached.
  void ExpectModelUnused() {
    EXPECT_THAT(client_.fetches, IsEmpty());
    EXPECT_THAT(trainer_log_.plans, IsEmpty());
    EXPECT_THAT(client_.submits, IsEmpty());
    EXPECT_EQ(cache_->LatestVersion(), -1);
  }

  KeyPair pinned_;
  KeyPair other_;
};

TEST_F(AgentSigningTest, SignedTask_Trains_SignatureKeptWithTheCachedModel) {
  const ModelSignature sig = SignOf(pinned_.signer, 0, Sha(TinyModel(1)));
  std::unique_ptr<Agent> agent =
      RunWith(SignedTaskPoll(1, 0, TinyModel(1), sig));
  EXPECT_THAT(client_.fetches, SizeIs(1));
  EXPECT_THAT(trainer_log_.plans, SizeIs(1));
  EXPECT_THAT(client_.submits, SizeIs(1));
  EXPECT_THAT(client_.failures, IsEmpty());
  EXPECT_EQ(agent->stats().models_refused, 0);
  absl::StatusOr<CachedModel> cached = cache_->Latest();
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(cached->version, 0);
  EXPECT_EQ(cached->signature.key_id, sig.key_id);
  EXPECT_EQ(cached->signature.signature, sig.signature);
  EXPECT_EQ(pinned_.verifier.Verify(cached->version, FakeSpec(),
                                    cached->sha256_hex, cached->signature),
            absl::OkStatus());
}

TEST_F(AgentSigningTest, TaskSignedByAnotherKey_GivenUp_ModelNeverUsed) {
  const ModelSignature sig = SignOf(other_.signer, 0, Sha(TinyModel(1)));
  std::unique_ptr<Agent> agent =
      RunWith(SignedTaskPoll(1, 0, TinyModel(1), sig));
  ExpectModelUnused();
  ASSERT_THAT(client_.failures, SizeIs(1));
  EXPECT_EQ(client_.failures[0].round(), 1);
  EXPECT_EQ(client_.failures[0].reason(), v1::FAILURE_REASON_MODEL_SIGNATURE);
  EXPECT_THAT(client_.failures[0].detail(), HasSubstr("not pinned"));
  EXPECT_EQ(agent->stats().models_refused, 1);
  EXPECT_EQ(agent->stats().rounds_given_up, 1);
  // It pauses before polling again, so that the coordinator does not run
  // round after round for it.
  EXPECT_THAT(sleeps_, ::testing::Contains(DefaultOptions().max_backoff));
}

TEST_F(AgentSigningTest, UnsignedTask_GivenUp) {
  std::unique_ptr<Agent> agent = RunWith(TaskPoll(1, 0, TinyModel(1)));
  ExpectModelUnused();
  ASSERT_THAT(client_.failures, SizeIs(1));
  EXPECT_EQ(client_.failures[0].reason(), v1::FAILURE_REASON_MODEL_SIGNATURE);
  EXPECT_THAT(client_.failures[0].detail(), HasSubstr("carries no signature"));
}

// A tampered stream: the announcement names other bytes (another SHA-256,
// which the download would then match) than the signature covers.
TEST_F(AgentSigningTest, TamperedAnnouncement_GivenUp) {
  const ModelSignature sig = SignOf(pinned_.signer, 0, Sha(TinyModel(1)));
  client_.models[0] = TinyModel(666);
  std::unique_ptr<Agent> agent =
      RunWith(SignedTaskPoll(1, 0, TinyModel(666), sig));
  ExpectModelUnused();
  ASSERT_THAT(client_.failures, SizeIs(1));
  EXPECT_EQ(client_.failures[0].reason(), v1::FAILURE_REASON_MODEL_SIGNATURE);
  EXPECT_THAT(client_.failures[0].detail(),
              HasSubstr("version 0 does not verify"));
}

// The signature of version 0 replayed for version 1.
TEST_F(AgentSigningTest, SignatureOfAnotherVersion_GivenUp) {
  const ModelSignature sig = SignOf(pinned_.signer, 0, Sha(TinyModel(1)));
  client_.models[1] = TinyModel(1);
  RunWith(SignedTaskPoll(2, 1, TinyModel(1), sig));
  ExpectModelUnused();
  ASSERT_THAT(client_.failures, SizeIs(1));
  EXPECT_EQ(client_.failures[0].reason(), v1::FAILURE_REASON_MODEL_SIGNATURE);
}

TEST_F(AgentSigningTest, EvaluationOfAnUnverifiedModel_Skipped) {
  v1::PollResponse poll;
  v1::EvaluateTask* task = poll.mutable_evaluate();
  task->set_round(3);
  task->set_model_version(1);
  task->set_model_sha256(Sha(TinyModel(2)));
  const ModelSignature sig = SignOf(other_.signer, 1, Sha(TinyModel(2)));
  task->set_model_signature(sig.signature);
  task->set_model_signing_key_id(sig.key_id);
  RunWith(poll);
  ExpectModelUnused();
  EXPECT_THAT(client_.evaluations, IsEmpty());
}

TEST_F(AgentSigningTest, NewestModel_FetchedOnlyWhenItsSignatureVerifies) {
  v1::PollResponse bad = WaitPoll(10);
  bad.set_latest_model_version(1);
  bad.set_latest_model_sha256(Sha(TinyModel(2)));
  const ModelSignature wrong = SignOf(other_.signer, 1, Sha(TinyModel(2)));
  bad.set_latest_model_signature(wrong.signature);
  bad.set_latest_model_signing_key_id(wrong.key_id);
  client_.poll_results.push_back(bad);
  client_.poll_results.push_back(bad);  // Refused once, not fetched again.
  v1::PollResponse good = WaitPoll(10);
  good.set_latest_model_version(0);
  good.set_latest_model_sha256(Sha(TinyModel(1)));
  const ModelSignature right = SignOf(pinned_.signer, 0, Sha(TinyModel(1)));
  good.set_latest_model_signature(right.signature);
  good.set_latest_model_signing_key_id(right.key_id);
  client_.poll_results.push_back(good);
  std::unique_ptr<Agent> agent = MakeAgent(PinnedOptions());
  ASSERT_EQ(agent->Run(), absl::OkStatus());
  EXPECT_EQ(agent->stats().models_refused, 1);
  EXPECT_THAT(client_.fetches, testing::ElementsAre(0));
  EXPECT_EQ(cache_->LatestVersion(), 0);
  absl::StatusOr<CachedModel> cached = cache_->Latest();
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(cached->signature.signature, right.signature);
}

TEST_F(AgentSigningTest, NoKeyPinned_UnsignedTaskTrains) {
  client_.poll_results.push_back(TaskPoll(1, 0, TinyModel(1)));
  std::unique_ptr<Agent> agent = MakeAgent();  // No model_verifier.
  ASSERT_EQ(agent->Run(), absl::OkStatus());
  EXPECT_THAT(client_.submits, SizeIs(1));
  EXPECT_THAT(client_.failures, IsEmpty());
  absl::StatusOr<CachedModel> cached = cache_->Latest();
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_TRUE(cached->signature.empty());
}

}  // namespace
}  // namespace fedge
