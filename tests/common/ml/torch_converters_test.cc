#include "common/ml/torch_converters.h"

#include "common/ml/model_zoo.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

TEST(TorchConvertersTest, TensorRoundTrip_KeepsValuesAndShape) {
  torch::Tensor t = torch::randn({3, 4});
  auto b = ToTensorBuffer("w", t);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->shape(), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(b->dtype(), DType::kFloat32);
  EXPECT_TRUE(torch::equal(ViewAsTensor(*b), t));
}

TEST(TorchConvertersTest, NonContiguousTensor_IsCopiedInLogicalOrder) {
  torch::Tensor t = torch::arange(6, torch::kFloat32).reshape({2, 3}).t();
  auto b = ToTensorBuffer("t", t);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->floats()[1], 3.0f);
}

TEST(TorchConvertersTest, Int64Tensor_IsSupported) {
  auto b = ToTensorBuffer("n", torch::tensor({7}, torch::kInt64));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->int64s()[0], 7);
}

TEST(TorchConvertersTest, OtherDtype_IsRefused) {
  auto b = ToTensorBuffer("h", torch::zeros({2}, torch::kFloat64));
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TorchConvertersTest, ExportImport_MovesWeightsBetweenModels) {
  ModelSpec spec;
  spec.architecture = "mobile_cnn";  // Has BatchNorm buffers too.
  auto a = BuildModel(spec);
  spec.init_seed = 99;
  auto b = BuildModel(spec);
  ASSERT_TRUE(a.ok() && b.ok());
  auto state = ExportState(**a);
  ASSERT_TRUE(state.ok());
  EXPECT_GT(state->size(), (*a)->parameters().size());  // buffers included
  ASSERT_TRUE(ImportState(*state, **b).ok());
  auto pa = StateTensors(**a), pb = StateTensors(**b);
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].first, pb[i].first);
    EXPECT_TRUE(torch::equal(pa[i].second, pb[i].second)) << pa[i].first;
  }
}

TEST(TorchConvertersTest, ImportOfWrongSchema_LeavesModelUnchanged) {
  ModelSpec two_nn;
  ModelSpec logreg;
  logreg.architecture = "logreg";
  auto a = BuildModel(two_nn), b = BuildModel(logreg);
  ASSERT_TRUE(a.ok() && b.ok());
  auto state = ExportState(**b);
  ASSERT_TRUE(state.ok());
  torch::Tensor before = (*a)->parameters()[0].clone();
  EXPECT_EQ(ImportState(*state, **a).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(torch::equal(before, (*a)->parameters()[0]));
}

}  // namespace
}  // namespace fedge::ml
