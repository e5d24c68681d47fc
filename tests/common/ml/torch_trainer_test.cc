#include "common/ml/torch_trainer.h"

#include <numeric>

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

}  // namespace
}  // namespace fedge::ml
