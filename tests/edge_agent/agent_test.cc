#include "edge_agent/agent.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/dp.h"
#include "common/model_codec.h"
#include "common/sha256.h"
#include "edge_agent/model_cache.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/edge_agent/agent_test_fixture.h"

namespace fedge {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

TEST_F(AgentTest, OneRound_JoinsFetchesTrainsSubmitsAndLeaves) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  ASSERT_THAT(client_.joins, SizeIs(1));
  EXPECT_EQ(client_.joins[0].agent_id(), "agent-7");
  EXPECT_EQ(client_.joins[0].num_examples(), 600);
  EXPECT_THAT(client_.fetches, ElementsAre(0));
  EXPECT_THAT(client_.fetch_tokens, ElementsAre("s1"));
  ASSERT_THAT(trainer_log_.plans, SizeIs(1));
  EXPECT_EQ(trainer_log_.plans[0].seed, 1001u);
  EXPECT_THAT(trainer_log_.num_indices, ElementsAre(0u));  // All examples.
  ASSERT_THAT(client_.submits, SizeIs(1));
  const v1::UpdateMetadata& m = client_.submits[0];
  EXPECT_EQ(m.session_token(), "s1");
  EXPECT_EQ(m.round(), 1);
  EXPECT_EQ(m.base_version(), 0);
  EXPECT_EQ(m.num_examples(), 600);
  EXPECT_EQ(m.num_steps(), 60);
  EXPECT_DOUBLE_EQ(m.metrics().loss(), 0.31);
  EXPECT_EQ(m.upload_id().size(), 32u);
  EXPECT_THAT(client_.leaves, ElementsAre("s1"));
  EXPECT_EQ(agent->state(), AgentState::kDone);
  EXPECT_EQ(agent->stats().updates_submitted, 1);
  EXPECT_EQ(cache_->LatestVersion(), 0);  // The task's model was cached.
  EXPECT_EQ(cache_->GetSpec()->architecture(), "2nn");
}

TEST_F(AgentTest, UnreachableAtStart_BacksOffGrowingJitteredCappedThenJoins) {
  for (int i = 0; i < 6; ++i) {
    client_.join_results.push_back(
        absl::UnavailableError("connection refused"));
  }
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  ASSERT_THAT(sleeps_, SizeIs(6));
  const std::vector<int> bounds_ms = {200, 400, 800, 1000, 1000, 1000};
  bool jittered = false;
  for (size_t i = 0; i < sleeps_.size(); ++i) {
    const absl::Duration bound = absl::Milliseconds(bounds_ms[i]);
    EXPECT_GE(sleeps_[i], bound / 2) << i;
    EXPECT_LE(sleeps_[i], bound) << i;
    if (sleeps_[i] != bound && sleeps_[i] != bound / 2) jittered = true;
  }
  EXPECT_TRUE(jittered);
  EXPECT_THAT(client_.joins, SizeIs(7));
  EXPECT_EQ(agent->stats().joins, 1);
}

TEST_F(AgentTest, SubmitUnavailableTwice_RetriesSameUploadIdCountedOnce) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  client_.submit_results.push_back(absl::UnavailableError("reset"));
  client_.submit_results.push_back(absl::UnavailableError("reset"));
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  ASSERT_THAT(client_.submits, SizeIs(3));
  EXPECT_EQ(client_.submits[1].upload_id(), client_.submits[0].upload_id());
  EXPECT_EQ(client_.submits[2].upload_id(), client_.submits[0].upload_id());
  EXPECT_THAT(client_.accepted_uploads, SizeIs(1));
  EXPECT_EQ(agent->stats().updates_submitted, 1);
  EXPECT_EQ(agent->stats().updates_dropped, 0);
  EXPECT_THAT(trainer_log_.plans, SizeIs(1));  // Trained once.
}

TEST_F(AgentTest, SubmitAborted_DropsUpdateAndContinues) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  client_.poll_results.push_back(TaskPoll(2, 1, client_.models[1]));
  client_.submit_results.push_back(absl::AbortedError("round 1 is closed"));
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  ASSERT_THAT(client_.submits, SizeIs(2));
  EXPECT_EQ(client_.submits[0].round(), 1);
  EXPECT_EQ(client_.submits[1].round(), 2);
  EXPECT_NE(client_.submits[1].upload_id(), client_.submits[0].upload_id());
  EXPECT_EQ(agent->stats().updates_dropped, 1);
  EXPECT_EQ(agent->stats().updates_submitted, 1);
}

TEST_F(AgentTest, SubmitUnavailablePastDeadline_DropsUpdate) {
  v1::PollResponse poll = TaskPoll(1, 0, client_.models[0]);
  // Measured from when the task arrives, on the agent's own clock.
  poll.mutable_train()->set_deadline_remaining_ms(2000);
  client_.poll_results.push_back(poll);
  for (int i = 0; i < 100; ++i) {
    client_.submit_results.push_back(absl::UnavailableError("down"));
  }
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_GT(client_.submits.size(), 1u);
  EXPECT_LT(client_.submits.size(), 10u);
  EXPECT_EQ(agent->stats().updates_dropped, 1);
  EXPECT_EQ(agent->stats().updates_submitted, 0);
}

TEST_F(AgentTest, LongTraining_HeartbeatsFromAnotherThread) {
  v1::JoinResponse join;
  join.set_session_token("s1");
  join.set_agent_id("agent-7");
  join.set_heartbeat_interval_ms(10);
  join.mutable_model()->set_architecture("2nn");
  client_.join_results.push_back(join);
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  trainer_log_.real_delay = absl::Milliseconds(300);  // Really busy.
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  // While the loop's thread trained, another kept the agent live.
  EXPECT_GE(client_.heartbeats.load(), 3);
  EXPECT_EQ(agent->stats().updates_submitted, 1);
}

TEST_F(AgentTest, HeartbeatDisabled_NoHeartbeats) {
  v1::JoinResponse join;
  join.set_session_token("s1");
  join.set_agent_id("agent-7");
  join.set_heartbeat_interval_ms(10);
  join.mutable_model()->set_architecture("2nn");
  client_.join_results.push_back(join);
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  trainer_log_.real_delay = absl::Milliseconds(100);
  AgentOptions options = DefaultOptions();
  options.heartbeat_while_busy = false;
  auto agent = MakeAgent(options);
  ASSERT_TRUE(agent->Run().ok());
  EXPECT_EQ(client_.heartbeats.load(), 0);
}

TEST_F(AgentTest, PollUnauthenticated_JoinsAgain) {
  client_.poll_results.push_back(absl::UnauthenticatedError("unknown session"));
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.joins, SizeIs(2));
  EXPECT_EQ(agent->stats().joins, 2);
  EXPECT_EQ(factory_calls_, 2);
  EXPECT_THAT(client_.leaves, ElementsAre("s2"));
}

TEST_F(AgentTest, SubmitFailedPrecondition_DropsUpdateAndJoinsAgain) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  client_.submit_results.push_back(absl::FailedPreconditionError("not joined"));
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.submits, SizeIs(1));
  EXPECT_EQ(agent->stats().updates_dropped, 1);
  EXPECT_THAT(client_.joins, SizeIs(2));
}

TEST_F(AgentTest, CachedModel_NotFetchedAgain) {
  ASSERT_TRUE(cache_->Put(0, client_.models[0]).ok());
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  client_.poll_results.push_back(TaskPoll(2, 1, client_.models[1]));
  client_.poll_results.push_back(TaskPoll(3, 1, client_.models[1]));
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.fetches, ElementsAre(1));  // Version 0 was cached.
  EXPECT_THAT(client_.submits, SizeIs(3));
  ASSERT_THAT(client_.polls, SizeIs(4));
  EXPECT_EQ(client_.polls[0].cached_model_version(), 0);
  EXPECT_EQ(client_.polls[3].cached_model_version(), 1);
}

// An idle poll announcing `version` as the newest global model.
v1::PollResponse IdlePoll(int64_t version, const ModelState& model,
                          int64_t retry_after_ms = 100) {
  v1::PollResponse poll = WaitPoll(retry_after_ms);
  poll.set_latest_model_version(version);
  poll.set_latest_model_sha256(Sha(model));
  return poll;
}

// The operator's 6-round run: each round's task names the version the last
// round made, and after submitting the agent polls while the round is
// still open, told that the newest model is the one it trained on. With
// the default model_cache_interval (60 s) only the first trained model is
// written to the cache meanwhile; no version is downloaded twice.
TEST_F(AgentTest, DefaultCacheInterval_EachVersionFetchedOnceOverRounds) {
  for (int v = 2; v <= 5; ++v) client_.models[v] = TinyModel(v + 1);
  for (int round = 1; round <= 6; ++round) {
    const ModelState& model = client_.models[round - 1];
    client_.poll_results.push_back(TaskPoll(round, round - 1, model));
    client_.poll_results.push_back(IdlePoll(round - 1, model));
    client_.poll_results.push_back(IdlePoll(round - 1, model));
  }
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.submits, SizeIs(6));
  EXPECT_THAT(client_.fetches, ElementsAre(0, 1, 2, 3, 4, 5));
  EXPECT_EQ(agent->stats().models_fetched, 6);
}

// The model of the last task stays in memory and reaches the cache (for
// offline prediction) from an idle poll once model_cache_interval has
// passed since the last write, without a download.
TEST_F(AgentTest, TrainedModelCachedWhenIntervalPassesWhileIdle_NotFetched) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  client_.poll_results.push_back(TaskPoll(2, 1, client_.models[1]));
  for (int i = 0; i < 4; ++i) {
    client_.poll_results.push_back(IdlePoll(1, client_.models[1], 20000));
  }
  std::vector<int64_t> cached;  // The newest cached version at each sleep.
  on_sleep_ = [&] { cached.push_back(cache_->LatestVersion()); };
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.fetches, ElementsAre(0, 1));
  // Version 0 was the first write; version 1 is written at the idle poll
  // 60 s after it.
  EXPECT_THAT(cached, ElementsAre(0, 0, 0, 1));
  absl::StatusOr<CachedModel> latest = cache_->Latest();
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->version, 1);
  EXPECT_EQ(Sha(latest->model), Sha(client_.models[1]));
}

// Stopped within model_cache_interval of the last write: the held model,
// newer than the cached one, is written on the way out.
TEST_F(AgentTest, StoppedWithinCacheInterval_HeldModelCachedOnExit) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  client_.poll_results.push_back(TaskPoll(2, 1, client_.models[1]));
  for (int i = 0; i < 10; ++i) client_.poll_results.push_back(WaitPoll(100));
  auto agent = MakeAgent();
  on_sleep_ = [&] { agent->Stop(); };
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.fetches, ElementsAre(0, 1));
  EXPECT_THAT(client_.leaves, SizeIs(1));
  EXPECT_EQ(cache_->LatestVersion(), 1);
}

TEST_F(AgentTest, CachedVersionWithOtherHash_FetchedAgain) {
  ASSERT_TRUE(cache_->Put(0, TinyModel(9)).ok());  // Another federation's.
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.fetches, ElementsAre(0));
  EXPECT_TRUE(cache_->Has(0, Sha(client_.models[0])));
}

TEST_F(AgentTest, SameTaskPolledTwice_TrainsOnce) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(trainer_log_.plans, SizeIs(1));
  EXPECT_THAT(client_.submits, SizeIs(1));
}

TEST_F(AgentTest, DropoutProbabilityOne_NeverTrains) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  client_.poll_results.push_back(TaskPoll(2, 0, client_.models[0]));
  AgentOptions options = DefaultOptions();
  options.dropout_probability = 1.0;
  auto agent = MakeAgent(options);
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(trainer_log_.plans, IsEmpty());
  EXPECT_THAT(client_.submits, IsEmpty());
  EXPECT_THAT(client_.fetches, IsEmpty());
  EXPECT_EQ(agent->stats().rounds_skipped, 2);
}

TEST_F(AgentTest, GiveUpAfter_ReturnsUnavailable) {
  client_.join_default = absl::UnavailableError("connection refused");
  AgentOptions options = DefaultOptions();
  options.give_up_after = absl::Seconds(10);
  auto agent = MakeAgent(options);
  const absl::Time start = clock_.Now();
  const absl::Status status = agent->Run();

  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_GE(clock_.Now() - start, absl::Seconds(10));
  EXPECT_LT(clock_.Now() - start, absl::Seconds(12));
  EXPECT_THAT(sleeps_, Each(testing::Le(absl::Seconds(1))));
  EXPECT_THAT(client_.leaves, IsEmpty());
}

TEST_F(AgentTest, GiveUpAfter_CallsWaitOnlyWhatIsLeftThenItEnds) {
  client_.join_default = absl::UnavailableError("connection refused");
  AgentOptions options = DefaultOptions();
  options.give_up_after = absl::Seconds(3);
  auto agent = MakeAgent(options);
  const absl::Time start = clock_.Now();
  const absl::Status status = agent->Run();

  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr("connection refused"));
  // The last backoff is cut to what was left: a last attempt at 3 s.
  EXPECT_EQ(clock_.Now() - start, absl::Seconds(3));
  // Each attempt may wait (to connect) only what is left of the 3 s.
  ASSERT_EQ(client_.connect_budgets.size(), client_.joins.size());
  EXPECT_EQ(client_.connect_budgets.front(), absl::Seconds(3));
  EXPECT_EQ(client_.connect_budgets.back(), absl::ZeroDuration());
  EXPECT_TRUE(std::is_sorted(client_.connect_budgets.rbegin(),
                             client_.connect_budgets.rend()));
}

TEST_F(AgentTest, NeverGivesUp_ConnectBudgetUnbounded) {
  client_.join_results.push_back(absl::UnavailableError("down"));
  auto agent = MakeAgent(DefaultOptions());
  ASSERT_TRUE(agent->Run().ok());
  EXPECT_THAT(client_.connect_budgets, Each(absl::InfiniteDuration()));
}

TEST_F(AgentTest, UnreachableMidRun_BacksOffAndCarriesOn) {
  client_.poll_results.push_back(WaitPoll(100));
  client_.poll_results.push_back(absl::UnavailableError("down"));
  client_.poll_results.push_back(absl::DeadlineExceededError("slow"));
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  AgentOptions options = DefaultOptions();
  options.give_up_after = absl::Seconds(10);
  auto agent = MakeAgent(options);
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.joins, SizeIs(1));
  EXPECT_THAT(client_.submits, SizeIs(1));
  EXPECT_EQ(agent->stats().call_failures, 2);
}

TEST_F(AgentTest, WaitAnswer_SleepsRetryAfter) {
  client_.poll_results.push_back(WaitPoll(1500));
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(sleeps_, ElementsAre(absl::Milliseconds(1500)));
}

TEST_F(AgentTest, ComputeSlowdown_SleepsTheDifference) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  trainer_log_.seconds = 2.0;
  AgentOptions options = DefaultOptions();
  options.compute_slowdown = 3.0;
  auto agent = MakeAgent(options);
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(sleeps_, ElementsAre(absl::Seconds(4)));
}

TEST_F(AgentTest, NewerGlobalModelAnnounced_FetchedForOfflinePrediction) {
  v1::PollResponse poll = WaitPoll(10);
  poll.set_latest_model_version(1);
  poll.set_latest_model_sha256(Sha(client_.models[1]));
  client_.poll_results.push_back(poll);
  client_.poll_results.push_back(poll);
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.fetches, ElementsAre(1));  // Once.
  absl::StatusOr<CachedModel> latest = cache_->Latest();
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->version, 1);
}

TEST_F(AgentTest, FetchModelNotFound_DropsRoundAndContinues) {
  client_.poll_results.push_back(TaskPoll(1, 5, client_.models[0]));
  client_.poll_results.push_back(TaskPoll(2, 0, client_.models[0]));
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.fetches, ElementsAre(5, 0));
  ASSERT_THAT(client_.submits, SizeIs(1));
  EXPECT_EQ(client_.submits[0].round(), 2);
}

TEST_F(AgentTest, FetchModelUnavailable_RetriesTaskOnNextPoll) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  client_.fetch_errors.push_back(absl::UnavailableError("reset"));
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.fetches, ElementsAre(0, 0));
  EXPECT_THAT(client_.submits, SizeIs(1));
}

TEST_F(AgentTest, TrainingFails_NoUpdateAgentContinues) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  trainer_log_.error = absl::InvalidArgumentError("shape mismatch");
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.submits, IsEmpty());
  EXPECT_EQ(agent->stats().updates_dropped, 1);
  EXPECT_THAT(client_.leaves, SizeIs(1));
}

TEST_F(AgentTest, JoinPermissionDenied_ReturnsError) {
  client_.join_results.push_back(absl::PermissionDeniedError("banned"));
  auto agent = MakeAgent();
  EXPECT_EQ(agent->Run().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(client_.joins, SizeIs(1));
}

TEST_F(AgentTest, TrainerFactoryFails_ReturnsError) {
  factory_error_ = absl::InvalidArgumentError("data does not fit");
  auto agent = MakeAgent();
  EXPECT_EQ(agent->Run().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(client_.polls, IsEmpty());
  EXPECT_THAT(client_.leaves, ElementsAre("s1"));  // Session not left open.
}

TEST_F(AgentTest, StopDuringWait_LeavesAndReturnsOk) {
  for (int i = 0; i < 100; ++i) client_.poll_results.push_back(WaitPoll(1000));
  auto agent = MakeAgent();
  on_sleep_ = [&] {
    if (sleeps_.size() == 3) agent->Stop();
  };
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.polls, SizeIs(3));
  EXPECT_THAT(client_.leaves, ElementsAre("s1"));
}

TEST_F(AgentTest, NotExitWhenFinished_KeepsPolling) {
  v1::PollResponse finished;
  finished.set_finished(true);
  client_.poll_results.push_back(finished);
  client_.poll_results.push_back(finished);
  AgentOptions options = DefaultOptions();
  options.exit_when_finished = false;
  auto agent = MakeAgent(options);
  on_sleep_ = [&] {
    if (client_.polls.size() == 3) agent->Stop();
  };
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(client_.polls, SizeIs(3));
  EXPECT_THAT(sleeps_, Each(absl::Seconds(1)));  // Half the heartbeat.
}

TEST(AgentCreateTest, BadOptions_InvalidArgument) {
  FakeCoordinatorClient client;
  FakeClock clock;
  AgentOptions options;
  options.agent_id = "a";
  options.dropout_probability = 2;
  auto factory = [](const v1::JoinResponse&)
      -> absl::StatusOr<std::unique_ptr<LocalTrainer>> { return nullptr; };
  ModelCache* no_cache = nullptr;
  EXPECT_EQ(Agent::Create(options, &client, factory, no_cache, &clock,
                          [](absl::Duration) {})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// Differential privacy (docs/privacy.md): the plan's clip norm bounds what
// leaves the device, and local DP's noise is added to it.
TEST_F(AgentTest, DpPlan_UpdateClippedBeforeUpload_LocalNoiseAdded) {
  v1::PollResponse clip_only = TaskPoll(1, 0, client_.models[0]);
  clip_only.mutable_train()->mutable_plan()->set_dp_clip_norm(0.01);
  // 64 values: the noise's norm is about 5 * 8, and below 0.02 with
  // probability below 1e-180 (with the 2 values of models[0]: about 2e-5).
  std::vector<TensorBuffer> wide;
  wide.push_back(
      *TensorBuffer::FromFloats("w", {64}, std::vector<float>(64, 0.5f)));
  client_.models[2] = ModelState(std::move(wide));
  v1::PollResponse noised = TaskPoll(2, 2, client_.models[2]);
  noised.mutable_train()->mutable_plan()->set_dp_clip_norm(0.01);
  noised.mutable_train()->mutable_plan()->set_dp_noise_stddev(5);
  client_.poll_results.push_back(clip_only);
  client_.poll_results.push_back(noised);
  auto agent = MakeAgent();
  ASSERT_TRUE(agent->Run().ok());
  ASSERT_THAT(client_.submitted_deltas, SizeIs(2));
  // The fake trainer's delta is the model itself (norm > 0.01).
  ASSERT_GT(L2Norm(client_.models[0]), 0.01);
  EXPECT_LE(L2Norm(client_.submitted_deltas[0]), 0.01);
  EXPECT_NEAR(L2Norm(client_.submitted_deltas[0]), 0.01, 1e-6);
  // Noise of stddev 5 on top of a norm-0.01 update.
  EXPECT_GT(L2Norm(client_.submitted_deltas[1]), 0.02);
}

}  // namespace
}  // namespace fedge
