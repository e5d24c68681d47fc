#include "common/ml/model_zoo.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/data/dataset.h"
#include "common/ml/model_cost.h"
#include "common/ml/model_init.h"
#include "common/ml/torch_converters.h"
#include "common/ml/torch_trainer.h"
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

ModelSpec Spec(const std::string& arch, std::vector<int64_t> shape,
               double width = 1.0, int64_t num_classes = 10) {
  ModelSpec spec;
  spec.architecture = arch;
  spec.input_shape = std::move(shape);
  spec.width_multiplier = width;
  spec.num_classes = num_classes;
  if (arch == "mlp") spec.hidden_units = {30, 20};
  return spec;
}

std::string Describe(const ModelSpec& s) {
  return absl::StrCat(s.architecture, " [", absl::StrJoin(s.input_shape, ","),
                      "] x", s.width_multiplier);
}

const char* const kLightweight[] = {"mobilenet_v2", "shufflenet_v2",
                                    "squeezenet"};

// Logits [3, num_classes] for a batch of 3 examples of `spec`'s input.
void ExpectLogits(const ModelSpec& spec) {
  auto net = BuildModel(spec);
  ASSERT_TRUE(net.ok()) << Describe(spec) << ": " << net.status();
  std::vector<int64_t> batch = {3};
  batch.insert(batch.end(), spec.input_shape.begin(), spec.input_shape.end());
  for (bool train : {true, false}) {
    (*net)->train(train);
    torch::Tensor y = (*net)->forward(torch::rand(batch));
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{3, spec.num_classes}))
        << Describe(spec);
  }
}

TEST(ModelZooTest, EveryModel_MapsImagesToLogits) {
  for (const std::string& arch : ZooNames()) {
    ExpectLogits(Spec(arch, {1, 28, 28}));
    ExpectLogits(Spec(arch, {3, 32, 32}, 1.0, 7));
  }
}

TEST(ModelZooTest, LightweightModels_TakeSmallImagesAndOtherWidths) {
  for (const std::string arch : kLightweight) {
    ExpectLogits(Spec(arch, {1, 8, 8}));
    ExpectLogits(Spec(arch, {2, 9, 13}, 0.5, 3));
    ExpectLogits(Spec(arch, {3, 32, 32}, 1.5));
    EXPECT_EQ(BuildModel(Spec(arch, {1, 7, 28})).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(ModelZooTest, ParameterCount_MatchesTorchFreeModelCost) {
  for (const std::string& arch : ZooNames()) {
    for (double width : {0.5, 1.0, 2.0}) {
      for (std::vector<int64_t> shape :
           {std::vector<int64_t>{1, 28, 28}, std::vector<int64_t>{3, 32, 32}}) {
        const ModelSpec spec = Spec(arch, shape, width);
        if (!CheckModelSpec(spec).ok()) continue;  // Width of a fixed model.
        auto net = BuildModel(spec);
        auto cost = ComputeModelCost(spec);
        ASSERT_TRUE(net.ok() && cost.ok()) << Describe(spec);
        EXPECT_EQ(CountParameters(**net), cost->parameters) << Describe(spec);
      }
    }
  }
}

TEST(ModelZooTest, LightweightModels_HaveUnderAMillionParameters) {
  EXPECT_EQ(Params("mobilenet_v2"), 231434);
  EXPECT_EQ(Params("shufflenet_v2"), 183082);
  EXPECT_EQ(Params("squeezenet"), 420202);
}

// `n` images of `shape` [C, H, W] in `classes` classes: class k is a
// sinusoidal grating of orientation pi * k / classes (random phase, unit
// amplitude) plus N(0, 0.5^2) noise, the same in every channel. Unlike
// MakeSynthetic's position-specific class means, its class is visible to
// networks that pool globally.
Dataset Gratings(int64_t n, const std::vector<int64_t>& shape, int classes) {
  Dataset d;
  d.example_shape = shape;
  d.num_classes = classes;
  torch::manual_seed(11);
  const torch::Tensor phase = torch::rand({n}) * 2 * M_PI;
  const torch::Tensor noise =
      torch::randn({n * shape[0] * shape[1] * shape[2]});
  const float* nz = noise.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    const int label = static_cast<int>(i % classes);
    const double angle = M_PI * label / classes;
    const double shift = phase[i].item<double>();
    for (int64_t c = 0; c < shape[0]; ++c) {
      for (int64_t y = 0; y < shape[1]; ++y) {
        for (int64_t x = 0; x < shape[2]; ++x) {
          const double t = (x * std::cos(angle) + y * std::sin(angle)) * 0.8;
          d.features.push_back(
              static_cast<float>(std::sin(t + shift) + 0.5 * *nz++));
        }
      }
    }
    d.labels.push_back(label);
  }
  return d;
}

// The training loss of `spec` over `steps` SGD steps (lr 0.01, momentum
// 0.9) on one batch of 20 gratings, from the torch-free initial weights
// (as a federation starts).
std::vector<float> FixedBatchLosses(const ModelSpec& spec, int steps) {
  const Dataset data = Gratings(20, spec.input_shape, spec.num_classes);
  auto net = BuildModel(spec);
  auto init = InitialModelState(spec);
  EXPECT_TRUE(net.ok() && init.ok()) << Describe(spec);
  EXPECT_TRUE(ImportState(*init, **net).ok());
  const torch::Tensor x = FeaturesView(data), y = LabelsView(data);
  torch::optim::SGD sgd((*net)->parameters(),
                        torch::optim::SGDOptions(0.01).momentum(0.9));
  (*net)->train();
  std::vector<float> losses;
  for (int step = 0; step < steps; ++step) {
    sgd.zero_grad();
    torch::Tensor loss = torch::cross_entropy_loss((*net)->forward(x), y);
    loss.backward();
    sgd.step();
    losses.push_back(loss.item<float>());
  }
  return losses;
}

TEST(ModelZooTest, LightweightModels_TrainAndTheLossFalls) {
  for (const std::string arch : kLightweight) {
    for (std::vector<int64_t> shape :
         {std::vector<int64_t>{1, 28, 28}, std::vector<int64_t>{3, 32, 32}}) {
      const ModelSpec spec = Spec(arch, shape);
      const std::vector<float> losses = FixedBatchLosses(spec, 20);
      ASSERT_EQ(losses.size(), 20u) << Describe(spec);
      EXPECT_LT(losses.back(), 0.5 * losses.front())
          << Describe(spec) << ": " << absl::StrJoin(losses, " ");
    }
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
