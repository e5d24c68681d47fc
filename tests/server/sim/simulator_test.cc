#include "server/sim/simulator.h"

#include <algorithm>
#include <cmath>

#include "absl/synchronization/mutex.h"
#include "common/secagg/quantization.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

// Moves every weight halfway toward `target`, on any examples. Records who
// trained. Evaluation reports accuracy = 1 - mean |w - target|.
class FakeTrainer : public LocalTrainer {
 public:
  explicit FakeTrainer(float target, absl::Mutex* mu,
                       std::vector<int64_t>* sizes,
                       std::vector<uint64_t>* seeds = nullptr)
      : target_(target), mu_(mu), sizes_(sizes), seeds_(seeds) {}

  absl::StatusOr<TrainOutput> Train(
      const ModelState& global, const TrainPlan& plan,
      absl::Span<const int64_t> indices) override {
    // The agent holding 3 examples always fails (a crash in training).
    if (fail_on_three_ && indices.size() == 3) {
      return absl::InternalError("simulated training crash");
    }
    {
      absl::MutexLock lock(mu_);
      if (seeds_ != nullptr) seeds_->push_back(plan.seed);
    }
    TrainOutput out;
    out.delta = global.Clone();
    for (float& v : out.delta.mutable_tensor(0).mutable_floats()) {
      v = 0.5f * (target_ - v);
    }
    out.metrics.num_examples = static_cast<int64_t>(indices.size());
    out.metrics.loss = 1.0;
    absl::MutexLock lock(mu_);
    sizes_->push_back(out.metrics.num_examples);
    return out;
  }

  absl::StatusOr<EvalMetrics> Evaluate(const ModelState& weights) override {
    EvalMetrics m;
    m.num_examples = 1;
    m.accuracy = 1.0 - std::fabs(weights.tensor(0).floats()[0] - target_);
    return m;
  }

  bool fail_on_three_ = false;

 private:
  float target_;
  absl::Mutex* mu_;
  std::vector<int64_t>* sizes_;
  std::vector<uint64_t>* seeds_;
};

ModelState OneWeight(float value) {
  ModelState s;
  s.Add(*TensorBuffer::FromFloats("w", {1}, {value}));
  return s;
}

struct Fixture {
  absl::Mutex mu;
  std::vector<int64_t> sizes;
  std::vector<uint64_t> seeds;
  bool fail_on_three = false;

  absl::StatusOr<std::unique_ptr<Simulator>> Make(SimulatorOptions options,
                                                  int agents, int threads) {
    std::vector<std::vector<int64_t>> partitions(agents);
    for (int i = 0; i < agents; ++i) partitions[i].assign(i + 1, 0);
    std::vector<std::unique_ptr<LocalTrainer>> trainers;
    for (int i = 0; i < threads; ++i) {
      auto t = std::make_unique<FakeTrainer>(1.0f, &mu, &sizes, &seeds);
      t->fail_on_three_ = fail_on_three;
      trainers.push_back(std::move(t));
    }
    return Simulator::Create(options, std::move(partitions), OneWeight(0),
                             std::move(trainers));
  }
};

TEST(SimulatorTest, Rounds_SelectFractionAndConverge) {
  Fixture f;
  SimulatorOptions options;
  options.strategy.fraction = 0.1;
  options.engine.num_rounds = 8;
  auto sim = f.Make(options, 50, 2);
  ASSERT_TRUE(sim.ok()) << sim.status();
  int callbacks = 0;
  auto records = (*sim)->Run([&](const RoundRecord&) { ++callbacks; });
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 8u);
  EXPECT_EQ(callbacks, 8);
  for (const RoundRecord& r : *records) {
    EXPECT_EQ(r.num_agents, 5);
    EXPECT_EQ(r.num_failed, 0);
    ASSERT_TRUE(r.test_accuracy.has_value());
  }
  // Each round halves the distance to the target.
  EXPECT_NEAR((*sim)->global_model().tensor(0).floats()[0],
              1.0 - std::pow(0.5, 8), 1e-6);
  EXPECT_EQ(f.sizes.size(), 40u);
}

TEST(SimulatorTest, Update_IsWeightedByExamples) {
  Fixture f;
  SimulatorOptions options;
  options.strategy.count = 3;
  options.engine.num_rounds = 1;
  auto sim = f.Make(options, 3, 1);
  ASSERT_TRUE(sim.ok());
  auto records = (*sim)->Run(nullptr);
  ASSERT_TRUE(records.ok());
  EXPECT_EQ((*records)[0].num_examples, 1 + 2 + 3);
}

TEST(SimulatorTest, StopAtAccuracy_EndsEarly) {
  Fixture f;
  SimulatorOptions options;
  options.strategy.fraction = 0.5;
  options.engine.num_rounds = 50;
  options.stop_at_accuracy = 0.9;  // Reached after 4 halvings (0.9375).
  auto sim = f.Make(options, 10, 2);
  ASSERT_TRUE(sim.ok());
  auto records = (*sim)->Run(nullptr);
  ASSERT_TRUE(records.ok());
  EXPECT_EQ(records->size(), 4u);
}

TEST(SimulatorTest, EvalEvery_SkipsEvaluationButNotTheLastRound) {
  Fixture f;
  SimulatorOptions options;
  options.engine.num_rounds = 5;
  options.eval_every_rounds = 2;
  auto sim = f.Make(options, 10, 1);
  ASSERT_TRUE(sim.ok());
  auto records = (*sim)->Run(nullptr);
  ASSERT_TRUE(records.ok());
  std::vector<bool> evaluated;
  for (const auto& r : *records)
    evaluated.push_back(r.test_accuracy.has_value());
  EXPECT_EQ(evaluated, (std::vector<bool>{false, true, false, true, true}));
}

TEST(SimulatorTest, TrainingError_IsAFailedAgentAndTheRunGoesOn) {
  Fixture f;
  f.fail_on_three = true;  // Agent 2 holds 3 examples.
  SimulatorOptions options;
  options.strategy.count = 3;
  options.engine.num_rounds = 4;
  auto sim = f.Make(options, 3, 2);
  ASSERT_TRUE(sim.ok());
  auto records = (*sim)->Run(nullptr);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 4u);
  for (const RoundRecord& r : *records) {
    EXPECT_EQ(r.num_agents, 2);
    EXPECT_EQ(r.num_failed, 1);
    EXPECT_EQ(r.num_examples, 1 + 2);
  }
}

TEST(SimulatorTest, InjectedDropouts_RecordedAsFailures) {
  Fixture f;
  SimulatorOptions options;
  options.strategy.count = 10;
  options.engine.num_rounds = 5;
  options.dropout_probability = 0.3;
  auto sim = f.Make(options, 10, 2);
  ASSERT_TRUE(sim.ok());
  auto records = (*sim)->Run(nullptr);
  ASSERT_TRUE(records.ok()) << records.status();
  int failed = 0;
  for (const RoundRecord& r : *records) {
    EXPECT_EQ(r.num_agents + r.num_failed, 10);
    failed += r.num_failed;
  }
  EXPECT_GT(failed, 0);  // About 15 of 50 expected.
  EXPECT_LT(failed, 40);
}

TEST(SimulatorTest, AbandonedRoundsInARow_StopTheRunNamingTheLimit) {
  Fixture f;
  SimulatorOptions options;
  options.strategy.count = 4;
  options.engine.num_rounds = 50;
  options.dropout_probability = 1;  // Every round is abandoned.
  options.max_abandoned_rounds = 3;
  auto sim = f.Make(options, 4, 1);
  ASSERT_TRUE(sim.ok());
  int rounds_seen = 0;
  auto records = (*sim)->Run([&](const RoundRecord&) { ++rounds_seen; });
  EXPECT_EQ(records.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(records.status().message(),
              testing::HasSubstr("max_abandoned_rounds is 3"));
  EXPECT_EQ(rounds_seen, 3);  // Each still recorded.
  // Why: nobody reported because everybody dropped out, not a divergence.
  EXPECT_THAT(records.status().message(),
              testing::HasSubstr("the last 3 attempted rounds (1 to 3) were "
                                 "abandoned: no agent reported (all 12 "
                                 "selected agents dropped out"));
  EXPECT_THAT(records.status().message(),
              testing::HasSubstr("0 of 50 rounds completed"));
  EXPECT_THAT(records.status().message(),
              testing::Not(testing::HasSubstr("diverged")));
}

TEST(SimulatorTest, AbandonedForLackOfQuorum_StopSaysSo) {
  Fixture f;
  f.fail_on_three = true;  // Agent 2 of 3 always fails: 2 of 3 report.
  SimulatorOptions options;
  options.strategy.count = 3;
  options.engine.min_available_agents = 3;
  options.engine.min_fit_agents = 3;
  options.engine.num_rounds = 5;
  options.max_abandoned_rounds = 2;
  auto sim = f.Make(options, 3, 1);
  ASSERT_TRUE(sim.ok()) << sim.status();
  auto records = (*sim)->Run(nullptr);
  EXPECT_EQ(records.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(records.status().message(),
              testing::HasSubstr("fewer agents reported than the quorum of 3 "
                                 "(4 updates in all, 2 agents failed)"));
}

// Abandoned rounds are reported (their ids count on) but do not count
// toward num_rounds, as in the coordinator: the run attempts more rounds.
TEST(SimulatorTest, AbandonedRounds_DoNotCountTowardNumRounds) {
  Fixture f;
  SimulatorOptions options;
  options.strategy.count = 2;
  options.engine.num_rounds = 4;
  options.dropout_probability = 0.6;
  options.max_abandoned_rounds = 0;
  auto sim = f.Make(options, 10, 1);
  ASSERT_TRUE(sim.ok()) << sim.status();
  int completed = 0, abandoned = 0;
  auto records = (*sim)->Run([&](const RoundRecord& r) {
    if (r.num_agents == 0) {
      ++abandoned;
      EXPECT_TRUE((*sim)->last_round_abandoned()) << "round " << r.round;
    } else {
      ++completed;
      EXPECT_FALSE((*sim)->last_round_abandoned()) << "round " << r.round;
    }
    EXPECT_EQ((*sim)->completed_rounds(), completed) << "round " << r.round;
    EXPECT_EQ(r.round, completed + abandoned);
  });
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(completed, 4);
  EXPECT_GT(abandoned, 0) << "this seed abandons no round";
  EXPECT_EQ(records->size(), static_cast<size_t>(4 + abandoned));
}

// Runs `options` with and without secure aggregation (same seeds): the
// records of both and the final weights.
struct PlainAndSecure {
  std::vector<RoundRecord> plain, secure;
  std::vector<float> plain_w, secure_w;  // Global weight after each round.
};

PlainAndSecure RunBoth(SimulatorOptions options, int agents) {
  PlainAndSecure out;
  for (bool secure : {false, true}) {
    Fixture f;
    options.secure_aggregation.enabled = secure;
    auto sim = f.Make(options, agents, 2);
    EXPECT_TRUE(sim.ok()) << sim.status();
    if (!sim.ok()) return out;
    std::vector<float>& w = secure ? out.secure_w : out.plain_w;
    auto records = (*sim)->Run([&](const RoundRecord&) {
      w.push_back((*sim)->global_model().tensor(0).floats()[0]);
    });
    EXPECT_TRUE(records.ok()) << records.status();
    if (records.ok()) (secure ? out.secure : out.plain) = *records;
  }
  return out;
}

// quantization.h's bound on the mean of a secure round with the default
// options (clip range 10, weight unit 1000) for `selected` agents of which
// `record` says who reported with how many examples: each of the k inputs
// is off by half a ring step, in units of examples / 1000.
double SecureMeanBound(int selected, const RoundRecord& record) {
  secagg::Quantizer q = *secagg::Quantizer::Create({selected, 10.0});
  return q.MaxSumError(record.num_agents) * 1000 / record.num_examples + 1e-7;
}

TEST(SimulatorTest, SecureAggregation_EqualsPlainRoundsWithinPrecision) {
  SimulatorOptions options;
  options.strategy.count = 6;
  options.engine.num_rounds = 5;
  PlainAndSecure r = RunBoth(options, 20);
  ASSERT_EQ(r.secure.size(), 5u);
  ASSERT_EQ(r.plain.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(r.secure[i].num_agents, 6);
    EXPECT_EQ(r.secure[i].num_examples, r.plain[i].num_examples);
    // The error of a round adds to the earlier rounds' (which moved the
    // model it started from): twice the bound covers them here, each
    // round halving the distance to the target.
    EXPECT_NEAR(r.secure_w[i], r.plain_w[i], 2 * SecureMeanBound(6, r.plain[i]))
        << "round " << i + 1;
  }
  EXPECT_GT(r.plain_w.back(), 0.9);  // It learned.
}

TEST(SimulatorTest, SecureAggregation_DropoutsAfterSharingKeysRecovered) {
  SimulatorOptions options;
  options.strategy.count = 10;         // Threshold floor(10 / 2) + 1 = 6.
  options.engine.num_rounds = 4;       // (This seed's round 5 drops 5.)
  options.dropout_probability = 0.15;  // Agents drop after sharing keys.
  options.max_abandoned_rounds = 0;
  PlainAndSecure r = RunBoth(options, 10);
  ASSERT_EQ(r.secure.size(), 4u);
  ASSERT_EQ(r.plain.size(), 4u);
  int dropped = 0;
  for (size_t i = 0; i < 4; ++i) {
    // The same agents drop in both runs (the seed decides).
    ASSERT_GE(r.plain[i].num_agents, 6) << "this seed drops too many";
    dropped += r.plain[i].num_failed;
    EXPECT_EQ(r.secure[i].num_agents, r.plain[i].num_agents);
    EXPECT_EQ(r.secure[i].num_failed, r.plain[i].num_failed);
    EXPECT_NEAR(r.secure_w[i], r.plain_w[i],
                2 * SecureMeanBound(10, r.plain[i]))
        << "round " << i + 1;
  }
  EXPECT_GT(dropped, 0);
}

TEST(SimulatorTest, SecureAggregation_TooFewSurvivors_RoundAbandonedModelKept) {
  SimulatorOptions options;
  options.strategy.count = 10;
  options.engine.num_rounds = 8;
  options.dropout_probability = 0.5;
  options.max_abandoned_rounds = 0;
  PlainAndSecure r = RunBoth(options, 10);
  ASSERT_EQ(r.secure.size(), 8u);
  int abandoned = 0, aggregated = 0;
  float before = 0;  // The initial weight.
  for (size_t i = 0; i < 8; ++i) {
    const int survivors = r.plain[i].num_agents;  // Same drops as plain.
    if (survivors < 6) {
      ++abandoned;
      EXPECT_EQ(r.secure[i].num_agents, 0) << "round " << i + 1;
      EXPECT_EQ(r.secure[i].num_failed, 10);
      EXPECT_EQ(r.secure_w[i], before) << "round " << i + 1;
    } else {
      ++aggregated;
      EXPECT_EQ(r.secure[i].num_agents, survivors);
      EXPECT_NE(r.secure_w[i], before);
    }
    before = r.secure_w[i];
  }
  EXPECT_GT(abandoned, 0);  // The seed gives both kinds of rounds.
  EXPECT_GT(aggregated, 0);
}

TEST(SimulatorTest, SecureAggregation_WithAStrategyNeedingEachUpdate_Refused) {
  Fixture f;
  SimulatorOptions options;
  options.strategy.name = "median";
  options.secure_aggregation.enabled = true;
  auto sim = f.Make(options, 4, 1);
  ASSERT_FALSE(sim.ok());
  EXPECT_THAT(sim.status().message(),
              testing::HasSubstr("strategy.secure_aggregation"));
}

TEST(SimulatorTest, PlanSeeds_AreTheOneDerivation) {
  Fixture f;
  SimulatorOptions options;
  options.strategy.count = 4;
  options.strategy.seed = 99;
  options.engine.num_rounds = 1;
  auto sim = f.Make(options, 4, 1);
  ASSERT_TRUE(sim.ok());
  ASSERT_TRUE((*sim)->Run(nullptr).ok());
  std::vector<uint64_t> expected;
  for (int i = 0; i < 4; ++i) {
    expected.push_back(AgentPlanSeed(99, 1, SimAgentId(i)));
  }
  std::sort(expected.begin(), expected.end());
  std::sort(f.seeds.begin(), f.seeds.end());
  EXPECT_EQ(f.seeds, expected);
}

TEST(SimulatorTest, FedAvgM_ByName_UsesServerMomentum) {
  Fixture f;
  SimulatorOptions options;
  options.strategy.name = "fedavgm";
  options.strategy.server_momentum = 0.5;
  options.strategy.count = 2;
  options.engine.num_rounds = 2;
  auto sim = f.Make(options, 2, 1);
  ASSERT_TRUE(sim.ok());
  ASSERT_TRUE((*sim)->Run(nullptr).ok());
  // Round 1: v = 0.5, w = 0.5. Round 2: mean delta 0.25, v = 0.25 + 0.25.
  EXPECT_NEAR((*sim)->global_model().tensor(0).floats()[0], 1.0, 1e-6);
}

TEST(SimulatorTest, Create_RefusesEmptyInputs) {
  SimulatorOptions options;
  EXPECT_EQ(Simulator::Create(options, {}, OneWeight(0), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SimulatorTest, AgentIds_RoundTrip) {
  EXPECT_EQ(SimAgentId(42), "agent-00042");
  EXPECT_EQ(SimAgentIndex("agent-00042"), 42);
  EXPECT_EQ(SimAgentIndex("bob"), -1);
}

}  // namespace
}  // namespace fedge
