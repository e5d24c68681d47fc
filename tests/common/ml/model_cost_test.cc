#include "common/ml/model_cost.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ml/model_init.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

ModelSpec Spec(const std::string& arch,
               std::vector<int64_t> shape = {1, 28, 28}, double width = 1.0) {
  ModelSpec spec;
  spec.architecture = arch;
  spec.input_shape = std::move(shape);
  spec.width_multiplier = width;
  if (arch == "mlp") spec.hidden_units = {30, 20};
  return spec;
}

bool HasWidth(const std::string& arch) {
  return arch == "mobilenet_v2" || arch == "shufflenet_v2" ||
         arch == "squeezenet";
}

// Every zoo network on both reference input sizes, the width-scaled ones
// also at widths 0.5 and 2.
std::vector<ModelSpec> AllSpecs() {
  std::vector<ModelSpec> specs;
  for (const std::string& arch : ZooNames()) {
    for (std::vector<int64_t> shape :
         {std::vector<int64_t>{1, 28, 28}, std::vector<int64_t>{3, 32, 32}}) {
      for (double width : {0.5, 1.0, 2.0}) {
        if (width != 1.0 && !HasWidth(arch)) continue;
        specs.push_back(Spec(arch, shape, width));
      }
    }
  }
  return specs;
}

std::string Describe(const ModelSpec& s) {
  return absl::StrCat(s.architecture, " [", absl::StrJoin(s.input_shape, ","),
                      "] x", s.width_multiplier);
}

ModelCost Cost(const ModelSpec& spec) {
  auto cost = ComputeModelCost(spec);
  EXPECT_TRUE(cost.ok()) << Describe(spec) << ": " << cost.status();
  return cost.ok() ? *cost : ModelCost{-1, -1};
}

TEST(ModelCostTest, TwoNn_PaperParametersAndMacs) {
  const ModelCost cost = Cost(Spec("2nn"));
  EXPECT_EQ(cost.parameters, 199210);
  EXPECT_EQ(cost.macs, 784 * 200 + 200 * 200 + 200 * 10);  // 198,800
}

TEST(ModelCostTest, FedAvgCnn_ByHand) {
  const ModelCost cost = Cost(Spec("cnn"));
  EXPECT_EQ(cost.parameters, 1663370);
  // conv1 5x5x1 -> 32 at 28x28; pool; conv2 5x5x32 -> 64 at 14x14; pool;
  // fc 7*7*64 -> 512; fc 512 -> 10.
  EXPECT_EQ(cost.macs, 32 * 28 * 28 * 1 * 25 + 64 * 14 * 14 * 32 * 25 +
                           7 * 7 * 64 * 512 + 512 * 10);  // 12,273,152
  // 3x32x32: conv1 sees 3 channels, fc1 8*8*64 inputs.
  EXPECT_EQ(Cost(Spec("cnn", {3, 32, 32})).macs,
            32 * 32 * 32 * 3 * 25 + 64 * 16 * 16 * 32 * 25 + 8 * 8 * 64 * 512 +
                512 * 10);
}

TEST(ModelCostTest, MobileCnn_ByHand) {
  // Stem 3x3/2 -> 14x14, dw1 14x14, dw2/2 -> 7x7, dw3/2 -> 4x4.
  EXPECT_EQ(Cost(Spec("mobile_cnn")).macs,
            16 * 14 * 14 * 9 + (16 * 14 * 14 * 9 + 32 * 14 * 14 * 16) +
                (32 * 7 * 7 * 9 + 64 * 7 * 7 * 32) +
                (64 * 4 * 4 * 9 + 128 * 4 * 4 * 64) + 128 * 10);
}

TEST(ModelCostTest, LogRegAndMlp_AreTheirLinearLayers) {
  EXPECT_EQ(Cost(Spec("logreg")).macs, 7840);
  EXPECT_EQ(Cost(Spec("logreg")).parameters, 7850);
  EXPECT_EQ(Cost(Spec("mlp")).macs, 784 * 30 + 30 * 20 + 20 * 10);
}

TEST(ModelCostTest, Parameters_EqualInitialStateParameterElements) {
  for (const ModelSpec& spec : AllSpecs()) {
    auto state = InitialModelState(spec);
    ASSERT_TRUE(state.ok()) << Describe(spec) << ": " << state.status();
    int64_t elements = 0;
    for (size_t i = 0; i < state->size(); ++i) {
      const TensorBuffer& t = state->tensor(i);
      if (t.dtype() != DType::kFloat32 ||
          absl::EndsWith(t.name(), ".running_mean") ||
          absl::EndsWith(t.name(), ".running_var")) {
        continue;
      }
      elements += t.num_elements();
    }
    EXPECT_EQ(Cost(spec).parameters, elements) << Describe(spec);
  }
}

TEST(ModelCostTest, LightweightModels_DocumentedSizes) {
  struct Case {
    std::string arch;
    int64_t params_28, macs_28, params_32, macs_32;
  };
  // The figures quoted in common/ml/model_zoo.h.
  for (const Case& c : std::vector<Case>{
           {"mobilenet_v2", 231434, 9527248, 232010, 12237952},
           {"shufflenet_v2", 183082, 5320976, 183514, 6715904},
           {"squeezenet", 420202, 14451712, 421354, 18595840},
       }) {
    const ModelCost mnist = Cost(Spec(c.arch));
    const ModelCost cifar = Cost(Spec(c.arch, {3, 32, 32}));
    EXPECT_EQ(mnist.parameters, c.params_28) << c.arch;
    EXPECT_EQ(mnist.macs, c.macs_28) << c.arch;
    EXPECT_EQ(cifar.parameters, c.params_32) << c.arch;
    EXPECT_EQ(cifar.macs, c.macs_32) << c.arch;
    EXPECT_LT(mnist.parameters, 1'000'000) << c.arch;
  }
}

TEST(ModelCostTest, WidthMultiplier_ScalesCost) {
  for (const std::string arch :
       {"mobilenet_v2", "shufflenet_v2", "squeezenet"}) {
    const ModelCost half = Cost(Spec(arch, {3, 32, 32}, 0.5));
    const ModelCost one = Cost(Spec(arch, {3, 32, 32}, 1.0));
    const ModelCost two = Cost(Spec(arch, {3, 32, 32}, 2.0));
    EXPECT_LT(half.parameters, one.parameters) << arch;
    EXPECT_LT(one.parameters, two.parameters) << arch;
    // Parameters and MACs grow roughly with the square of the width.
    EXPECT_GT(two.parameters, 3 * one.parameters) << arch;
    EXPECT_GT(two.macs, 3 * one.macs) << arch;
    EXPECT_LT(half.macs, one.macs / 2) << arch;
  }
}

TEST(ModelCostTest, Layers_TrackSpatialSizes) {
  auto layers = ModelLayers(Spec("mobilenet_v2", {3, 32, 32}));
  ASSERT_TRUE(layers.ok()) << layers.status();
  std::vector<std::string> sizes;
  for (const ModelLayer& l : *layers) {
    if (absl::EndsWith(l.name, ".dw") || l.name == "stem" || l.name == "head") {
      sizes.push_back(absl::StrCat(l.name, ":", l.out_height, "x", l.out_width,
                                   "/", l.stride));
    }
  }
  EXPECT_THAT(sizes,
              testing::ElementsAre(
                  "stem:32x32/1", "block1.dw:32x32/1", "block2.dw:16x16/2",
                  "block3.dw:16x16/1", "block4.dw:8x8/2", "block5.dw:8x8/1",
                  "block6.dw:8x8/1", "block7.dw:4x4/2", "block8.dw:4x4/1",
                  "block9.dw:4x4/1", "head:4x4/1"));
  // 28x28 halves to 14, 7 and 4 (padding 1 rounds up).
  auto mnist = ModelLayers(Spec("shufflenet_v2", {1, 28, 28}));
  ASSERT_TRUE(mnist.ok());
  EXPECT_EQ(mnist->back().name, "fc");
  const ModelLayer& head = (*mnist)[mnist->size() - 3];
  EXPECT_EQ(head.name, "head");
  EXPECT_EQ(head.out_height, 4);
  EXPECT_EQ(head.macs(), 512 * 4 * 4 * 192);
  // SqueezeNet: stem at 28x28, then pools to 14, 7 and 4.
  auto squeeze = ModelLayers(Spec("squeezenet"));
  ASSERT_TRUE(squeeze.ok());
  EXPECT_EQ((*squeeze)[0].macs(), 64 * 28 * 28 * 9);
  EXPECT_EQ((*squeeze)[2].name, "fire1.squeeze");
  EXPECT_EQ((*squeeze)[2].macs(), 16 * 14 * 14 * 64);
  EXPECT_EQ(squeeze->back().name, "classifier");
  EXPECT_EQ(squeeze->back().macs(), 10 * 4 * 4 * 512);
}

TEST(ModelCostTest, BadSpec_IsInvalidArgument) {
  EXPECT_EQ(ComputeModelCost(Spec("transformer")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ComputeModelCost(Spec("squeezenet", {1, 7, 7})).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Found by config_fuzz: the input's element count overflowed int64.
TEST(ModelCostTest, SizesBeyondInt64_InvalidArgumentNotOverflow) {
  const std::vector<ModelSpec> too_large = {
      Spec("logreg", {int64_t{1} << 40, int64_t{1} << 40}),
      Spec("logreg", {1, 0, 28}), Spec("logreg", {-1, 28, 28}),
      Spec("logreg", {1, 65536, 65537}),  // Just over kMaxInputElements.
  };
  for (const ModelSpec& spec : too_large) {
    EXPECT_EQ(CheckModelSpec(spec).code(), absl::StatusCode::kInvalidArgument)
        << absl::StrJoin(spec.input_shape, ",");
    EXPECT_EQ(ComputeModelCost(spec).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  ModelSpec wide = Spec("mlp");
  wide.hidden_units = {int64_t{1} << 31};
  EXPECT_EQ(CheckModelSpec(wide).code(), absl::StatusCode::kInvalidArgument);
  wide.hidden_units = {0};
  EXPECT_EQ(CheckModelSpec(wide).code(), absl::StatusCode::kInvalidArgument);
  // Every layer fits, the total does not: 2^30 x (2^31 - 1), 8 times.
  ModelSpec deep = Spec("mlp", {1 << 30});
  deep.hidden_units.assign(8, (int64_t{1} << 31) - 1);
  EXPECT_THAT(std::string(CheckModelSpec(deep).message()),
              testing::HasSubstr("overflows 64 bits"));
  // A squeezenet classifier on a 2^32-pixel image with 2^31 - 1 classes.
  ModelSpec classes = Spec("squeezenet", {1, 1 << 16, 1 << 16});
  classes.num_classes = (int64_t{1} << 31) - 1;
  EXPECT_EQ(CheckModelSpec(classes).code(), absl::StatusCode::kInvalidArgument);
  // The largest input still counts.
  absl::StatusOr<ModelCost> largest =
      ComputeModelCost(Spec("logreg", {1, 65536, 65536}));
  ASSERT_TRUE(largest.ok()) << largest.status();
  EXPECT_EQ(largest->parameters, (int64_t{1} << 32) * 10 + 10);
}

}  // namespace
}  // namespace fedge::ml
