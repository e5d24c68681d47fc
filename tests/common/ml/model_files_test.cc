#include "common/ml/model_files.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/ml/model_init.h"
#include "common/model_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class ModelFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/fedge_model_files.", getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST(DefaultSpecPathTest, ReplacesTheModelSuffix) {
  EXPECT_EQ(DefaultSpecPath("s/final_model.fedge"), "s/final_model.spec");
  EXPECT_EQ(DefaultSpecPath("m.bin"), "m.bin.spec");
}

TEST_F(ModelFilesTest, SpecRoundTripsAsTextproto) {
  ModelSpec spec;
  spec.architecture = "mlp";
  spec.hidden_units = {30, 20};
  spec.input_shape = {1, 28, 28};
  spec.num_classes = 10;
  ASSERT_TRUE(WriteSpecFile(dir_ + "/m.spec", spec).ok());
  auto text = ReadSmallFile(dir_ + "/m.spec", 1 << 16);
  ASSERT_TRUE(text.ok());
  EXPECT_THAT(*text, HasSubstr("architecture: \"mlp\""));
  auto back = ReadSpecFile(dir_ + "/m.spec");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->architecture, "mlp");
  EXPECT_THAT(back->hidden_units, ElementsAre(30, 20));
  EXPECT_THAT(back->input_shape, ElementsAre(1, 28, 28));
}

TEST_F(ModelFilesTest, WriteModelWithSpec_SpecBesideTheModel) {
  ModelSpec spec;
  spec.architecture = "logreg";
  spec.input_shape = {1, 28, 28};
  spec.num_classes = 10;
  ModelState state;
  state.Add(*TensorBuffer::FromFloats("w", {2}, {1.5f, -2.0f}));
  ASSERT_TRUE(WriteModelWithSpec(dir_ + "/out.fedge", state, spec).ok());
  auto model = ReadModelFile(dir_ + "/out.fedge");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_THAT(model->tensor(0).floats(), ElementsAre(1.5f, -2.0f));
  auto back = ReadSpecFile(dir_ + "/out.spec");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->architecture, "logreg");
  EXPECT_EQ(back->num_classes, 10);
}

TEST_F(ModelFilesTest, SpecErrorsNameTheFileAndTheFix) {
  auto missing = ReadSpecFile(dir_ + "/none.spec");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("--spec"));

  std::ofstream(dir_ + "/no_shape.spec") << "architecture: \"2nn\"\n"
                                            "num_classes: 10\n";
  auto no_shape = ReadSpecFile(dir_ + "/no_shape.spec");
  EXPECT_EQ(no_shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_shape.status().message(), HasSubstr("no_shape.spec"));
  EXPECT_THAT(no_shape.status().message(), HasSubstr("input_shape: [1, 28"));

  std::ofstream(dir_ + "/bad.spec") << "architecture: \"resnet\"\n"
                                       "input_shape: [1, 28, 28]\n"
                                       "num_classes: 10\n";
  auto bad = ReadSpecFile(dir_ + "/bad.spec");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("resnet"));
}

TEST_F(ModelFilesTest, ModelRoundTripsAndCorruptFilesAreNamed) {
  ModelSpec spec;
  auto state = InitialModelState(spec);
  ASSERT_TRUE(state.ok());
  ASSERT_TRUE(WriteModelFile(dir_ + "/m.fedge", *state).ok());
  auto back = ReadModelFile(dir_ + "/m.fedge");
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(CheckSameSchema(*state, *back).ok());

  std::ofstream(dir_ + "/junk.fedge") << "FEDGEMS1junk";
  auto junk = ReadModelFile(dir_ + "/junk.fedge");
  EXPECT_FALSE(junk.ok());
  EXPECT_THAT(std::string(junk.status().message()),
              StartsWith("model file " + dir_));
}

TEST_F(ModelFilesTest, InitialWeights_FromTheFileWhenItFits) {
  ModelSpec spec;  // 2nn
  auto initial = InitialModelState(spec);
  ASSERT_TRUE(initial.ok());
  // No path: the architecture's own weights.
  auto same = InitialWeights("", initial->Clone());
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(ModelDigest(*same), ModelDigest(*initial));
  // A file of the same architecture (e.g. pruned): its weights.
  ModelState pruned = initial->Clone();
  for (float& v : pruned.mutable_tensor(0).mutable_floats()) v = 0;
  ASSERT_TRUE(WriteModelFile(dir_ + "/pruned.fedge", pruned).ok());
  auto loaded = InitialWeights(dir_ + "/pruned.fedge", initial->Clone());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(ModelDigest(*loaded), ModelDigest(pruned));
  // Another architecture's file, or none: errors naming the field.
  ModelSpec other;
  other.architecture = "logreg";
  ASSERT_TRUE(
      WriteModelFile(dir_ + "/logreg.fedge", *InitialModelState(other)).ok());
  auto wrong = InitialWeights(dir_ + "/logreg.fedge", initial->Clone());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(),
              HasSubstr("model.initial_weights_path: " + dir_ +
                        "/logreg.fedge does not hold this model's tensors"));
  auto missing = InitialWeights(dir_ + "/none.fedge", initial->Clone());
  EXPECT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(),
              HasSubstr("model.initial_weights_path"));
}

TEST_F(ModelFilesTest, NpyHasNumpysHeaderAndTheValues) {
  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  ASSERT_TRUE(WriteNpy(dir_ + "/a.npy", {2, 3}, values).ok());
  auto bytes = ReadSmallFile(dir_ + "/a.npy", 1 << 16);
  ASSERT_TRUE(bytes.ok());
  const size_t data_start = bytes->size() - values.size() * 4;
  EXPECT_EQ(data_start % 64, 0u);  // The header is padded to 64 bytes.
  EXPECT_EQ(bytes->substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(static_cast<uint8_t>((*bytes)[8]) + 256 * (*bytes)[9],
            static_cast<int>(data_start) - 10);
  EXPECT_THAT(bytes->substr(10, data_start - 10),
              HasSubstr("{'descr': '<f4', 'fortran_order': False, "
                        "'shape': (2, 3), }"));
  EXPECT_EQ((*bytes)[data_start - 1], '\n');
  EXPECT_EQ(std::memcmp(bytes->data() + data_start, values.data(), 24), 0);

  EXPECT_EQ(WriteNpy(dir_ + "/b.npy", {4}, values).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedge::ml
