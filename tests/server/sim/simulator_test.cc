#include "server/sim/simulator.h"

#include <cmath>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

// Moves every weight halfway toward `target`, on any examples. Records who
// trained. Evaluation reports accuracy = 1 - mean |w - target|.
class FakeTrainer : public LocalTrainer {
 public:
  explicit FakeTrainer(float target, absl::Mutex* mu,
                       std::vector<int64_t>* sizes)
      : target_(target), mu_(mu), sizes_(sizes) {}

  absl::StatusOr<TrainOutput> Train(
      const ModelState& global, const TrainPlan& plan,
      absl::Span<const int64_t> indices) override {
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

 private:
  float target_;
  absl::Mutex* mu_;
  std::vector<int64_t>* sizes_;
};

ModelState OneWeight(float value) {
  ModelState s;
  s.Add(*TensorBuffer::FromFloats("w", {1}, {value}));
  return s;
}

struct Fixture {
  absl::Mutex mu;
  std::vector<int64_t> sizes;

  absl::StatusOr<std::unique_ptr<Simulator>> Make(SimulatorOptions options,
                                                  int agents, int threads) {
    std::vector<std::vector<int64_t>> partitions(agents);
    for (int i = 0; i < agents; ++i) partitions[i].assign(i + 1, 0);
    std::vector<std::unique_ptr<LocalTrainer>> trainers;
    for (int i = 0; i < threads; ++i) {
      trainers.push_back(std::make_unique<FakeTrainer>(1.0f, &mu, &sizes));
    }
    return Simulator::Create(options, std::move(partitions), OneWeight(0),
                             std::move(trainers));
  }
};

TEST(SimulatorTest, Rounds_SelectFractionAndConverge) {
  Fixture f;
  SimulatorOptions options;
  options.engine.fraction = 0.1;
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
  options.engine.count = 3;
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
  options.engine.fraction = 0.5;
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
