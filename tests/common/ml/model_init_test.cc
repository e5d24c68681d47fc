#include "common/ml/model_init.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ml/model_zoo.h"
#include "common/ml/torch_converters.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

ModelSpec Spec(const std::string& arch) {
  ModelSpec spec;
  spec.architecture = arch;
  if (arch == "mlp") spec.hidden_units = {30, 20};
  return spec;
}

void ExpectSameSchemaAsLibTorch(const ModelSpec& spec) {
  const std::string what = absl::StrCat(spec.architecture, " [",
                                        absl::StrJoin(spec.input_shape, ","),
                                        "] x", spec.width_multiplier);
  auto init = InitialModelState(spec);
  ASSERT_TRUE(init.ok()) << what << ": " << init.status();
  auto net = BuildModel(spec);
  ASSERT_TRUE(net.ok()) << what << ": " << net.status();
  auto exported = ExportState(**net);
  ASSERT_TRUE(exported.ok());
  EXPECT_TRUE(CheckSameSchema(*exported, *init).ok())
      << what << ": " << CheckSameSchema(*exported, *init);
  // Same names in the same order (CheckSameSchema also checks dtypes and
  // shapes).
  ASSERT_EQ(exported->size(), init->size()) << what;
  for (size_t i = 0; i < init->size(); ++i) {
    EXPECT_EQ(exported->tensor(i).name(), init->tensor(i).name()) << what;
  }
  // And LibTorch accepts it.
  EXPECT_TRUE(ImportState(*init, **net).ok()) << what;
}

TEST(ModelInitTest, Schema_MatchesLibTorchExportForEveryArchitecture) {
  for (const std::string& arch : ZooNames()) {
    ExpectSameSchemaAsLibTorch(Spec(arch));
    ModelSpec cifar = Spec(arch);
    cifar.input_shape = {3, 32, 32};
    cifar.num_classes = 7;
    ExpectSameSchemaAsLibTorch(cifar);
  }
}

TEST(ModelInitTest, Schema_MatchesLibTorchAtOtherWidthsAndSizes) {
  for (const std::string arch :
       {"mobilenet_v2", "shufflenet_v2", "squeezenet"}) {
    for (double width : {0.25, 0.5, 1.5, 2.0}) {
      ModelSpec spec = Spec(arch);
      spec.width_multiplier = width;
      spec.input_shape = {2, 8, 11};
      ExpectSameSchemaAsLibTorch(spec);
    }
  }
}

TEST(ModelInitTest, BatchNorm_InLightweightModels) {
  auto mobilenet = InitialModelState(Spec("mobilenet_v2"));
  auto shufflenet = InitialModelState(Spec("shufflenet_v2"));
  auto squeezenet = InitialModelState(Spec("squeezenet"));
  ASSERT_TRUE(mobilenet.ok() && shufflenet.ok() && squeezenet.ok());
  EXPECT_NE(mobilenet->Find("block2.expand_bn.running_var"), nullptr);
  EXPECT_EQ(mobilenet->Find("block1.expand.weight"), nullptr);  // t = 1
  EXPECT_NE(shufflenet->Find("unit1.branch1_dw_bn.weight"), nullptr);
  EXPECT_EQ(shufflenet->Find("unit2.branch1_dw.weight"), nullptr);  // stride 1
  EXPECT_NE(squeezenet->Find("fire1.expand3x3_bn.running_mean"), nullptr);
  EXPECT_EQ(squeezenet->Find("fire1.expand3x3.bias"), nullptr);
  EXPECT_NE(squeezenet->Find("classifier.bias"), nullptr);
}

TEST(ModelInitTest, Values_FollowPyTorchDefaultBounds) {
  auto init = InitialModelState(Spec("2nn"));
  ASSERT_TRUE(init.ok());
  const TensorBuffer& w = init->tensor(0);  // fc1.weight [200, 784]
  ASSERT_EQ(w.name(), "fc1.weight");
  const double bound = 1.0 / std::sqrt(784.0);
  double sum_sq = 0;
  for (float v : w.floats()) {
    ASSERT_LE(std::fabs(v), bound);
    sum_sq += v * v;
  }
  // Uniform(-b, b) has variance b^2 / 3.
  EXPECT_NEAR(sum_sq / w.num_elements(), bound * bound / 3,
              0.05 * bound * bound);
}

TEST(ModelInitTest, BatchNorm_StartsAsIdentity) {
  auto init = InitialModelState(Spec("mobile_cnn"));
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(init->Find("stem_bn.weight")->floats()[0], 1.0f);
  EXPECT_EQ(init->Find("stem_bn.running_var")->floats()[0], 1.0f);
  EXPECT_EQ(init->Find("stem_bn.num_batches_tracked")->int64s()[0], 0);
}

TEST(ModelInitTest, Seed_DeterminesWeights) {
  ModelSpec a = Spec("logreg"), b = Spec("logreg"), c = Spec("logreg");
  c.init_seed = 2;
  auto ia = InitialModelState(a), ib = InitialModelState(b),
       ic = InitialModelState(c);
  ASSERT_TRUE(ia.ok() && ib.ok() && ic.ok());
  EXPECT_EQ(ia->tensor(0).floats()[5], ib->tensor(0).floats()[5]);
  EXPECT_NE(ia->tensor(0).floats()[5], ic->tensor(0).floats()[5]);
}

TEST(ModelInitTest, BadSpec_IsInvalidArgument) {
  EXPECT_EQ(InitialModelState(Spec("transformer")).status().code(),
            absl::StatusCode::kInvalidArgument);
  ModelSpec cnn = Spec("cnn");
  cnn.input_shape = {10};
  EXPECT_EQ(InitialModelState(cnn).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedge::ml
