// FedBuffTasks on its own: numbers, slots, exactly-once, staleness, leases.
#include "server/fedbuff_tasks.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1000);
const absl::Time kLater = kNow + absl::Minutes(1);

FedBuffOptions Options(int max_staleness = 2) {
  FedBuffOptions o;
  o.buffer_size = 2;
  o.max_staleness = max_staleness;
  return o;
}

TEST(FedBuffTasksTest, StalenessWeight_And_Concurrency) {
  EXPECT_DOUBLE_EQ(StalenessWeight(0), 1);
  EXPECT_DOUBLE_EQ(StalenessWeight(3), 0.5);
  FedBuffOptions o;
  o.selection_fraction = 0.5;
  EXPECT_EQ(Concurrency(o, 10), 5);
  EXPECT_EQ(Concurrency(o, 1), 1);
  o.selection_count = 3;
  EXPECT_EQ(Concurrency(o, 10), 3);
  o.concurrency = 7;
  EXPECT_EQ(Concurrency(o, 10), 7);
}

TEST(FedBuffTasksTest, NothingBeforeALeaseIsDurable) {
  FedBuffTasks tasks(Options());
  EXPECT_EQ(tasks.Start("a", 0, 2, kLater).status().code(),
            absl::StatusCode::kResourceExhausted);
  const int64_t lease = tasks.Reserve();
  EXPECT_EQ(lease, 1 + FedBuffTasks::kTaskLease);
  tasks.Durable(lease);
  EXPECT_EQ(tasks.Start("a", 0, 2, kLater)->number, 1);
}

TEST(FedBuffTasksTest, Slots_ExactlyOnce_Outcome) {
  FedBuffTasks tasks(Options());
  tasks.Durable(tasks.Reserve());
  ASSERT_EQ(tasks.Start("a", 0, 2, kLater)->number, 1);
  EXPECT_EQ(tasks.Start("a", 0, 2, kLater).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_EQ(tasks.Start("b", 0, 2, kLater)->number, 2);
  EXPECT_EQ(tasks.Start("c", 0, 2, kLater).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(tasks.num_in_flight(), 2);
  EXPECT_EQ(tasks.oldest_base_version(), 0);

  absl::StatusOr<int64_t> staleness = tasks.Accept("a", 1, "u1", 0, 1);
  ASSERT_TRUE(staleness.ok()) << staleness.status();
  EXPECT_EQ(*staleness, 1);
  EXPECT_EQ(tasks.Accept("a", 1, "u1", 0, 1).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(tasks.Accept("a", 1, "u2", 0, 1).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(tasks.Check("b", 2, "u", 1, 1).status().code(),
            absl::StatusCode::kInvalidArgument);  // Not the task's base.
  ASSERT_TRUE(tasks.Fail("b", 2).ok());
  EXPECT_EQ(tasks.Fail("b", 2).code(), absl::StatusCode::kAborted);
  RoundOutcome outcome = tasks.TakeOutcome();
  EXPECT_THAT(outcome.reported, ElementsAre("a"));
  EXPECT_THAT(outcome.failed, ElementsAre("b"));
  EXPECT_TRUE(tasks.TakeOutcome().reported.empty());
}

TEST(FedBuffTasksTest, TooStale_RefusedAndEnded) {
  FedBuffTasks tasks(Options(/*max_staleness=*/1));
  tasks.Durable(tasks.Reserve());
  ASSERT_TRUE(tasks.Start("a", 3, 1, kLater).ok());
  absl::Status stale = tasks.Check("a", 1, "u", 3, 5).status();
  EXPECT_EQ(stale.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(stale.message(), HasSubstr("fedbuff_max_staleness is 1"));
  EXPECT_EQ(tasks.num_in_flight(), 0);
  EXPECT_THAT(tasks.TakeOutcome().failed, ElementsAre("a"));
}

TEST(FedBuffTasksTest, Expire_DeadlineOrLeftTheRoster) {
  FedBuffTasks tasks(Options());
  tasks.Durable(tasks.Reserve());
  ASSERT_TRUE(tasks.Start("a", 0, 3, kNow).ok());
  ASSERT_TRUE(tasks.Start("b", 0, 3, kLater).ok());
  ASSERT_TRUE(tasks.Start("c", 0, 3, kLater).ok());
  tasks.Expire(kNow, [](const std::string& id) { return id != "c"; });
  EXPECT_EQ(tasks.num_in_flight(), 1);
  EXPECT_TRUE(tasks.Find("b").has_value());
  EXPECT_THAT(tasks.TakeOutcome().failed, ElementsAre("a", "c"));
}

TEST(FedBuffTasksTest, Resume_ContinuesAfterTheRecordedNumber) {
  FedBuffTasks tasks(Options());
  tasks.Resume(500);
  EXPECT_FALSE(tasks.Start("a", 0, 1, kLater).ok());  // No lease yet.
  tasks.Durable(tasks.Reserve());
  EXPECT_EQ(tasks.Start("a", 0, 1, kLater)->number, 500);
}

}  // namespace
}  // namespace fedge
