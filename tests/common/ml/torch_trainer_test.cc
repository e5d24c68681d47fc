#include "common/ml/torch_trainer.h"

#include <functional>
#include <memory>
#include <numeric>
#include <optional>

#include "common/ml/torch_converters.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

class TorchTrainerTest : public testing::Test {
 protected:
  void SetUp() override {
    SyntheticOptions options;
    options.num_examples = 2000;
    options.seed = 5;
    auto split = MakeSyntheticSplit(options, 500);
    ASSERT_TRUE(split.ok()) << split.status();
    train_ = std::move(split->first);
    test_ = std::move(split->second);
  }

  std::unique_ptr<TorchTrainer> MakeTrainer(const std::string& arch) {
    TorchTrainerOptions options;
    options.model.architecture = arch;
    options.train = &train_;
    options.eval = &test_;
    auto t = TorchTrainer::Create(options);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *std::move(t) : nullptr;
  }

  Dataset train_, test_;
};

TEST_F(TorchTrainerTest, Train_ImprovesTestAccuracy) {
  auto trainer = MakeTrainer("logreg");
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  auto before = trainer->Evaluate(*global);
  ASSERT_TRUE(before.ok());
  TrainPlan plan;
  plan.epochs = 2;
  plan.learning_rate = 0.05;
  auto out = trainer->Train(*global, plan, {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->metrics.num_examples, 2000);
  EXPECT_EQ(out->metrics.num_steps, 2 * 200);
  ASSERT_TRUE(AddScaledInPlace(*global, out->delta, 1.0f).ok());
  auto after = trainer->Evaluate(*global);
  ASSERT_TRUE(after.ok());
  EXPECT_GT(after->accuracy, before->accuracy + 0.3);
  EXPECT_LT(after->loss, before->loss);
  EXPECT_EQ(after->num_examples, 500);
}

TEST_F(TorchTrainerTest, Delta_IsLocalMinusGlobal) {
  auto trainer = MakeTrainer("2nn");
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  std::vector<int64_t> first(100);
  std::iota(first.begin(), first.end(), 0);
  auto out = trainer->Train(*global, TrainPlan{}, first);
  ASSERT_TRUE(out.ok());
  auto local = trainer->State();  // The trained weights.
  ASSERT_TRUE(local.ok());
  ASSERT_TRUE(AddScaledInPlace(*global, out->delta, 1.0f).ok());
  for (size_t i = 0; i < local->size(); ++i) {
    auto want = local->tensor(i).floats();
    auto got = global->tensor(i).floats();
    for (size_t j = 0; j < want.size(); ++j) {
      ASSERT_NEAR(got[j], want[j], 1e-6) << local->tensor(i).name();
    }
  }
}

TEST_F(TorchTrainerTest, SameSeed_SameDelta) {
  auto a = MakeTrainer("2nn"), b = MakeTrainer("2nn");
  auto global = a->State();
  ASSERT_TRUE(global.ok());
  TrainPlan plan;
  plan.seed = 17;
  std::vector<int64_t> idx = {5, 9, 100, 7, 1500, 3, 44, 12, 13, 14, 15};
  auto da = a->Train(*global, plan, idx), db = b->Train(*global, plan, idx);
  plan.seed = 18;
  auto dc = a->Train(*global, plan, idx);
  ASSERT_TRUE(da.ok() && db.ok() && dc.ok());
  EXPECT_TRUE(torch::equal(ViewAsTensor(da->delta.tensor(0)),
                           ViewAsTensor(db->delta.tensor(0))));
  EXPECT_FALSE(torch::equal(ViewAsTensor(da->delta.tensor(0)),
                            ViewAsTensor(dc->delta.tensor(0))));
}

TEST_F(TorchTrainerTest, MomentumAndProx_Train) {
  auto trainer = MakeTrainer("logreg");
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  TrainPlan plan;
  plan.momentum = 0.9;
  plan.weight_decay = 1e-4;
  plan.proximal_mu = 0.1;
  plan.learning_rate = 0.01;
  auto out = trainer->Train(*global, plan, {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_GT(out->metrics.accuracy, 0.3);
}

TEST_F(TorchTrainerTest, KeepPruned_ZeroWeightsStayZero_OthersTrain) {
  auto trainer = MakeTrainer("2nn");
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  // Prune every other element of the first layer's weights.
  absl::Span<float> w = global->mutable_tensor(0).mutable_floats();
  for (size_t i = 0; i < w.size(); i += 2) w[i] = 0;
  TrainPlan plan;
  plan.momentum = 0.9;
  plan.weight_decay = 1e-3;
  plan.learning_rate = 0.05;
  plan.keep_pruned = true;
  auto out = trainer->Train(*global, plan, {});
  ASSERT_TRUE(out.ok()) << out.status();
  absl::Span<const float> d = out->delta.tensor(0).floats();
  size_t moved = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i % 2 == 0) {
      ASSERT_EQ(d[i], 0.0f) << "pruned element " << i << " moved";
    } else {
      moved += d[i] != 0;
    }
  }
  EXPECT_GT(moved, d.size() / 4);  // The others trained.
  // Without keep_pruned the zeros train like any weight.
  plan.keep_pruned = false;
  auto free = trainer->Train(*global, plan, {});
  ASSERT_TRUE(free.ok()) << free.status();
  size_t zeros_moved = 0;
  for (size_t i = 0; i < d.size(); i += 2) {
    zeros_moved += free->delta.tensor(0).floats()[i] != 0;
  }
  EXPECT_GT(zeros_moved, d.size() / 8);
}

TEST_F(TorchTrainerTest, IndexOutOfRange_IsInvalidArgument) {
  auto trainer = MakeTrainer("logreg");
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  std::vector<int64_t> idx = {0, 2000};
  EXPECT_EQ(trainer->Train(*global, TrainPlan{}, idx).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TorchTrainerTest, ForeignModelState_IsInvalidArgument) {
  auto logreg = MakeTrainer("logreg");
  auto two_nn = MakeTrainer("2nn");
  auto foreign = two_nn->State();
  ASSERT_TRUE(foreign.ok());
  EXPECT_EQ(logreg->Train(*foreign, TrainPlan{}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(logreg->Evaluate(*foreign).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TorchTrainerTest, BadPlan_IsInvalidArgument) {
  auto trainer = MakeTrainer("logreg");
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  TrainPlan plan;
  plan.batch_size = 0;
  EXPECT_EQ(trainer->Train(*global, plan, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TorchTrainerTest, NoEvalSet_IsFailedPrecondition) {
  TorchTrainerOptions options;
  options.model.architecture = "logreg";
  options.train = &train_;
  auto trainer = TorchTrainer::Create(options);
  ASSERT_TRUE(trainer.ok());
  auto state = (*trainer)->State();
  ASSERT_TRUE(state.ok());
  EXPECT_EQ((*trainer)->Evaluate(*state).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(TorchTrainerTest, DatasetShapeMismatch_IsRefusedAtCreate) {
  TorchTrainerOptions options;
  options.model.architecture = "logreg";
  options.model.input_shape = {20};
  options.train = &train_;
  EXPECT_EQ(TorchTrainer::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A should_stop hook that answers true on every `every`-th call.
std::function<bool()> StopEvery(int every) {
  auto calls = std::make_shared<int>(0);
  return [calls, every] { return ++*calls % every == 0; };
}

void ExpectSameState(const ModelState& a, const ModelState& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(
        torch::equal(ViewAsTensor(a.tensor(i)), ViewAsTensor(b.tensor(i))))
        << a.tensor(i).name();
  }
}

TEST_F(TorchTrainerTest, InterruptedAndResumed_EqualsUninterrupted) {
  auto trainer = MakeTrainer("2nn");
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  std::vector<int64_t> idx(305);  // 31 batches per epoch, the last short.
  std::iota(idx.begin(), idx.end(), 100);
  TrainPlan plan;
  plan.epochs = 3;
  plan.momentum = 0.9;
  plan.seed = 23;
  auto whole = trainer->Train(*global, plan, idx);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_FALSE(whole->interrupted);

  // Stopped every 7 batches, each time resumed by a fresh trainer (as after
  // a restart), across epoch boundaries.
  plan.should_stop = StopEvery(8);
  std::optional<TrainContinuation> resume;
  int interruptions = 0;
  absl::StatusOr<TrainOutput> out;
  while (true) {
    auto fresh = MakeTrainer("2nn");
    plan.resume_from = resume.has_value() ? &*resume : nullptr;
    out = fresh->Train(*global, plan, idx);
    ASSERT_TRUE(out.ok()) << out.status();
    if (!out->interrupted) break;
    ++interruptions;
    EXPECT_EQ(out->delta.size(), 0u);
    EXPECT_EQ(out->continuation.progress.num_steps, 7 * interruptions);
    // 2NN has parameters only: one momentum buffer per tensor.
    EXPECT_EQ(out->continuation.momentum.size(), global->size());
    resume = std::move(out->continuation);
  }
  EXPECT_EQ(interruptions, 3 * 31 / 7);
  ExpectSameState(out->delta, whole->delta);
  EXPECT_EQ(out->metrics.num_steps, whole->metrics.num_steps);
  EXPECT_EQ(out->metrics.num_examples, whole->metrics.num_examples);
  EXPECT_DOUBLE_EQ(out->metrics.loss, whole->metrics.loss);
  EXPECT_DOUBLE_EQ(out->metrics.accuracy, whole->metrics.accuracy);
}

TEST_F(TorchTrainerTest, InterruptedBeforeTheFirstBatch_ResumesFromScratch) {
  auto trainer = MakeTrainer("logreg");
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  TrainPlan plan;
  plan.max_steps = 20;
  auto whole = trainer->Train(*global, plan, {});
  ASSERT_TRUE(whole.ok());
  plan.should_stop = [] { return true; };
  auto stopped = trainer->Train(*global, plan, {});
  ASSERT_TRUE(stopped.ok());
  ASSERT_TRUE(stopped->interrupted);
  EXPECT_EQ(stopped->continuation.progress.num_steps, 0);
  EXPECT_EQ(stopped->continuation.momentum.size(), 0u);
  ExpectSameState(stopped->continuation.weights, *global);
  plan.should_stop = nullptr;
  plan.resume_from = &stopped->continuation;
  auto resumed = trainer->Train(*global, plan, {});
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->metrics.num_steps, 20);
  ExpectSameState(resumed->delta, whole->delta);
}

TEST_F(TorchTrainerTest, ContinuationThatDoesNotFit_IsInvalidArgument) {
  auto trainer = MakeTrainer("logreg");
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  std::vector<int64_t> idx = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  TrainPlan plan;
  plan.batch_size = 4;
  plan.should_stop = StopEvery(2);
  auto stopped = trainer->Train(*global, plan, idx);
  ASSERT_TRUE(stopped.ok() && stopped->interrupted);
  plan.should_stop = nullptr;
  plan.resume_from = &stopped->continuation;
  std::vector<int64_t> other = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13};
  EXPECT_EQ(trainer->Train(*global, plan, other).status().code(),
            absl::StatusCode::kInvalidArgument);
  TrainContinuation beyond;
  beyond.weights = global->Clone();
  beyond.progress = stopped->continuation.progress;
  beyond.progress.epoch = 1;  // The plan has one epoch.
  plan.resume_from = &beyond;
  EXPECT_EQ(trainer->Train(*global, plan, idx).status().code(),
            absl::StatusCode::kInvalidArgument);
  beyond.progress.epoch = 0;
  beyond.weights = MakeTrainer("2nn")->State().value();
  EXPECT_EQ(trainer->Train(*global, plan, idx).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedge::ml
