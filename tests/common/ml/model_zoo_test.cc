#include "common/ml/model_zoo.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

int64_t Params(const std::string& arch, std::vector<int64_t> hidden = {}) {
  ModelSpec spec;
  spec.architecture = arch;
  spec.hidden_units = std::move(hidden);
  auto net = BuildModel(spec);
  EXPECT_TRUE(net.ok()) << net.status();
  return net.ok() ? CountParameters(**net) : -1;
}

TEST(ModelZooTest, TwoNn_HasPaperParameterCount) {
  EXPECT_EQ(Params("2nn"), 199210);
}

TEST(ModelZooTest, Cnn_HasPaperParameterCount) {
  EXPECT_EQ(Params("cnn"), 1663370);
}

TEST(ModelZooTest, LogReg_HasLinearParameterCount) {
  EXPECT_EQ(Params("logreg"), 784 * 10 + 10);
}

TEST(ModelZooTest, Mlp_FollowsHiddenUnits) {
  EXPECT_EQ(Params("mlp", {2800, 2800}),
            784 * 2800 + 2800 + 2800 * 2800 + 2800 + 2800 * 10 + 10);
}

TEST(ModelZooTest, MobileCnn_IsSmallDepthwiseSeparable) {
  // stem 3x3x1x16; per block depthwise 3x3xC + pointwise CxC'; BN gamma and
  // beta per channel; fc 128x10 + 10.
  const int64_t convs =
      9 * 16 + (9 * 16 + 16 * 32) + (9 * 32 + 32 * 64) + (9 * 64 + 64 * 128);
  const int64_t bns = 2 * (16 + 16 + 32 + 32 + 64 + 64 + 128);
  EXPECT_EQ(Params("mobile_cnn"), convs + bns + 128 * 10 + 10);
}

TEST(ModelZooTest, EveryModel_MapsImagesToLogits) {
  for (const std::string& arch : {"logreg", "2nn", "cnn", "mobile_cnn"}) {
    ModelSpec spec;
    spec.architecture = arch;
    auto net = BuildModel(spec);
    ASSERT_TRUE(net.ok()) << arch << ": " << net.status();
    torch::Tensor y = (*net)->forward(torch::rand({3, 1, 28, 28}));
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{3, 10})) << arch;
  }
}

TEST(ModelZooTest, SameSeed_SameWeights) {
  ModelSpec spec;
  auto a = BuildModel(spec), b = BuildModel(spec);
  spec.init_seed = 2;
  auto c = BuildModel(spec);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(torch::equal((*a)->parameters()[0], (*b)->parameters()[0]));
  EXPECT_FALSE(torch::equal((*a)->parameters()[0], (*c)->parameters()[0]));
}

TEST(ModelZooTest, UnknownArchitecture_ListsKnownOnes) {
  ModelSpec spec;
  spec.architecture = "resnet9000";
  auto net = BuildModel(spec);
  EXPECT_EQ(net.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(net.status().message()), testing::HasSubstr("2nn"));
}

TEST(ModelZooTest, CnnOnFlatInput_IsRefused) {
  ModelSpec spec;
  spec.architecture = "cnn";
  spec.input_shape = {20};
  EXPECT_EQ(BuildModel(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ModelZooTest, MlpWithoutHiddenUnits_IsRefused) {
  ModelSpec spec;
  spec.architecture = "mlp";
  EXPECT_EQ(BuildModel(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedge::ml
