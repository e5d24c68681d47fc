#include "common/update_limits.h"

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "common/fl_config.h"
#include "common/robust_aggregation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::FloatEq;
using ::testing::HasSubstr;

constexpr absl::StatusCode kInvalidArgument =
    absl::StatusCode::kInvalidArgument;

// float32 "w" [2] = {w0, w1}, int64 "count" [1] = 7.
ModelState Delta(float w0, float w1) {
  ModelState m;
  m.Add(*TensorBuffer::FromFloats("w", {2}, std::vector<float>{w0, w1}));
  TensorBuffer c = *TensorBuffer::Zeros("count", DType::kInt64, {1});
  c.mutable_int64s()[0] = 7;
  m.Add(std::move(c));
  return m;
}

std::vector<float> W(const ModelState& m) {
  absl::Span<const float> v = m.tensor(0).floats();
  return {v.begin(), v.end()};
}

TrainMetrics Metrics(double loss = 0.5, double accuracy = 0.8) {
  TrainMetrics m;
  m.num_examples = 10;
  m.num_steps = 3;
  m.loss = loss;
  m.accuracy = accuracy;
  m.seconds = 1.5;
  return m;
}

TEST(UpdateLimitsTest, WeightAboveDeclared_RefusedNamingTheDeclaration) {
  UpdateLimits limits;
  limits.max_examples_per_update = 1'000'000;
  EXPECT_EQ(CheckUpdateClaims(limits, 200, 200, Metrics()), absl::OkStatus());
  EXPECT_EQ(CheckUpdateClaims(limits, 200, 150, Metrics()), absl::OkStatus());
  // The attack of issue #9: 200 declared, 2^40 claimed.
  absl::Status s = CheckUpdateClaims(
      limits, 200, static_cast<double>(int64_t{1} << 40), Metrics());
  EXPECT_EQ(s.code(), kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("200 examples the agent declared"));
  EXPECT_EQ(UpdateLimitReason(s), "weight_declared");
  s = CheckUpdateClaims(limits, 200, 201, Metrics());
  EXPECT_EQ(UpdateLimitReason(s), "weight_declared");
}

TEST(UpdateLimitsTest, WeightAboveMaximum_RefusedNamingTheField) {
  UpdateLimits limits;
  limits.max_examples_per_update = 1000;
  // Undeclared (0): the maximum alone.
  EXPECT_EQ(CheckUpdateClaims(limits, 0, 1000, Metrics()), absl::OkStatus());
  absl::Status s = CheckUpdateClaims(limits, 0, 1001, Metrics());
  EXPECT_EQ(s.code(), kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("strategy.update_limits.max_examples_per_update = "
                        "1000"));
  EXPECT_EQ(UpdateLimitReason(s), "weight_max");
  // Declared more than the maximum: the maximum still holds.
  EXPECT_EQ(UpdateLimitReason(CheckUpdateClaims(limits, 5000, 2000, Metrics())),
            "weight_max");
  // No maximum (0): the declaration alone.
  limits.max_examples_per_update = 0;
  EXPECT_EQ(CheckUpdateClaims(limits, 0, 1e12, Metrics()), absl::OkStatus());
}

TEST(UpdateLimitsTest, MetricsOutOfRange_Refused) {
  const UpdateLimits limits;
  const double nan = std::nan("");
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<TrainMetrics> bad = {Metrics(nan),      Metrics(inf),
                                   Metrics(-1),       Metrics(0.5, nan),
                                   Metrics(0.5, 1.5), Metrics(0.5, -0.1)};
  TrainMetrics slow = Metrics();
  slow.seconds = nan;
  bad.push_back(slow);
  TrainMetrics backwards = Metrics();
  backwards.num_steps = -1;
  bad.push_back(backwards);
  for (const TrainMetrics& m : bad) {
    absl::Status s = CheckUpdateClaims(limits, 10, 10, m);
    EXPECT_EQ(s.code(), kInvalidArgument) << m.loss << " " << m.accuracy;
    EXPECT_THAT(s.message(), HasSubstr("metrics out of range"));
    EXPECT_EQ(UpdateLimitReason(s), "metrics");
  }
  EXPECT_EQ(CheckUpdateClaims(limits, 10, 10, Metrics(0, 0)), absl::OkStatus());
  EXPECT_EQ(CheckUpdateClaims(limits, 10, 10, Metrics(1e6, 1)),
            absl::OkStatus());
}

TEST(UpdateLimitsTest, NormAboveBound_RefusedAndUnchanged) {
  UpdateLimits limits;
  limits.update_norm_bound = 5;
  ModelState ok = Delta(3, 4);  // Norm 5: within.
  EXPECT_EQ(BoundUpdateNorm(limits, ok).value_or(-1), 1.0);
  ModelState big = Delta(30, 40);  // Norm 50.
  absl::StatusOr<double> r = BoundUpdateNorm(limits, big);
  EXPECT_EQ(r.status().code(), kInvalidArgument);
  EXPECT_THAT(r.status().message(),
              HasSubstr("L2 norm 50 exceeds the limit "
                        "strategy.update_limits.update_norm_bound = 5"));
  EXPECT_EQ(UpdateLimitReason(r.status()), "norm");
  EXPECT_THAT(W(big), ElementsAre(30, 40));
  // 1e38 everywhere and FLT_MAX: their norms are finite in float64.
  const float max = std::numeric_limits<float>::max();
  ModelState huge = Delta(1e38f, 1e38f), top = Delta(max, max);
  EXPECT_EQ(UpdateLimitReason(BoundUpdateNorm(limits, huge).status()), "norm");
  EXPECT_EQ(UpdateLimitReason(BoundUpdateNorm(limits, top).status()), "norm");
}

TEST(UpdateLimitsTest, NormAboveBound_ClippedInPlace) {
  UpdateLimits limits;
  limits.update_norm_bound = 5;
  limits.clip = true;
  ModelState big = Delta(30, 40);
  absl::StatusOr<double> r = BoundUpdateNorm(limits, big);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(*r, 0.1);
  EXPECT_THAT(W(big), ElementsAre(FloatEq(3), FloatEq(4)));
  EXPECT_EQ(big.tensor(1).int64s()[0], 7);  // Counters untouched.
  const float max = std::numeric_limits<float>::max();
  ModelState top = Delta(max, -max);
  ASSERT_TRUE(BoundUpdateNorm(limits, top).ok());
  EXPECT_NEAR(L2Norm(top), 5, 1e-5);
}

TEST(UpdateLimitsTest, NoBoundOrNonFiniteDelta_Unchanged) {
  UpdateLimits off;  // update_norm_bound 0.
  ModelState big = Delta(3e38f, 3e38f);
  EXPECT_EQ(BoundUpdateNorm(off, big).value_or(-1), 1.0);
  EXPECT_THAT(W(big), ElementsAre(3e38f, 3e38f));
  UpdateLimits clip;
  clip.update_norm_bound = 1;
  clip.clip = true;
  // Left for CheckFinite to refuse as malformed.
  ModelState nan = Delta(std::nanf(""), 100);
  EXPECT_EQ(BoundUpdateNorm(clip, nan).value_or(-1), 1.0);
  EXPECT_EQ(W(nan)[1], 100);
}

TEST(UpdateLimitsTest, ApplyUpdateLimits_ChecksClaimsThenNorm) {
  UpdateLimits limits;
  limits.update_norm_bound = 5;
  limits.clip = true;
  ModelState d = Delta(30, 40);
  FitResult r;
  r.num_examples = 10;
  r.declared_examples = 10;
  r.metrics = Metrics();
  r.delta = &d;
  EXPECT_DOUBLE_EQ(ApplyUpdateLimits(limits, r).value_or(-1), 0.1);
  EXPECT_THAT(W(d), ElementsAre(FloatEq(3), FloatEq(4)));
  // A refused claim leaves the delta alone.
  ModelState d2 = Delta(30, 40);
  r.delta = &d2;
  r.num_examples = 11;
  EXPECT_EQ(UpdateLimitReason(ApplyUpdateLimits(limits, r).status()),
            "weight_declared");
  EXPECT_THAT(W(d2), ElementsAre(30, 40));
  EXPECT_EQ(UpdateLimitReason(absl::InvalidArgumentError("x")), "");
  EXPECT_EQ(UpdateLimitReason(absl::OkStatus()), "");
}

TEST(UpdateLimitsTest, Config_DefaultsValidationAndConversion) {
  v1::UpdateLimitsConfig c;
  EXPECT_EQ(c.max_examples_per_update(), 1'000'000);
  EXPECT_EQ(c.update_norm_bound(), 1e6);
  EXPECT_EQ(c.update_norm_action(), "refuse");
  EXPECT_EQ(ValidateUpdateLimits(c, "strategy.update_limits."),
            absl::OkStatus());
  UpdateLimits l = ToUpdateLimits(c);
  EXPECT_EQ(l.max_examples_per_update, 1'000'000);
  EXPECT_EQ(l.update_norm_bound, 1e6);
  EXPECT_FALSE(l.clip);
  c.set_update_norm_action("clip");
  EXPECT_TRUE(ToUpdateLimits(c).clip);

  struct Case {
    std::function<void(v1::StrategyConfig&)> change;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto& s) {
         s.mutable_update_limits()->set_max_examples_per_update(-1);
       },
       "config field 'strategy.update_limits.max_examples_per_update' must "
       "be in [0, 1099511627776]"},
      {[](auto& s) { s.mutable_update_limits()->set_update_norm_bound(-1); },
       "config field 'strategy.update_limits.update_norm_bound' must be in"},
      {[](auto& s) {
         s.mutable_update_limits()->set_update_norm_bound(std::nan(""));
       },
       "'strategy.update_limits.update_norm_bound'"},
      {[](auto& s) {
         s.mutable_update_limits()->set_update_norm_action("scale");
       },
       "config field 'strategy.update_limits.update_norm_action' must be "
       "refuse or clip, got 'scale'"},
  };
  for (const Case& k : cases) {
    v1::StrategyConfig s;
    k.change(s);
    absl::Status st = ValidateStrategyConfig(s, "strategy.");
    EXPECT_EQ(st.code(), kInvalidArgument) << s.ShortDebugString();
    EXPECT_THAT(st.message(), HasSubstr(k.message)) << s.ShortDebugString();
  }
}

}  // namespace
}  // namespace fedge
