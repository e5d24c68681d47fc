// strategy.dp in the configuration: each bad field named with its fix, the
// combinations that would break DP-FedAvg's guarantee refused, and the
// conversion into StrategyOptions and the plans agents get.
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/fl_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

v1::StrategyConfig Private(const std::string& mode = "central") {
  v1::StrategyConfig c;
  c.mutable_dp()->set_mode(mode);
  c.mutable_dp()->set_clip_norm(0.5);
  c.mutable_dp()->set_noise_multiplier(1.2);
  return c;
}

TEST(DpConfigTest, BadFieldsAndCombinations_NamedWithTheFix) {
  struct Case {
    std::function<void(v1::StrategyConfig&)> change;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto& c) { c.mutable_dp()->set_mode("on"); },
       "'strategy.dp.mode' must be off, central or local, got 'on'"},
      {[](auto& c) { c.mutable_dp()->set_clip_norm(0); },
       "'strategy.dp.clip_norm' must be in (0"},
      {[](auto& c) { c.mutable_dp()->set_clip_norm(-1); },
       "'strategy.dp.clip_norm'"},
      {[](auto& c) { c.mutable_dp()->set_noise_multiplier(0); },
       "'strategy.dp.noise_multiplier' must be in (0"},
      {[](auto& c) { c.mutable_dp()->set_delta(1); },
       "'strategy.dp.delta' must be in (0, 1)"},
      {[](auto& c) { c.mutable_dp()->set_delta(0); }, "'strategy.dp.delta'"},
      {[](auto& c) { c.mutable_dp()->set_max_epsilon(-1); },
       "'strategy.dp.max_epsilon' must be in [0"},
      {[](auto& c) { c.set_name("median"); },
       "'strategy.name' must be fedavg, fedprox, fedavgm, fedadam, fedyogi "
       "or fedadagrad with strategy.dp.mode = central"},
      {[](auto& c) { c.set_name("scaffold"); }, "'strategy.name'"},
      {[](auto& c) { c.set_name("fednova"); }, "'strategy.name'"},
      {[](auto& c) { c.set_mode("fedbuff"); },
       "'strategy.mode' must be sync with strategy.dp.mode = central"},
      {[](auto& c) { c.mutable_secure_aggregation()->set_enabled(true); },
       "'strategy.dp.mode' must be off with secure_aggregation.enabled"},
  };
  for (const Case& c : cases) {
    v1::StrategyConfig config = Private();
    c.change(config);
    absl::Status st = ValidateStrategyConfig(config, "strategy.");
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument)
        << config.ShortDebugString();
    EXPECT_THAT(st.message(), HasSubstr(c.message))
        << config.ShortDebugString();
  }
  EXPECT_TRUE(ValidateStrategyConfig(Private("central"), "strategy.").ok());
  EXPECT_TRUE(ValidateStrategyConfig(Private("local"), "strategy.").ok());
  // Off: the DP fields are not looked at.
  v1::StrategyConfig off = Private("off");
  off.mutable_dp()->set_clip_norm(-1);
  off.set_name("median");
  EXPECT_TRUE(ValidateStrategyConfig(off, "strategy.").ok());
}

TEST(DpConfigTest, EdgeAggregator_RefusesItsOwnDp) {
  v1::CoordinatorConfig c;
  *c.mutable_strategy() = Private();
  c.mutable_upstream()->set_address("127.0.0.1:1");
  c.mutable_upstream()->set_agent_id("edge-1");
  c.mutable_tls()->set_insecure(true);
  c.mutable_upstream()->mutable_tls()->set_insecure(true);
  absl::Status st = ValidateCoordinatorConfig(c);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("'strategy.dp.mode' must be off with "
                                      "upstream.address set"));
}

TEST(DpConfigTest, ToStrategyOptions_AndThePlansAgentsGet) {
  v1::StrategyConfig c = Private("local");
  c.mutable_dp()->set_delta(1e-6);
  c.mutable_dp()->set_max_epsilon(8);
  c.mutable_dp()->set_noise_seed(99);
  StrategyOptions o = ToStrategyOptions(c, v1::TrainPlanConfig(), 1);
  ASSERT_TRUE(o.dp.has_value());
  EXPECT_TRUE(o.dp->local);
  EXPECT_DOUBLE_EQ(o.dp->clip_norm, 0.5);
  EXPECT_DOUBLE_EQ(o.dp->noise_multiplier, 1.2);
  EXPECT_DOUBLE_EQ(o.dp->delta, 1e-6);
  EXPECT_DOUBLE_EQ(o.dp->max_epsilon, 8);
  EXPECT_EQ(o.dp->noise_seed, 99u);
  EXPECT_FALSE(ToStrategyOptions(Private("off"), v1::TrainPlanConfig(), 1)
                   .dp.has_value());
  // The plan on the wire and back.
  TrainPlan plan;
  plan.dp_clip_norm = 0.5;
  plan.dp_noise_stddev = 0.6;
  const TrainPlan back = ToTrainPlan(ToTrainPlanProto(plan));
  EXPECT_DOUBLE_EQ(back.dp_clip_norm, 0.5);
  EXPECT_DOUBLE_EQ(back.dp_noise_stddev, 0.6);
  // Nonsense from the wire is ignored, not trusted.
  v1::TrainPlanProto bad;
  bad.set_dp_clip_norm(-3);
  bad.set_dp_noise_stddev(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(ToTrainPlan(bad).dp_clip_norm, 0);
  EXPECT_EQ(ToTrainPlan(bad).dp_noise_stddev, 0);
}

}  // namespace
}  // namespace fedge
