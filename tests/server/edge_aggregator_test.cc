// The edge aggregator's upstream loop with a scripted upstream
// (FakeCoordinatorClient) and a fake downstream federation: no server, no
// threads but the heartbeat's, a FakeClock and a sleeper that advances it.
#include "server/edge_aggregator.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/clock.h"
#include "common/fl_config.h"
#include "common/model_signature.h"
#include "common/signing.h"
#include "common/tensor_buffer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/edge_agent/fake_coordinator_client.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ModelState Model(float w0, float w1) {
  ModelState m;
  m.Add(*TensorBuffer::FromFloats("w", {2}, std::vector<float>{w0, w1}));
  return m;
}

// Records the rounds asked for and answers from a script.
class FakeDownstream : public EdgeDownstream {
 public:
  std::vector<EdgeRoundRequest> requests;
  std::deque<absl::StatusOr<EdgeRoundResult>> results;
  std::vector<std::pair<ModelState, int64_t>> finished;

  absl::StatusOr<EdgeRoundResult> RunRound(EdgeRoundRequest request) override {
    requests.push_back(std::move(request));
    if (results.empty()) return absl::UnavailableError("no script");
    absl::StatusOr<EdgeRoundResult> r = std::move(results.front());
    results.pop_front();
    return r;
  }
  void Finish(ModelState final_model, int64_t version) override {
    finished.emplace_back(std::move(final_model), version);
  }
};

v1::PollResponse TrainTask(int64_t round, int64_t version,
                           int64_t remaining_ms = 60000) {
  v1::PollResponse p;
  v1::TrainTask* t = p.mutable_train();
  t->set_round(round);
  t->set_model_version(version);
  t->set_model_sha256("sha");
  t->set_deadline_remaining_ms(remaining_ms);
  v1::TrainPlanProto* plan = t->mutable_plan();
  plan->set_epochs(2);
  plan->set_batch_size(16);
  plan->set_learning_rate(0.05);
  plan->set_proximal_mu(0.01);
  plan->set_seed(99);
  plan->set_update_encoding("int8");
  return p;
}

v1::PollResponse Finished(int64_t version) {
  v1::PollResponse p;
  p.set_finished(true);
  p.set_latest_model_version(version);
  p.set_latest_model_sha256("final-sha");
  return p;
}

EdgeRoundResult Result(ModelState delta, int64_t examples) {
  EdgeRoundResult r;
  r.delta = std::move(delta);
  r.num_examples = examples;
  r.num_agents = 3;
  r.train_loss = 0.25;
  r.train_accuracy = 0.5;
  return r;
}

class EdgeAggregatorTest : public ::testing::Test {
 protected:
  std::unique_ptr<EdgeAggregator> Make() {
    EdgeAggregatorOptions o;
    o.agent_id = "edge-1";
    o.architectures = {"2nn"};
    o.upload_margin = absl::Seconds(5);
    absl::StatusOr<std::unique_ptr<EdgeAggregator>> e = EdgeAggregator::Create(
        o, &upstream_, &downstream_, &clock_, [this](absl::Duration d) {
          slept_.push_back(d);
          clock_.Advance(d);
        });
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }

  FakeClock clock_;
  FakeCoordinatorClient upstream_;
  FakeDownstream downstream_;
  std::vector<absl::Duration> slept_;
};

TEST_F(EdgeAggregatorTest, Task_RunsOneDownstreamRound_SubmitsItsAggregate) {
  upstream_.models[4] = Model(1, 2);
  upstream_.models[7] = Model(5, 6);
  upstream_.poll_results = {TrainTask(/*round=*/5, /*version=*/4), Finished(7)};
  downstream_.results.push_back(Result(Model(0.5f, -0.25f), 1234));
  std::unique_ptr<EdgeAggregator> edge = Make();
  const absl::Time start = clock_.Now();
  ASSERT_EQ(edge->Run(), absl::OkStatus());

  ASSERT_EQ(upstream_.joins.size(), 1u);
  EXPECT_EQ(upstream_.joins[0].agent_id(), "edge-1");
  EXPECT_THAT(upstream_.joins[0].architectures(), ElementsAre("2nn"));
  // The downstream round: the upstream's round, version, model and plan.
  ASSERT_EQ(downstream_.requests.size(), 1u);
  const EdgeRoundRequest& r = downstream_.requests[0];
  EXPECT_EQ(r.upstream_round, 5);
  EXPECT_EQ(r.model_version, 4);
  EXPECT_EQ(EncodeModel(r.model), EncodeModel(Model(1, 2)));
  EXPECT_EQ(r.plan.epochs, 2);
  EXPECT_EQ(r.plan.batch_size, 16);
  EXPECT_DOUBLE_EQ(r.plan.learning_rate, 0.05);
  EXPECT_DOUBLE_EQ(r.plan.proximal_mu, 0.01);
  EXPECT_EQ(r.plan.update_encoding.kind, UpdateEncoding::kInt8);
  // It closes the upload margin before the upstream's deadline.
  EXPECT_EQ(r.close_by, start + absl::Seconds(55));
  // One update upstream: the aggregate, raw, weighted by the examples.
  ASSERT_EQ(upstream_.submits.size(), 1u);
  const v1::UpdateMetadata& m = upstream_.submits[0];
  EXPECT_EQ(m.round(), 5);
  EXPECT_EQ(m.base_version(), 4);
  EXPECT_EQ(m.num_examples(), 1234);
  EXPECT_DOUBLE_EQ(m.metrics().loss(), 0.25);
  EXPECT_EQ(m.session_token(), "s1");
  EXPECT_FALSE(m.upload_id().empty());
  EXPECT_TRUE(upstream_.encoded_sizes.empty());  // fp32.
  ASSERT_EQ(upstream_.submitted_deltas.size(), 1u);
  EXPECT_EQ(EncodeModel(upstream_.submitted_deltas[0]),
            EncodeModel(Model(0.5f, -0.25f)));
  // Finished: the final model goes downstream, then it leaves.
  ASSERT_EQ(downstream_.finished.size(), 1u);
  EXPECT_EQ(downstream_.finished[0].second, 7);
  EXPECT_EQ(EncodeModel(downstream_.finished[0].first),
            EncodeModel(Model(5, 6)));
  EXPECT_THAT(upstream_.leaves, ElementsAre("s1"));
  EXPECT_EQ(edge->stats().updates_submitted, 1);
}

TEST_F(EdgeAggregatorTest, ShortTask_ClosesAtHalfItsTime) {
  upstream_.models[0] = Model(1, 2);
  upstream_.poll_results = {TrainTask(1, 0, /*remaining_ms=*/6000)};
  downstream_.results.push_back(Result(Model(0, 0), 10));
  const absl::Time start = clock_.Now();
  ASSERT_EQ(Make()->Run(), absl::OkStatus());
  ASSERT_EQ(downstream_.requests.size(), 1u);
  EXPECT_EQ(downstream_.requests[0].close_by, start + absl::Seconds(3));
}

TEST_F(EdgeAggregatorTest, NoAggregate_ReportsFailureUpstream) {
  upstream_.models[0] = Model(1, 2);
  upstream_.poll_results = {TrainTask(1, 0)};
  downstream_.results.push_back(
      absl::AbortedError("round 1 produced no aggregate"));
  std::unique_ptr<EdgeAggregator> edge = Make();
  ASSERT_EQ(edge->Run(), absl::OkStatus());
  EXPECT_TRUE(upstream_.submits.empty());
  ASSERT_EQ(upstream_.failures.size(), 1u);
  EXPECT_EQ(upstream_.failures[0].round(), 1);
  EXPECT_EQ(upstream_.failures[0].reason(), v1::FAILURE_REASON_DOWNSTREAM);
  EXPECT_THAT(upstream_.failures[0].detail(), HasSubstr("no aggregate"));
}

// A task whose model `signer` signed (the fake upstream's spec).
v1::PollResponse SignedTask(int64_t round, int64_t version,
                            const ModelSigner& signer) {
  v1::PollResponse p = TrainTask(round, version);
  const std::string sha(64, 'a');
  p.mutable_train()->set_model_sha256(sha);
  v1::ModelSpecProto spec;
  spec.set_architecture("2nn");
  absl::StatusOr<ModelSignature> s = signer.Sign(version, spec, sha);
  EXPECT_TRUE(s.ok()) << s.status();
  if (s.ok()) {
    p.mutable_train()->set_model_signature(s->signature);
    p.mutable_train()->set_model_signing_key_id(s->key_id);
  }
  return p;
}

TEST_F(EdgeAggregatorTest, PinnedKeys_AnUpstreamModelThatFailsRunsNoRound) {
  Ed25519PrivateKey key = *Ed25519PrivateKey::Generate();
  const ModelVerifier pinned({key.public_key()});
  const ModelSigner upstream_signer(std::move(key));
  const ModelSigner other(*Ed25519PrivateKey::Generate());
  upstream_.models[0] = Model(1, 2);
  v1::PollResponse unsigned_task = TrainTask(3, 0);
  unsigned_task.mutable_train()->set_model_sha256(std::string(64, 'a'));
  upstream_.poll_results = {SignedTask(1, 0, other), unsigned_task,
                            SignedTask(4, 0, upstream_signer)};
  downstream_.results.push_back(Result(Model(0.5f, -0.25f), 10));
  EdgeAggregatorOptions o;
  o.agent_id = "edge-1";
  o.architectures = {"2nn"};
  o.model_verifier = &pinned;
  absl::StatusOr<std::unique_ptr<EdgeAggregator>> edge =
      EdgeAggregator::Create(o, &upstream_, &downstream_, &clock_,
                             [this](absl::Duration d) { clock_.Advance(d); });
  ASSERT_TRUE(edge.ok()) << edge.status();
  // Runs until the script ends (the fake then says finished).
  ASSERT_EQ((*edge)->Run(), absl::OkStatus());
  // Another key's and an unsigned model: refused before any downstream
  // round, reported upstream with the reason.
  ASSERT_EQ(upstream_.failures.size(), 2u);
  EXPECT_EQ(upstream_.failures[0].round(), 1);
  EXPECT_EQ(upstream_.failures[0].reason(), v1::FAILURE_REASON_MODEL_SIGNATURE);
  EXPECT_EQ(upstream_.failures[1].round(), 3);
  EXPECT_EQ(upstream_.failures[1].reason(), v1::FAILURE_REASON_MODEL_SIGNATURE);
  // The pinned key's model: one downstream round, its aggregate upstream.
  ASSERT_EQ(downstream_.requests.size(), 1u);
  EXPECT_EQ(downstream_.requests[0].upstream_round, 4);
  ASSERT_EQ(upstream_.submits.size(), 1u);
  EXPECT_EQ(upstream_.submits[0].round(), 4);
}

TEST_F(EdgeAggregatorTest, DeadUpstream_RetriedWithBackoff_ThenJoins) {
  upstream_.join_results = {absl::UnavailableError("down"),
                            absl::UnavailableError("down"),
                            absl::UnavailableError("down")};
  std::unique_ptr<EdgeAggregator> edge = Make();
  ASSERT_EQ(edge->Run(), absl::OkStatus());
  EXPECT_EQ(upstream_.joins.size(), 4u);
  ASSERT_EQ(slept_.size(), 3u);
  // Exponential with jitter: in [bound / 2, bound], the bound doubling.
  EXPECT_GE(slept_[0], absl::Milliseconds(100));
  EXPECT_LE(slept_[0], absl::Milliseconds(200));
  EXPECT_GE(slept_[2], absl::Milliseconds(400));
  EXPECT_LE(slept_[2], absl::Milliseconds(800));
  EXPECT_EQ(edge->stats().joins, 1);
}

TEST_F(EdgeAggregatorTest, RefusedJoin_EndsRun) {
  upstream_.join_default = absl::PermissionDeniedError("evicted");
  EXPECT_EQ(Make()->Run().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(downstream_.requests.empty());
}

TEST_F(EdgeAggregatorTest, LostSession_JoinsAgainAndGetsTheTask) {
  upstream_.models[0] = Model(1, 2);
  upstream_.poll_results = {absl::UnauthenticatedError("unknown session"),
                            TrainTask(1, 0)};
  downstream_.results.push_back(Result(Model(1, 1), 10));
  ASSERT_EQ(Make()->Run(), absl::OkStatus());
  EXPECT_EQ(upstream_.joins.size(), 2u);
  ASSERT_EQ(upstream_.submits.size(), 1u);
  EXPECT_EQ(upstream_.submits[0].session_token(), "s2");
}

TEST_F(EdgeAggregatorTest, SubmitUnavailable_RetriedWithTheSameUploadId) {
  upstream_.models[0] = Model(1, 2);
  upstream_.poll_results = {TrainTask(1, 0)};
  upstream_.submit_results = {absl::UnavailableError("busy")};
  downstream_.results.push_back(Result(Model(1, 1), 10));
  ASSERT_EQ(Make()->Run(), absl::OkStatus());
  ASSERT_EQ(upstream_.submits.size(), 2u);
  EXPECT_EQ(upstream_.submits[0].upload_id(), upstream_.submits[1].upload_id());
  EXPECT_EQ(upstream_.accepted_uploads.size(), 1u);
}

TEST_F(EdgeAggregatorTest, ScaffoldTask_RefusedWithoutADownstreamRound) {
  v1::PollResponse task = TrainTask(1, 0);
  task.mutable_train()->set_client_algorithm("scaffold");
  upstream_.models[0] = Model(1, 2);
  upstream_.poll_results = {task};
  ASSERT_EQ(Make()->Run(), absl::OkStatus());
  EXPECT_TRUE(downstream_.requests.empty());
  EXPECT_TRUE(upstream_.submits.empty());
  ASSERT_EQ(upstream_.failures.size(), 1u);
  EXPECT_THAT(upstream_.failures[0].detail(), HasSubstr("scaffold"));
}

TEST_F(EdgeAggregatorTest, Stop_LeavesAndReturns) {
  upstream_.poll_results = {};
  std::unique_ptr<EdgeAggregator> edge = Make();
  edge->Stop();
  EXPECT_EQ(edge->Run(), absl::OkStatus());
  EXPECT_TRUE(upstream_.joins.empty());
}

TEST(EdgeAggregatorCreateTest, RefusesMissingIdAndCollaborators) {
  FakeClock clock;
  FakeCoordinatorClient upstream;
  FakeDownstream downstream;
  EdgeAggregatorOptions o;
  auto sleep = [](absl::Duration) {};
  EXPECT_EQ(EdgeAggregator::Create(o, &upstream, &downstream, &clock, sleep)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  o.agent_id = "e";
  EXPECT_EQ(EdgeAggregator::Create(o, nullptr, &downstream, &clock, sleep)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      EdgeAggregator::Create(o, &upstream, &downstream, &clock, sleep).ok());
}

// Edge mode's config errors name the field (common/fl_config.cc).
TEST(EdgeConfigTest, BadEdgeConfig_ErrorNamesTheField) {
  v1::CoordinatorConfig c;
  c.mutable_tls()->set_insecure(true);
  ASSERT_EQ(ValidateCoordinatorConfig(c), absl::OkStatus());
  c.mutable_upstream()->set_address("127.0.0.1:1");
  EXPECT_THAT(ValidateCoordinatorConfig(c).message(),
              HasSubstr("'upstream.agent_id'"));
  c.mutable_upstream()->set_agent_id("edge-1");
  EXPECT_THAT(ValidateCoordinatorConfig(c).message(),
              HasSubstr("'upstream.tls.ca_path'"));
  c.mutable_upstream()->mutable_tls()->set_ca_path("ca.pem");
  ASSERT_EQ(ValidateCoordinatorConfig(c), absl::OkStatus());
  for (const char* name : {"median", "scaffold", "fedadam", "trimmed_mean"}) {
    v1::CoordinatorConfig bad = c;
    bad.mutable_strategy()->set_name(name);
    const absl::Status s = ValidateCoordinatorConfig(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(s.message(), HasSubstr("'strategy.name' must be fedavg"));
  }
  v1::CoordinatorConfig bad = c;
  bad.mutable_strategy()->set_mode("fedbuff");
  EXPECT_THAT(ValidateCoordinatorConfig(bad).message(),
              HasSubstr("'strategy.mode'"));
  bad = c;
  bad.mutable_strategy()->set_fraction_evaluate(0.5);
  EXPECT_THAT(ValidateCoordinatorConfig(bad).message(),
              HasSubstr("'strategy.fraction_evaluate'"));
  bad = c;
  bad.mutable_strategy()->set_server_learning_rate(0.5);
  EXPECT_THAT(ValidateCoordinatorConfig(bad).message(),
              HasSubstr("'strategy.server_learning_rate'"));
}

}  // namespace
}  // namespace fedge
