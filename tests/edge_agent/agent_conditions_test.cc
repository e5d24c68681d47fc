// The agent loop under device conditions: holding tasks back, interrupted
// and resumed trainings, giving rounds up, the memory budget.
#include <algorithm>
#include <memory>
#include <string>

#include "edge_agent/agent.h"
#include "edge_agent/device_conditions.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/edge_agent/agent_test_fixture.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class AgentConditionsTest : public AgentTest {
 protected:
  // Trains on external power only, reading it every second.
  AgentOptions PowerOptions() {
    AgentOptions o = DefaultOptions();
    o.eligibility.require_external_power = true;
    o.eligibility.check_interval = absl::Seconds(1);
    o.device = &device_;
    return o;
  }
  void SetPower(bool external) {
    DeviceStatus s;
    s.external_power = external;
    device_.Set(s);
  }
  // Each training step takes 100 ms; power goes (once) at step `step`.
  void PowerFailsAtStep(int64_t step) {
    trainer_log_.on_step = [this, step, fired = false](int64_t s) mutable {
      if (s > 0) clock_.Advance(absl::Milliseconds(100));
      if (s == step && !fired) SetPower(false);
      fired = fired || s == step;
    };
  }
  // Power returns after the `n`-th sleep.
  void PowerReturnsAfterSleep(size_t n) {
    on_sleep_ = [this, n] {
      if (sleeps_.size() == n) SetPower(true);
    };
  }

  FakeDeviceConditions device_;
};

TEST_F(AgentConditionsTest, OnBatteryAtTheTask_WaitsThenTrainsOnce) {
  SetPower(false);
  for (int i = 0; i < 3; ++i) {
    client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  }
  PowerReturnsAfterSleep(2);
  auto agent = MakeAgent(PowerOptions());
  ASSERT_TRUE(agent->Run().ok());

  // Each poll while held back says why; the model waits too.
  ASSERT_THAT(client_.polls, SizeIs(4));
  EXPECT_EQ(client_.polls[0].paused_reason(), "power: on battery");
  EXPECT_EQ(client_.polls[1].paused_reason(), "power: on battery");
  EXPECT_EQ(client_.polls[2].paused_reason(), "");
  EXPECT_THAT(sleeps_, ElementsAre(absl::Seconds(1), absl::Seconds(1)));
  EXPECT_THAT(client_.fetches, ElementsAre(0));
  EXPECT_THAT(trainer_log_.plans, SizeIs(1));
  EXPECT_THAT(client_.submits, SizeIs(1));
  EXPECT_THAT(client_.failures, IsEmpty());
  EXPECT_EQ(agent->stats().rounds_held_back, 1);
}

TEST_F(AgentConditionsTest, PowerLostMidTraining_StopsKeepsStateResumesOnce) {
  for (int i = 0; i < 2; ++i) {
    client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  }
  PowerFailsAtStep(25);
  PowerReturnsAfterSleep(1);
  auto agent = MakeAgent(PowerOptions());
  ASSERT_TRUE(agent->Run().ok());

  // Read every second (10 steps): the loss shows at step 30.
  EXPECT_THAT(trainer_log_.stopped_at, ElementsAre(30, -1));
  EXPECT_THAT(trainer_log_.resumed_at, ElementsAre(-1, 30));
  ASSERT_THAT(client_.polls, SizeIs(3));
  EXPECT_EQ(client_.polls[1].paused_reason(), "");  // Back by then.
  EXPECT_THAT(client_.fetches, ElementsAre(0));     // Cached for the resume.
  ASSERT_THAT(client_.submits, SizeIs(1));
  EXPECT_EQ(client_.submits[0].num_steps(), 60);
  EXPECT_THAT(client_.accepted_uploads, SizeIs(1));
  EXPECT_THAT(client_.failures, IsEmpty());
  EXPECT_EQ(agent->stats().trainings_interrupted, 1);
  EXPECT_EQ(agent->stats().trainings_resumed, 1);
  EXPECT_EQ(agent->stats().rounds_trained, 1);
}

TEST_F(AgentConditionsTest, PausedWhilePolled_PollsCarryTheReason) {
  for (int i = 0; i < 3; ++i) {
    client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  }
  PowerFailsAtStep(25);
  PowerReturnsAfterSleep(2);
  auto agent = MakeAgent(PowerOptions());
  ASSERT_TRUE(agent->Run().ok());

  ASSERT_THAT(client_.polls, SizeIs(4));
  EXPECT_EQ(client_.polls[1].paused_reason(), "power: on battery");
  EXPECT_EQ(client_.polls[2].paused_reason(), "");
  EXPECT_THAT(trainer_log_.resumed_at, ElementsAre(-1, 30));
  EXPECT_THAT(client_.submits, SizeIs(1));
}

TEST_F(AgentConditionsTest, RoundClosesWhilePaused_DiscardsTheState) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  client_.poll_results.push_back(WaitPoll(0));  // Round 1 is over for us.
  client_.poll_results.push_back(TaskPoll(2, 1, client_.models[1]));
  PowerFailsAtStep(25);
  PowerReturnsAfterSleep(1);
  auto agent = MakeAgent(PowerOptions());
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_EQ(agent->stats().partials_discarded, 1);
  // Round 2 starts afresh from its own model.
  EXPECT_THAT(trainer_log_.resumed_at, ElementsAre(-1, -1));
  ASSERT_THAT(client_.submits, SizeIs(1));
  EXPECT_EQ(client_.submits[0].round(), 2);
  EXPECT_THAT(client_.failures, IsEmpty());
}

TEST_F(AgentConditionsTest, SameRoundOtherSeed_StartsAfresh) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  v1::PollResponse other = TaskPoll(1, 0, client_.models[0]);
  other.mutable_train()->mutable_plan()->set_seed(77);  // Not the same task.
  client_.poll_results.push_back(other);
  PowerFailsAtStep(25);
  PowerReturnsAfterSleep(1);
  auto agent = MakeAgent(PowerOptions());
  ASSERT_TRUE(agent->Run().ok());
  EXPECT_THAT(trainer_log_.resumed_at, ElementsAre(-1, -1));
  EXPECT_EQ(agent->stats().partials_discarded, 1);
}

TEST_F(AgentConditionsTest, NotBackBeforeTheDeadline_GivesTheRoundUp) {
  SetPower(false);
  for (int i = 0; i < 8; ++i) {  // One poll a second; 5 s to the deadline.
    v1::PollResponse poll = TaskPoll(1, 0, client_.models[0]);
    poll.mutable_train()->set_deadline_remaining_ms(
        std::max(1, 5000 - 1000 * i));
    client_.poll_results.push_back(poll);
  }
  auto agent = MakeAgent(PowerOptions());
  ASSERT_TRUE(agent->Run().ok());

  // Waits while a check can still come in time, then reports once.
  ASSERT_THAT(client_.failures, SizeIs(1));
  EXPECT_EQ(client_.failures[0].round(), 1);
  EXPECT_EQ(client_.failures[0].reason(), v1::FAILURE_REASON_POWER);
  EXPECT_EQ(client_.failures[0].detail(), "power: on battery");
  EXPECT_EQ(client_.failures[0].session_token(), "s1");
  EXPECT_THAT(trainer_log_.plans, IsEmpty());
  EXPECT_THAT(client_.fetches, IsEmpty());
  EXPECT_THAT(client_.submits, IsEmpty());
  EXPECT_EQ(agent->stats().rounds_given_up, 1);
}

// On a loaded device a pause of 1 s and a poll take 3 s: the agent must
// give up while its report is still in time, not wait for a last second
// that its next check would overshoot.
TEST_F(AgentConditionsTest, SlowChecks_GiveUpWhileStillInTime) {
  SetPower(false);
  for (int i = 0; i < 4; ++i) {  // 3 s between polls: 11.5 s ... 2.5 s left.
    v1::PollResponse poll = TaskPoll(1, 0, client_.models[0]);
    poll.mutable_train()->set_deadline_remaining_ms(11500 - 3000 * i);
    client_.poll_results.push_back(poll);
  }
  // After the 1 s pause the next poll comes 2 s later; the one after 2.5 s
  // would be past the deadline: the round is over (finished). With 2.5 s
  // left, a margin of the 1 s pause would wait and miss it.
  on_sleep_ = [this] { clock_.Advance(absl::Seconds(2)); };
  auto agent = MakeAgent(PowerOptions());
  ASSERT_TRUE(agent->Run().ok());
  ASSERT_THAT(client_.failures, SizeIs(1));
  EXPECT_EQ(client_.failures[0].round(), 1);
  EXPECT_EQ(agent->stats().rounds_given_up, 1);
}

TEST_F(AgentConditionsTest, InterruptedTooCloseToTheDeadline_GivesUp) {
  // Stopped at step 30 of 60 after 3 s with 1 s of training time (the
  // fake's): the other half needs 1 s more, the next check 1 s; 1.4 s
  // are left.
  v1::PollResponse poll = TaskPoll(1, 0, client_.models[0]);
  poll.mutable_train()->set_deadline_remaining_ms(4400);
  client_.poll_results.push_back(poll);
  PowerFailsAtStep(25);
  auto agent = MakeAgent(PowerOptions());
  ASSERT_TRUE(agent->Run().ok());

  EXPECT_THAT(trainer_log_.stopped_at, ElementsAre(30));
  ASSERT_THAT(client_.failures, SizeIs(1));
  EXPECT_EQ(client_.failures[0].reason(), v1::FAILURE_REASON_POWER);
  EXPECT_EQ(agent->stats().trainings_interrupted, 1);
  EXPECT_EQ(agent->stats().rounds_given_up, 1);
}

TEST_F(AgentConditionsTest, InterruptedWithTimeLeft_WaitsInstead) {
  v1::PollResponse poll = TaskPoll(1, 0, client_.models[0]);
  poll.mutable_train()->set_deadline_remaining_ms(5100);
  client_.poll_results.push_back(poll);
  PowerFailsAtStep(25);
  auto agent = MakeAgent(PowerOptions());
  ASSERT_TRUE(agent->Run().ok());
  EXPECT_THAT(client_.failures, IsEmpty());
  EXPECT_EQ(agent->stats().partials_discarded, 1);  // Then "finished".
}

TEST_F(AgentConditionsTest, ConditionsUnreadable_CountAsFailed) {
  device_.Set(absl::UnavailableError("status command timed out"));
  v1::PollResponse poll = TaskPoll(1, 0, client_.models[0]);
  poll.mutable_train()->set_deadline_remaining_ms(500);
  client_.poll_results.push_back(poll);
  auto agent = MakeAgent(PowerOptions());
  ASSERT_TRUE(agent->Run().ok());
  ASSERT_THAT(client_.failures, SizeIs(1));
  EXPECT_EQ(client_.failures[0].reason(),
            v1::FAILURE_REASON_CONDITIONS_UNREADABLE);
  EXPECT_THAT(client_.failures[0].detail(), HasSubstr("timed out"));
}

TEST_F(AgentConditionsTest, OutsideTheTimeWindow_HeldBackWithoutReadings) {
  AgentOptions o = DefaultOptions();
  o.eligibility.window = *ParseTimeWindow("01:00-06:00");
  o.time_zone = absl::UTCTimeZone();  // The FakeClock starts at 00:00 UTC.
  v1::PollResponse poll = TaskPoll(1, 0, client_.models[0]);
  poll.mutable_train()->set_deadline_remaining_ms(500);
  client_.poll_results.push_back(poll);
  auto agent = MakeAgent(o);
  ASSERT_TRUE(agent->Run().ok());
  ASSERT_THAT(client_.failures, SizeIs(1));
  EXPECT_EQ(client_.failures[0].reason(), v1::FAILURE_REASON_TIME_WINDOW);
  EXPECT_EQ(client_.failures[0].detail(),
            "time window: 00:00 is outside 01:00-06:00");
  EXPECT_EQ(device_.reads(), 0);
}

TEST_F(AgentConditionsTest, HeldBack_DoesNotDownloadTheNewestModel) {
  SetPower(false);
  v1::PollResponse wait = WaitPoll(100);
  wait.set_latest_model_version(1);
  wait.set_latest_model_sha256(Sha(client_.models[1]));
  client_.poll_results.push_back(wait);
  auto agent = MakeAgent(PowerOptions());
  ASSERT_TRUE(agent->Run().ok());
  EXPECT_THAT(client_.fetches, IsEmpty());
}

TEST_F(AgentConditionsTest, TaskOverTheMemoryBudget_GivenUpUntrained) {
  AgentOptions o = DefaultOptions();
  o.memory_budget_bytes = 10 << 20;
  o.memory_model_factor = 6;
  o.local_data_bytes = 4 << 20;
  v1::PollResponse big = TaskPoll(1, 0, client_.models[0]);
  big.mutable_train()->set_model_size_bytes(1 << 20);  // 6 + 4 MiB: fits.
  v1::PollResponse bigger = TaskPoll(2, 0, client_.models[0]);
  bigger.mutable_train()->set_model_size_bytes(2 << 20);  // 16 MiB: not.
  client_.poll_results.push_back(big);
  client_.poll_results.push_back(bigger);
  auto agent = MakeAgent(o);
  ASSERT_TRUE(agent->Run().ok());

  ASSERT_THAT(client_.submits, SizeIs(1));
  EXPECT_EQ(client_.submits[0].round(), 1);
  ASSERT_THAT(client_.failures, SizeIs(1));
  EXPECT_EQ(client_.failures[0].round(), 2);
  EXPECT_EQ(client_.failures[0].reason(), v1::FAILURE_REASON_MEMORY);
  EXPECT_THAT(client_.failures[0].detail(),
              HasSubstr("needs about 16.0 MiB (model 2.0 MiB x 6 + local "
                        "data 4.0 MiB), over the budget of 10.0 MiB"));
  EXPECT_THAT(trainer_log_.plans, SizeIs(1));
}

TEST_F(AgentConditionsTest, ReportFailureFails_CarriesOn) {
  client_.failure_results.push_back(absl::AbortedError("round closed"));
  AgentOptions o = DefaultOptions();
  o.memory_budget_bytes = 1;
  v1::PollResponse poll = TaskPoll(1, 0, client_.models[0]);
  poll.mutable_train()->set_model_size_bytes(100);
  client_.poll_results.push_back(poll);
  client_.poll_results.push_back(poll);  // Answered already: not again.
  auto agent = MakeAgent(o);
  ASSERT_TRUE(agent->Run().ok());
  EXPECT_THAT(client_.failures, SizeIs(1));
  EXPECT_EQ(agent->state(), AgentState::kDone);
}

TEST_F(AgentConditionsTest, StopDuringTraining_StopsAtTheNextBatchAndLeaves) {
  client_.poll_results.push_back(TaskPoll(1, 0, client_.models[0]));
  Agent* running = nullptr;
  trainer_log_.on_step = [&running](int64_t s) {
    if (s == 10) running->Stop();
  };
  auto agent = MakeAgent();
  running = agent.get();
  ASSERT_TRUE(agent->Run().ok());
  EXPECT_THAT(trainer_log_.stopped_at, ElementsAre(10));
  EXPECT_THAT(client_.submits, IsEmpty());
  EXPECT_THAT(client_.failures, IsEmpty());  // Leaving says enough.
  EXPECT_THAT(client_.leaves, ElementsAre("s1"));
}

TEST_F(AgentConditionsTest, BadOptions_InvalidArgument) {
  AgentOptions o = PowerOptions();
  o.device = nullptr;
  auto factory = [](const v1::JoinResponse&)
      -> absl::StatusOr<std::unique_ptr<LocalTrainer>> { return nullptr; };
  auto create = [&](const AgentOptions& options) {
    return Agent::Create(options, &client_, factory, cache_.get(), &clock_,
                         [](absl::Duration) {})
        .status()
        .code();
  };
  EXPECT_EQ(create(o), absl::StatusCode::kInvalidArgument);
  o = PowerOptions();
  o.eligibility.check_interval = absl::ZeroDuration();
  EXPECT_EQ(create(o), absl::StatusCode::kInvalidArgument);
  o = DefaultOptions();
  o.memory_model_factor = 0.5;
  EXPECT_EQ(create(o), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedge
