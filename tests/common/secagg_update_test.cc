// What an agent masks under secure aggregation, the decoding of the sum,
// and the validation of StrategyConfig.secure_aggregation.
#include "common/secagg_update.h"

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "common/fl_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;

ModelState Model(std::vector<float> w, int64_t counter) {
  ModelState m;
  m.Add(*TensorBuffer::FromFloats("w", {static_cast<int64_t>(w.size())}, w));
  TensorBuffer c = *TensorBuffer::Zeros("steps", DType::kInt64, {1});
  c.mutable_int64s()[0] = counter;
  m.Add(std::move(c));
  return m;
}

TEST(SecAggUpdateTest, Input_IsTheWeightedDeltaThenTheScalars) {
  SecureAggregationOptions options;
  options.weight_unit = 100;
  StrategyOptions fedavg;
  ModelState delta = Model({1, -2}, 7);
  FitResult r;
  r.num_examples = 50;
  r.num_steps = 10;
  r.metrics.loss = 2;
  r.metrics.accuracy = 0.5;
  r.delta = &delta;
  absl::StatusOr<SecAggInput> in = SecAggInput::Prepare(options, fedavg, r);
  ASSERT_TRUE(in.ok()) << in.status();
  std::vector<float> flat;
  for (absl::Span<const float> p : in->pieces()) {
    flat.insert(flat.end(), p.begin(), p.end());
  }
  EXPECT_EQ(static_cast<int64_t>(flat.size()),
            SecAggVectorLength(SchemaOf(delta)));
  // (50 / 100) * delta; w, n, n a / 1000, n loss, n accuracy over 100.
  EXPECT_THAT(
      flat, ElementsAre(0.5f, -1.0f, 0.5f, 0.5f,
                        FloatNear(50 * 10 / 1000.0 / 100, 1e-7), 1.0f, 0.25f));
  EXPECT_EQ(in->clipped(), 0);
  // An element beyond the clip range (10) is counted.
  ModelState big = Model({30, 1}, 0);
  r.delta = &big;
  in = SecAggInput::Prepare(options, fedavg, r);
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->clipped(), 1);  // 0.5 * 30 = 15.
}

TEST(SecAggUpdateTest, FedNova_WeightIsExamplesOverLocalWork) {
  StrategyOptions nova;
  nova.name = "fednova";
  UpdateWeights w = UpdateSumWeights(nova, 120, 30);
  EXPECT_DOUBLE_EQ(w.work, 30);
  EXPECT_DOUBLE_EQ(w.weight, 4);
  nova.plan.momentum = 0.5;
  w = UpdateSumWeights(nova, 120, 2);
  // (2 - 0.5 (1 - 0.25) / 0.5) / 0.5 = 2.5.
  EXPECT_DOUBLE_EQ(w.work, 2.5);
  EXPECT_DOUBLE_EQ(w.weight, 48);
  StrategyOptions fedavg;
  EXPECT_DOUBLE_EQ(UpdateSumWeights(fedavg, 120, 30).weight, 120);
}

TEST(SecAggUpdateTest, DecodeSum_ScalesBackAndKeepsTheGlobalCounters) {
  SecureAggregationOptions options;
  options.weight_unit = 10;
  const ModelState global = Model({0, 0}, 42);
  // Two agents' inputs summed: w = 3 + 5, n = 3 + 5, ...
  const std::vector<float> sum = {0.8f, -0.4f, 0.8f, 0.8f, 0.002f, 1.6f, 0.4f};
  absl::StatusOr<SecAggSum> s = DecodeSecAggSum(options, global, sum, 2);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(s->weighted_delta_sum.tensor(0).floats(),
              ElementsAre(8.0f, -4.0f));
  EXPECT_EQ(s->weighted_delta_sum.tensor(1).int64s()[0], 42);
  EXPECT_FLOAT_EQ(s->total_weight, 8);
  EXPECT_FLOAT_EQ(s->examples, 8);
  EXPECT_NEAR(s->work, 20, 1e-3);
  EXPECT_FLOAT_EQ(s->loss_sum, 16);
  EXPECT_FLOAT_EQ(s->accuracy_sum, 4);
  EXPECT_EQ(s->fit().num_updates, 2);
  // Wrong length, or no weight: refused.
  EXPECT_FALSE(DecodeSecAggSum(options, global, {0.1f}, 1).ok());
  EXPECT_FALSE(DecodeSecAggSum(options, global, {0, 0, 0, 0, 0, 0, 0}, 1).ok());
}

TEST(SecAggUpdateTest, Threshold_DefaultsAndIsRaisedToHalfTheNeighbourhood) {
  SecureAggregationOptions o;
  EXPECT_EQ(SecAggThreshold(o, 10), 6);
  EXPECT_EQ(SecAggThreshold(o, 2), 2);
  o.threshold = 8;
  EXPECT_EQ(SecAggThreshold(o, 10), 8);
  o.threshold = 3;
  EXPECT_EQ(SecAggThreshold(o, 10), 6);  // 2t > |N| needs 6.
  o.neighbors = 4;
  EXPECT_EQ(SecAggThreshold(o, 10), 3);  // |N| = 5.
  EXPECT_EQ(SecAggThreshold(o, 5), 3);   // 5 agents: the complete graph.
  absl::StatusOr<secagg::SecAggConfig> c =
      SecAggSessionConfig(o, "run/1", 5, 100);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->neighbors, 0);
  c = SecAggSessionConfig(o, "run/1", 12, 100);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->neighbors, 4);
  EXPECT_EQ(c->max_abs_value, 10);
}

TEST(SecAggUpdateTest, Config_DefaultsConversionAndValidation) {
  v1::StrategyConfig s;
  EXPECT_FALSE(s.secure_aggregation().enabled());
  EXPECT_EQ(s.secure_aggregation().clip_range(), 10);
  EXPECT_EQ(s.secure_aggregation().weight_unit(), 0);  // Automatic.
  s.mutable_secure_aggregation()->set_enabled(true);
  s.mutable_secure_aggregation()->set_neighbors(6);
  EXPECT_EQ(ValidateStrategyConfig(s, "strategy."), absl::OkStatus());
  SecureAggregationOptions o =
      ToSecureAggregationOptions(s.secure_aggregation());
  EXPECT_TRUE(o.enabled);
  EXPECT_EQ(o.neighbors, 6);
  EXPECT_EQ(o.clip_range, 10);
  for (const char* name : {"fedavg", "fedavgm", "fedprox", "fednova", "fedadam",
                           "fedyogi", "fedadagrad"}) {
    s.set_name(name);
    EXPECT_EQ(ValidateStrategyConfig(s, "strategy."), absl::OkStatus()) << name;
  }

  struct Case {
    std::function<void(v1::StrategyConfig&)> change;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto& s) { s.set_name("median"); },
       "config field 'strategy.secure_aggregation.enabled' secure aggregation "
       "gives the coordinator only the sum of the updates, which strategy "
       "'median' cannot use; choose fedavg"},
      {[](auto& s) { s.set_name("krum"); }, "strategy 'krum' cannot use"},
      {[](auto& s) { s.set_name("scaffold"); },
       "strategy 'scaffold' cannot use"},
      {[](auto& s) { s.set_name("norm_bounded"); },
       "strategy 'norm_bounded' cannot use"},
      {[](auto& s) { s.set_mode("fedbuff"); },
       "'strategy.secure_aggregation.enabled' secure aggregation needs "
       "strategy.mode sync"},
      {[](auto& s) { s.set_update_encoding("int8"); },
       "set strategy.update_encoding to fp32"},
      {[](auto& s) { s.add_device_plans()->set_update_encoding("topk"); },
       "strategy.device_plans[0].update_encoding to fp32"},
      {[](auto& s) { s.set_count(1); }, "needs at least 2 agents"},
      {[](auto& s) { s.mutable_secure_aggregation()->set_neighbors(3); },
       "'strategy.secure_aggregation.neighbors' must be 0 (complete graph) "
       "or an even number >= 2, got 3"},
      {[](auto& s) { s.mutable_secure_aggregation()->set_threshold(-1); },
       "'strategy.secure_aggregation.threshold' must be >= 0"},
      {[](auto& s) { s.mutable_secure_aggregation()->set_threshold(8); },
       "'strategy.secure_aggregation.threshold' must be <= neighbors + 1 (7"},
      {[](auto& s) { s.mutable_secure_aggregation()->set_clip_range(0); },
       "'strategy.secure_aggregation.clip_range' must be in (0"},
      {[](auto& s) {
         s.mutable_secure_aggregation()->set_weight_unit(std::nan(""));
       },
       "'strategy.secure_aggregation.weight_unit' must be in [0"},
      {[](auto& s) { s.mutable_secure_aggregation()->set_weight_unit(-1); },
       "'strategy.secure_aggregation.weight_unit' must be in [0"},
  };
  for (const Case& k : cases) {
    v1::StrategyConfig c = s;
    c.set_name("fedavg");
    k.change(c);
    absl::Status st = ValidateStrategyConfig(c, "strategy.");
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument)
        << c.ShortDebugString();
    EXPECT_THAT(st.message(), HasSubstr(k.message)) << c.ShortDebugString();
  }
  // Off, any strategy goes.
  v1::StrategyConfig off;
  off.set_name("median");
  EXPECT_EQ(ValidateStrategyConfig(off, "strategy."), absl::OkStatus());
}

TEST(SecAggUpdateTest, Coordinator_RunsItButNotOnAnEdgeAggregator) {
  v1::CoordinatorConfig c;
  c.set_listen_address("127.0.0.1:0");
  c.set_state_dir("/tmp/x");
  c.mutable_tls()->set_insecure(true);
  c.mutable_strategy()->mutable_secure_aggregation()->set_enabled(true);
  EXPECT_EQ(ValidateCoordinatorConfig(c), absl::OkStatus());
  c.mutable_upstream()->set_address("127.0.0.1:1");
  absl::Status st = ValidateCoordinatorConfig(c);
  EXPECT_THAT(st.message(),
              HasSubstr("'strategy.secure_aggregation.enabled' an edge "
                        "aggregator forwards"));
}

TEST(SecAggUpdateTest, WeightUnit_AutomaticIsTheLargestDeclaredCount) {
  SecureAggregationOptions o;
  o.weight_unit = 0;
  EXPECT_EQ(ResolveWeightUnit(o, 20000).weight_unit, 20000);
  EXPECT_EQ(ResolveWeightUnit(o, 0).weight_unit, 1000);  // None declared.
  o.weight_unit = 50;
  EXPECT_EQ(ResolveWeightUnit(o, 20000).weight_unit, 50);  // Configured.
}

TEST(SecAggUpdateTest, Task_RoundTripsAndRefusesASessionNoneCouldHave) {
  SecAggAssignment a;
  a.config.session_id = "run/round-3";
  a.config.num_clients = 5;
  a.config.threshold = 3;
  a.config.vector_length = 1000;
  a.config.max_abs_value = 10;
  a.client_id = 4;
  a.options.clip_range = 10;
  a.options.weight_unit = 600;
  a.strategy_name = "fednova";
  a.limits.max_examples_per_update = 7;
  a.limits.update_norm_bound = 2.5;
  a.limits.clip = true;
  a.stage_timeout_ms = 1234;
  const v1::SecAggTask t = ToSecAggTask(a);
  absl::StatusOr<SecAggAssignment> back = FromSecAggTask(t);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->config.session_id, "run/round-3");
  EXPECT_EQ(back->config.num_clients, 5);
  EXPECT_EQ(back->config.threshold, 3);
  EXPECT_EQ(back->config.vector_length, 1000);
  EXPECT_EQ(back->config.max_abs_value, 10);
  EXPECT_EQ(back->client_id, 4);
  EXPECT_EQ(back->options.weight_unit, 600);
  EXPECT_EQ(back->strategy_name, "fednova");
  EXPECT_EQ(back->limits.max_examples_per_update, 7);
  EXPECT_EQ(back->limits.update_norm_bound, 2.5);
  EXPECT_TRUE(back->limits.clip);
  EXPECT_EQ(back->stage_timeout_ms, 1234);
  v1::SecAggTask bad = t;
  bad.set_client_id(6);
  EXPECT_THAT(FromSecAggTask(bad).status().message(),
              HasSubstr("client_id' must be in [1, 5]"));
  bad = t;
  bad.set_threshold(1);
  EXPECT_EQ(FromSecAggTask(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = t;
  bad.set_weight_unit(0);
  EXPECT_THAT(FromSecAggTask(bad).status().message(), HasSubstr("weight_unit"));
}

}  // namespace
}  // namespace fedge
