#include "server/round_accumulator.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/model_codec.h"
#include "common/strategy.h"
#include "common/tensor_buffer.h"
#include "common/update_limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::FloatEq;
using ::testing::HasSubstr;

constexpr absl::StatusCode kInvalidArgument =
    absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kFailedPrecondition =
    absl::StatusCode::kFailedPrecondition;

// float32 "w" [2].
ModelState Model(float w0, float w1) {
  ModelState m;
  m.Add(*TensorBuffer::FromFloats("w", {2}, std::vector<float>{w0, w1}));
  return m;
}

std::vector<float> W(const ModelState& m) {
  return std::vector<float>(m.tensor(0).floats().begin(),
                            m.tensor(0).floats().end());
}

std::unique_ptr<Strategy> MakeStrategy(const std::string& name,
                                       int min_fit_agents = 1) {
  StrategyOptions o;
  o.name = name;
  o.min_fit_agents = min_fit_agents;
  absl::StatusOr<std::unique_ptr<Strategy>> s = CreateStrategy(o, Model(0, 0));
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(s).value();
}

// An update with its training metrics; `delta` must outlive the result.
FitResult Result(const std::string& agent, ModelState* delta,
                 double num_examples, double loss, double accuracy,
                 double seconds) {
  FitResult r;
  r.agent_id = agent;
  r.num_examples = num_examples;
  r.num_steps = 1;
  r.metrics.num_examples = static_cast<int64_t>(num_examples);
  r.metrics.loss = loss;
  r.metrics.accuracy = accuracy;
  r.metrics.seconds = seconds;
  r.delta = delta;
  return r;
}

RoundOutcome Completed(int64_t round, std::vector<std::string> reported,
                       std::vector<std::string> failed = {}) {
  RoundOutcome o;
  o.round = round;
  o.completed = true;
  o.reported = std::move(reported);
  o.failed = std::move(failed);
  return o;
}

TEST(RoundAccumulatorTest, CompletedRound_RecordsStatsAndAggregates) {
  std::unique_ptr<Strategy> strategy = MakeStrategy("fedavg");
  RoundAccumulator acc(strategy.get());
  ModelState d1 = Model(1, 0), d2 = Model(0, 4);
  ASSERT_EQ(acc.Add(Result("a", &d1, 100, 2.0, 0.5, 3.0), 1000),
            absl::OkStatus());
  ASSERT_EQ(acc.Add(Result("b", &d2, 300, 1.0, 0.9, 5.0), 2000),
            absl::OkStatus());
  EXPECT_EQ(acc.num_updates(), 2);

  RoundClose close =
      acc.Close(Completed(4, {"a", "b"}, {"c"}), Model(1, 1), 10);
  ASSERT_TRUE(close.next.has_value());
  EXPECT_EQ(close.aggregation_error, absl::OkStatus());
  // (100 [1, 0] + 300 [0, 4]) / 400 = [0.25, 3].
  EXPECT_THAT(W(*close.next), ElementsAre(FloatEq(1.25f), FloatEq(4)));
  const RoundRecord& r = close.record;
  EXPECT_EQ(r.round, 4);
  EXPECT_EQ(r.num_agents, 2);
  EXPECT_EQ(r.num_failed, 1);
  EXPECT_EQ(r.num_examples, 400);
  EXPECT_DOUBLE_EQ(r.train_loss, (100 * 2.0 + 300 * 1.0) / 400);      // 1.25.
  EXPECT_DOUBLE_EQ(r.train_accuracy, (100 * 0.5 + 300 * 0.9) / 400);  // 0.8.
  EXPECT_DOUBLE_EQ(r.train_seconds, 5.0);  // The slowest agent.
  ASSERT_TRUE(r.bytes_received.has_value());
  EXPECT_EQ(*r.bytes_received, 3000);
  EXPECT_FALSE(r.test_accuracy.has_value());

  // The next round starts from nothing.
  EXPECT_EQ(acc.num_updates(), 0);
  ModelState d3 = Model(2, 2);
  ASSERT_EQ(acc.Add(Result("a", &d3, 10, 4.0, 0.1, 1.0), 50), absl::OkStatus());
  RoundClose second = acc.Close(Completed(5, {"a"}), *close.next, 10);
  EXPECT_EQ(second.record.num_examples, 10);
  EXPECT_DOUBLE_EQ(second.record.train_loss, 4.0);
  EXPECT_DOUBLE_EQ(second.record.train_seconds, 1.0);
  EXPECT_EQ(*second.record.bytes_received, 50);
  EXPECT_THAT(W(*second.next), ElementsAre(FloatEq(3.25f), FloatEq(6)));
}

TEST(RoundAccumulatorTest, Check_RecordsNothing) {
  std::unique_ptr<Strategy> strategy = MakeStrategy("fedavg");
  RoundAccumulator acc(strategy.get());
  ModelState d = Model(1, 1);
  EXPECT_EQ(acc.Check(Result("a", &d, 10, 1, 1, 1)), absl::OkStatus());
  EXPECT_EQ(acc.num_updates(), 0);
  ModelState nan = Model(std::numeric_limits<float>::quiet_NaN(), 0);
  EXPECT_EQ(acc.Check(Result("a", &nan, 10, 1, 1, 1)).code(), kInvalidArgument);
}

TEST(RoundAccumulatorTest, RefusedUpdate_CountsNothing) {
  std::unique_ptr<Strategy> strategy = MakeStrategy("fedavg");
  RoundAccumulator acc(strategy.get());
  ModelState good = Model(2, 2);
  ModelState nan = Model(std::numeric_limits<float>::quiet_NaN(), 0);
  ModelState wrong;
  wrong.Add(*TensorBuffer::FromFloats("v", {2}, std::vector<float>{0, 0}));
  ASSERT_EQ(acc.Add(Result("a", &good, 10, 1.0, 0.5, 2.0), 100),
            absl::OkStatus());
  EXPECT_EQ(acc.Add(Result("b", &nan, 1000, 9, 9, 99), 7777).code(),
            kInvalidArgument);
  EXPECT_EQ(acc.Add(Result("c", &wrong, 1000, 9, 9, 99), 7777).code(),
            kInvalidArgument);
  EXPECT_EQ(acc.num_updates(), 1);
  RoundClose close = acc.Close(Completed(1, {"a"}), Model(0, 0), 3);
  EXPECT_EQ(close.record.num_examples, 10);
  EXPECT_DOUBLE_EQ(close.record.train_loss, 1.0);
  EXPECT_DOUBLE_EQ(close.record.train_seconds, 2.0);
  EXPECT_EQ(*close.record.bytes_received, 100);
  EXPECT_THAT(W(*close.next), ElementsAre(FloatEq(2), FloatEq(2)));
}

TEST(RoundAccumulatorTest, AbandonedRound_KeepsNoModel_Discards) {
  std::unique_ptr<Strategy> strategy = MakeStrategy("fedavg");
  RoundAccumulator acc(strategy.get());
  ModelState d = Model(100, 100);
  ASSERT_EQ(acc.Add(Result("a", &d, 10, 1, 1, 1), 10), absl::OkStatus());
  RoundOutcome abandoned;
  abandoned.round = 1;
  abandoned.completed = false;
  abandoned.reported = {"a"};
  abandoned.failed = {"b", "c"};
  RoundClose close = acc.Close(abandoned, Model(0, 0), 3);
  EXPECT_FALSE(close.next.has_value());
  EXPECT_EQ(close.aggregation_error, absl::OkStatus());
  EXPECT_EQ(close.record.round, 1);
  EXPECT_EQ(close.record.num_agents, 1);
  EXPECT_EQ(close.record.num_failed, 2);
  EXPECT_EQ(acc.num_updates(), 0);
  EXPECT_EQ(strategy->num_updates(), 0);

  // The abandoned update is not part of the next round.
  ModelState d2 = Model(1, 2);
  ASSERT_EQ(acc.Add(Result("b", &d2, 10, 1, 1, 1), 10), absl::OkStatus());
  RoundClose next = acc.Close(Completed(2, {"b"}), Model(0, 0), 3);
  EXPECT_THAT(W(*next.next), ElementsAre(FloatEq(1), FloatEq(2)));
  EXPECT_EQ(next.record.num_examples, 10);
}

TEST(RoundAccumulatorTest, RefusedAggregate_SetsAggregationError) {
  // Krum with f = 1 needs 5 updates; the outcome (the engine's) says the
  // round completed with 1: the strategy refuses to aggregate it.
  StrategyOptions o;
  o.name = "krum";
  o.krum_f = 1;
  o.min_fit_agents = 5;
  absl::StatusOr<std::unique_ptr<Strategy>> strategy =
      CreateStrategy(o, Model(0, 0));
  ASSERT_TRUE(strategy.ok()) << strategy.status();
  RoundAccumulator acc(strategy->get());
  ModelState d = Model(1, 1);
  ASSERT_EQ(acc.Add(Result("a", &d, 10, 1, 1, 1), 10), absl::OkStatus());
  RoundClose close = acc.Close(Completed(1, {"a"}), Model(0, 0), 5);
  EXPECT_FALSE(close.next.has_value());
  EXPECT_EQ(close.aggregation_error.code(), kFailedPrecondition);
  EXPECT_EQ(close.record.num_agents, 1);
  EXPECT_EQ(acc.num_updates(), 0);

  // A non-finite aggregate: INVALID_ARGUMENT.
  std::unique_ptr<Strategy> avg = MakeStrategy("fedavg");
  RoundAccumulator acc2(avg.get());
  const float max = std::numeric_limits<float>::max();
  ModelState big = Model(max, 0);
  ASSERT_EQ(acc2.Add(Result("a", &big, 10, 1, 1, 1), 10), absl::OkStatus());
  RoundClose overflow = acc2.Close(Completed(1, {"a"}), Model(max, 0), 1);
  EXPECT_FALSE(overflow.next.has_value());
  EXPECT_EQ(overflow.aggregation_error.code(), kInvalidArgument);
  EXPECT_THAT(overflow.aggregation_error.message(), HasSubstr("not finite"));
}

TEST(RoundAccumulatorTest, Limits_RefusedUpdatesChangeNothing_ClipScales) {
  std::unique_ptr<Strategy> strategy = MakeStrategy("fedavg");
  UpdateLimits limits;
  limits.max_examples_per_update = 1000;
  limits.update_norm_bound = 10;
  RoundAccumulator acc(strategy.get(), limits);
  ModelState honest = Model(3, 4);
  FitResult good = Result("a", &honest, 100, 1.0, 0.5, 1.0);
  good.declared_examples = 100;
  ASSERT_EQ(acc.Add(good, 10), absl::OkStatus());

  // Weight above the declaration, above the maximum, NaN metrics, a norm
  // above the bound: each refused with its reason, nothing folded.
  ModelState d = Model(1, 1);
  FitResult inflated = Result("b", &d, 201, 1.0, 0.5, 1.0);
  inflated.declared_examples = 200;
  FitResult heavy = Result("c", &d, 1001, 1.0, 0.5, 1.0);
  FitResult nan = Result("e", &d, 10, std::nan(""), 0.5, 1.0);
  ModelState big = Model(1e38f, 1e38f);
  FitResult far = Result("f", &big, 10, 1.0, 0.5, 1.0);
  const std::vector<std::pair<FitResult, std::string>> refused = {
      {inflated, "weight_declared"},
      {heavy, "weight_max"},
      {nan, "metrics"},
      {far, "norm"}};
  for (const auto& [r, reason] : refused) {
    absl::Status s = acc.Add(r, 10);
    EXPECT_EQ(s.code(), kInvalidArgument) << r.agent_id;
    EXPECT_EQ(UpdateLimitReason(s), reason) << s;
  }
  EXPECT_EQ(acc.num_updates(), 1);
  RoundClose close = acc.Close(Completed(1, {"a"}), Model(0, 0), 2);
  ASSERT_TRUE(close.next.has_value());
  EXPECT_THAT(W(*close.next), ElementsAre(FloatEq(3), FloatEq(4)));
  EXPECT_EQ(close.record.num_examples, 100);

  // Clip: scaled to the bound before it is folded.
  limits.clip = true;
  RoundAccumulator clipping(strategy.get(), limits);
  ModelState long_delta = Model(30, 40);
  absl::StatusOr<double> factor =
      clipping.ApplyLimits(Result("a", &long_delta, 10, 1.0, 0.5, 1.0));
  ASSERT_TRUE(factor.ok()) << factor.status();
  EXPECT_DOUBLE_EQ(*factor, 0.2);
  EXPECT_THAT(W(long_delta), ElementsAre(FloatEq(6), FloatEq(8)));
  ModelState again = Model(30, 40);
  ASSERT_EQ(clipping.Add(Result("a", &again, 10, 1.0, 0.5, 1.0), 10),
            absl::OkStatus());
  close = clipping.Close(Completed(2, {"a"}), Model(0, 0), 1);
  ASSERT_TRUE(close.next.has_value());
  EXPECT_THAT(W(*close.next), ElementsAre(FloatEq(6), FloatEq(8)));
}

TEST(RoundAccumulatorTest, ScaffoldGetsTheRosterSize) {
  StrategyOptions o;
  o.name = "scaffold";
  absl::StatusOr<std::unique_ptr<Strategy>> strategy =
      CreateStrategy(o, Model(0, 0));
  ASSERT_TRUE(strategy.ok()) << strategy.status();
  RoundAccumulator acc(strategy->get());
  ModelState d = Model(1, 1);
  ModelState dc;
  dc.Add(*TensorBuffer::FromFloats("scaffold.dc/w", {2},
                                   std::vector<float>{4, 8}));
  FitResult r = Result("a", &d, 10, 1, 1, 1);
  r.extras = &dc;
  ASSERT_EQ(acc.Add(r, 10), absl::OkStatus());
  RoundClose close = acc.Close(Completed(1, {"a"}), Model(0, 0), 4);
  ASSERT_TRUE(close.next.has_value());
  // c += |S| / N * mean(dc) = 1 / 4 * [4, 8].
  EXPECT_THAT(W(*(*strategy)->BroadcastExtras()),
              ElementsAre(FloatEq(1), FloatEq(2)));
}

TEST(RoundAccumulatorTest, ConcurrentAdds_EachCountedOnce) {
  std::unique_ptr<Strategy> strategy = MakeStrategy("fedavg");
  RoundAccumulator acc(strategy.get());
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&acc, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Update k = t * kPerThread + i holds [k, -k], weight 1.
        const float k = static_cast<float>(t * kPerThread + i);
        ModelState d = Model(k, -k);
        EXPECT_EQ(
            acc.Add(Result(absl::StrCat("a", t, "-", i), &d, 1, k, 0.5, k), 3),
            absl::OkStatus());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  constexpr int kN = kThreads * kPerThread;
  EXPECT_EQ(acc.num_updates(), kN);
  RoundClose close = acc.Close(Completed(1, {}), Model(0, 0), kN);
  // Sums of small integers are exact in any order: mean = (N - 1) / 2.
  ASSERT_TRUE(close.next.has_value());
  EXPECT_THAT(W(*close.next),
              ElementsAre(FloatEq((kN - 1) / 2.0f), FloatEq(-(kN - 1) / 2.0f)));
  EXPECT_EQ(close.record.num_examples, kN);
  EXPECT_DOUBLE_EQ(close.record.train_loss, (kN - 1) / 2.0);
  EXPECT_DOUBLE_EQ(close.record.train_accuracy, 0.5);
  EXPECT_DOUBLE_EQ(close.record.train_seconds, kN - 1);
  EXPECT_EQ(*close.record.bytes_received, 3 * kN);
}

}  // namespace
}  // namespace fedge
