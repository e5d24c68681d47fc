#include "common/ml/model_spec.h"

#include <cmath>
#include <string>
#include <vector>

#include "common/fl_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

using ::testing::HasSubstr;

ModelSpec Spec(const std::string& arch,
               std::vector<int64_t> shape = {1, 28, 28}, double width = 1.0) {
  ModelSpec spec;
  spec.architecture = arch;
  spec.input_shape = std::move(shape);
  spec.width_multiplier = width;
  return spec;
}

std::string Error(const ModelSpec& spec) {
  return std::string(CheckModelSpec(spec).message());
}

TEST(ModelSpecTest, LightweightModels_AreInTheZoo) {
  EXPECT_THAT(ZooNames(),
              testing::IsSupersetOf({"mobilenet_v2", "shufflenet_v2",
                                     "squeezenet", "cnn", "2nn"}));
  for (const std::string arch :
       {"mobilenet_v2", "shufflenet_v2", "squeezenet"}) {
    EXPECT_TRUE(CheckModelSpec(Spec(arch)).ok()) << arch;
    EXPECT_TRUE(CheckModelSpec(Spec(arch, {3, 32, 32}, 0.25)).ok()) << arch;
    EXPECT_TRUE(CheckModelSpec(Spec(arch, {3, 8, 8}, 4)).ok()) << arch;
  }
}

TEST(ModelSpecTest, LightweightModels_NeedImagesOfAtLeast8x8) {
  EXPECT_THAT(Error(Spec("mobilenet_v2", {1, 7, 28})),
              HasSubstr("model 'mobilenet_v2' needs image input [C,H,W] with "
                        "H,W >= 8, got [1,7,28]"));
  EXPECT_THAT(Error(Spec("squeezenet", {784})), HasSubstr("got [784]"));
  EXPECT_THAT(Error(Spec("shufflenet_v2", {0, 28, 28})),
              HasSubstr("got [0,28,28]"));
  EXPECT_TRUE(CheckModelSpec(Spec("cnn", {1, 4, 4})).ok());
}

TEST(ModelSpecTest, WidthMultiplier_RangeAndArchitectures) {
  EXPECT_THAT(Error(Spec("mobilenet_v2", {1, 28, 28}, 0)),
              HasSubstr("width_multiplier must be in (0, 4], got 0"));
  EXPECT_THAT(Error(Spec("squeezenet", {1, 28, 28}, 4.5)),
              HasSubstr("got 4.5"));
  EXPECT_THAT(Error(Spec("squeezenet", {1, 28, 28}, std::nan(""))),
              HasSubstr("width_multiplier must be in (0, 4]"));
  EXPECT_THAT(Error(Spec("cnn", {1, 28, 28}, 0.5)),
              HasSubstr("width_multiplier applies to mobilenet_v2, "
                        "shufflenet_v2 and squeezenet only; got 0.5 for "
                        "'cnn'"));
}

TEST(ModelSpecTest, ScaledChannels_RoundLikeMobileNet) {
  EXPECT_EQ(ScaledChannels(32, 1.0), 32);
  EXPECT_EQ(ScaledChannels(32, 0.5), 16);
  EXPECT_EQ(ScaledChannels(24, 0.5), 16);  // 12 -> 16 (nearest multiple of 8)
  EXPECT_EQ(ScaledChannels(16, 0.25), 8);  // at least 8
  EXPECT_EQ(ScaledChannels(96, 1.5), 144);
  EXPECT_EQ(ScaledChannels(20, 1.0), 24);
  EXPECT_EQ(ScaledChannels(22, 0.5), 16);  // 11 -> 8 is > 10% below: 16
}

TEST(ModelSpecTest, Layouts_FollowTheWidth) {
  const MobileNetV2Layout m = MobileNetV2LayoutOf(Spec("mobilenet_v2"));
  EXPECT_EQ(m.stem, 32);
  ASSERT_EQ(m.blocks.size(), 9u);
  EXPECT_EQ(m.blocks[0].expansion, 1);
  EXPECT_EQ(m.blocks[1].in, 16);
  EXPECT_EQ(m.blocks[1].out, 24);
  EXPECT_EQ(m.blocks[1].stride, 2);
  EXPECT_EQ(m.head, 320);
  const MobileNetV2Layout half =
      MobileNetV2LayoutOf(Spec("mobilenet_v2", {1, 28, 28}, 0.5));
  EXPECT_EQ(half.stem, 16);
  EXPECT_EQ(half.blocks.back().out, 48);
  const ShuffleNetV2Layout s = ShuffleNetV2LayoutOf(Spec("shufflenet_v2"));
  ASSERT_EQ(s.units.size(), 8u);
  for (const ShuffleUnit& u : s.units) {
    EXPECT_EQ(u.out % 2, 0);
    if (u.stride == 1) {
      EXPECT_EQ(u.in, u.out);
    }
  }
  const SqueezeNetLayout q = SqueezeNetLayoutOf(Spec("squeezenet"));
  ASSERT_EQ(q.fires.size(), 6u);
  EXPECT_EQ(q.fires[1].in, 2 * q.fires[0].expand);
  EXPECT_EQ(2 * q.fires.back().expand, 512);
}

TEST(ModelSpecTest, WidthMultiplier_TravelsInConfigAndProto) {
  v1::ModelConfig config;
  config.set_architecture("shufflenet_v2");
  EXPECT_EQ(SpecFromConfig(config).width_multiplier, 1.0);
  config.set_width_multiplier(0.75);
  const ModelSpec spec = SpecFromConfig(config);
  EXPECT_EQ(spec.width_multiplier, 0.75);
  const v1::ModelSpecProto proto = SpecToProto(spec);
  EXPECT_EQ(proto.width_multiplier(), 0.75);
  EXPECT_EQ(SpecFromProto(proto).width_multiplier, 0.75);
  // An older peer does not send the field: width 1.
  v1::ModelSpecProto old = proto;
  old.clear_width_multiplier();
  EXPECT_EQ(SpecFromProto(old).width_multiplier, 1.0);
}

TEST(ModelSpecTest, ConfigValidation_KnowsTheLightweightModels) {
  v1::ModelConfig config;
  for (const std::string arch :
       {"mobilenet_v2", "shufflenet_v2", "squeezenet"}) {
    config.set_architecture(arch);
    EXPECT_TRUE(ValidateModelConfig(config, "model.").ok()) << arch;
  }
  config.set_width_multiplier(0);
  EXPECT_THAT(std::string(ValidateModelConfig(config, "model.").message()),
              HasSubstr("'model.width_multiplier' must be in (0, 4], got 0"));
}

}  // namespace
}  // namespace fedge::ml
