#include "common/ml/model_init.h"

#include <cmath>

#include "common/ml/model_zoo.h"
#include "common/ml/torch_converters.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

ModelSpec Spec(const std::string& arch) {
  ModelSpec spec;
  spec.architecture = arch;
  if (arch == "mlp") spec.hidden_units = {30, 20};
  return spec;
}

TEST(ModelInitTest, Schema_MatchesLibTorchExportForEveryArchitecture) {
  for (const std::string& arch : ZooNames()) {
    auto init = InitialModelState(Spec(arch));
    ASSERT_TRUE(init.ok()) << arch << ": " << init.status();
    auto net = BuildModel(Spec(arch));
    ASSERT_TRUE(net.ok());
    auto exported = ExportState(**net);
    ASSERT_TRUE(exported.ok());
    EXPECT_TRUE(CheckSameSchema(*exported, *init).ok())
        << arch << ": " << CheckSameSchema(*exported, *init);
    // And LibTorch accepts it.
    EXPECT_TRUE(ImportState(*init, **net).ok()) << arch;
  }
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
