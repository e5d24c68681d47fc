// Fine-tuning with a pruning mask, distillation, evaluation of networks and
// TorchScript modules, and int8 quantization (through
// scripts/quantize_int8.py with /usr/bin/python3), on the synthetic set.
#include "common/ml/compress.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/ml/export.h"
#include "common/ml/prune.h"
#include "common/ml/torch_converters.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

using ::testing::HasSubstr;

ModelSpec TorchScriptSpec() {
  ModelSpec spec;
  spec.architecture = "torchscript";
  return spec;
}

class CompressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SyntheticOptions options;
    options.num_examples = 1600;
    options.seed = 5;
    auto split = MakeSyntheticSplit(options, 400);
    ASSERT_TRUE(split.ok()) << split.status();
    train_ = std::move(split->first);
    test_ = std::move(split->second);
    dir_ = absl::StrCat(::testing::TempDir(), "/fedge_compress.", getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::shared_ptr<Net> Build(const std::string& arch) {
    ModelSpec spec;
    spec.architecture = arch;
    auto net = BuildModel(spec);
    EXPECT_TRUE(net.ok()) << net.status();
    return *net;
  }
  // `net` trained for `epochs` on the training set (nothing masked).
  void Train(Net& net, int epochs) {
    auto state = ExportState(net);
    ASSERT_TRUE(state.ok());
    auto mask = PruningMask(TorchScriptSpec(), *state);
    ASSERT_TRUE(mask.ok());
    SgdOptions sgd;
    sgd.epochs = epochs;
    ASSERT_TRUE(FinetuneMasked(net, train_, sgd, *mask).ok());
  }
  double Accuracy(Net& net) {
    auto a = EvaluateAccuracy(net, test_);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.value_or(-1);
  }

  Dataset train_, test_;
  std::string dir_;
};

TEST_F(CompressTest, FinetuneKeepsPrunedWeightsAtZeroAndLearns) {
  ModelSpec spec;
  spec.architecture = "2nn";
  std::shared_ptr<Net> net = Build("2nn");
  auto state = ExportState(*net);
  ASSERT_TRUE(state.ok());
  auto pruned = Prune(spec, *state, {0.8, false});
  ASSERT_TRUE(pruned.ok());
  ASSERT_TRUE(ImportState(pruned->state, *net).ok());
  auto mask = PruningMask(spec, pruned->state);
  ASSERT_TRUE(mask.ok());
  const double before = Accuracy(*net);

  SgdOptions sgd;
  sgd.epochs = 2;
  auto stats = FinetuneMasked(*net, train_, sgd, *mask);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->steps, 2 * 1600 / 32);
  EXPECT_FALSE(net->is_training());

  auto after = ExportState(*net);
  ASSERT_TRUE(after.ok());
  for (size_t i = 0; i < after->size(); ++i) {
    const auto got = after->tensor(i).floats();
    const auto m = mask->tensor(i).floats();
    for (size_t j = 0; j < got.size(); ++j) {
      if (m[j] == 0) {
        ASSERT_EQ(got[j], 0) << after->tensor(i).name();
      }
    }
  }
  auto sparsity = MeasureSparsity(spec, *after);
  ASSERT_TRUE(sparsity.ok());
  EXPECT_GE(sparsity->weight_sparsity(), 0.8 - 1e-6);
  EXPECT_GT(Accuracy(*net), before + 0.3);
}

TEST_F(CompressTest, FinetuneRefusesAMaskOfAnotherModel) {
  std::shared_ptr<Net> net = Build("2nn");
  auto other = ExportState(*Build("logreg"));
  ASSERT_TRUE(other.ok());
  auto r = FinetuneMasked(*net, train_, {}, *other);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("pruning mask"));

  SgdOptions bad;
  bad.learning_rate = 0;
  auto mask = PruningMask(TorchScriptSpec(), *ExportState(*net));
  ASSERT_TRUE(mask.ok());
  EXPECT_THAT(FinetuneMasked(*net, train_, bad, *mask).status().message(),
              HasSubstr("--learning_rate > 0"));
}

TEST_F(CompressTest, DistilledStudentAnswersLikeItsTeacher) {
  std::shared_ptr<Net> teacher = Build("2nn");
  Train(*teacher, 3);
  ModelSpec small;
  small.architecture = "mlp";
  small.hidden_units = {32};
  auto built = BuildModel(small);
  ASSERT_TRUE(built.ok());
  std::shared_ptr<Net> student = *built;
  DistillOptions options;
  options.sgd.epochs = 10;
  auto stats = Distill(*teacher, *student, train_, options);
  ASSERT_TRUE(stats.ok()) << stats.status();

  auto t = ComputeLogits(*teacher, test_);
  auto s = ComputeLogits(*student, test_);
  ASSERT_TRUE(t.ok() && s.ok());
  ASSERT_EQ(s->num_examples, 400);
  ASSERT_EQ(s->num_classes, 10);
  int agree = 0;
  for (int i = 0; i < 400; ++i) {
    const float* tr = t->values.data() + i * 10;
    const float* sr = s->values.data() + i * 10;
    agree += std::max_element(tr, tr + 10) - tr ==
             std::max_element(sr, sr + 10) - sr;
  }
  EXPECT_GT(agree, 0.9 * 400);
  EXPECT_GT(Accuracy(*student), Accuracy(*teacher) - 0.05);
}

TEST_F(CompressTest, DistillRefusesABadTemperature) {
  DistillOptions options;
  options.temperature = 0;
  auto r = Distill(*Build("2nn"), *Build("logreg"), train_, options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("--temperature"));
}

TEST_F(CompressTest, ModuleAndNetEvaluateAlike) {
  ModelSpec spec;
  spec.architecture = "mobile_cnn";
  std::shared_ptr<Net> net = Build("mobile_cnn");
  Train(*net, 1);
  auto module = ToTorchScript(*net, spec);
  ASSERT_TRUE(module.ok());
  auto a = EvaluateAccuracy(*module, test_, 100);
  auto b = EvaluateAccuracy(*net, test_, 100);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(EvaluateAccuracy(*net, Dataset{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CompressTest, UnknownQuantizedEngineListsTheAvailableOnes) {
  absl::Status s = SetQuantizedEngine("tpu");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("qnnpack"));
  EXPECT_TRUE(SetQuantizedEngine("qnnpack").ok());
}

TEST_F(CompressTest, Int8CnnIsAQuarterOfTheFloatFileAndAsAccurate) {
  ModelSpec spec;
  spec.architecture = "cnn";
  std::shared_ptr<Net> net = Build("cnn");
  Train(*net, 1);
  const std::string float_path = dir_ + "/cnn.pt";
  const std::string int8_path = dir_ + "/cnn_int8.pt";
  ASSERT_TRUE(SaveTorchScript(*net, spec, float_path).ok());
  QuantizeOptions q;
  q.python.scripts_dir = std::string(FEDGE_SOURCE_DIR) + "/scripts";
  absl::Status s = QuantizeInt8(float_path, train_, dir_, int8_path, q);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/calibration.npy"));
  EXPECT_LT(std::filesystem::file_size(int8_path),
            std::filesystem::file_size(float_path) / 3.5);

  ASSERT_TRUE(SetQuantizedEngine("qnnpack").ok());
  auto int8 = LoadTorchScriptFile(int8_path);
  ASSERT_TRUE(int8.ok()) << int8.status();
  auto got = EvaluateAccuracy(*int8, test_);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_GT(*got, Accuracy(*net) - 0.02);
}

TEST_F(CompressTest, LoadingAMissingOrBrokenModuleSaysWhich) {
  EXPECT_EQ(LoadTorchScriptFile(dir_ + "/none.pt").status().code(),
            absl::StatusCode::kNotFound);
  std::ofstream(dir_ + "/junk.pt") << "junk";
  auto junk = LoadTorchScriptFile(dir_ + "/junk.pt");
  EXPECT_EQ(junk.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(junk.status().message(), HasSubstr("junk.pt"));
}

}  // namespace
}  // namespace fedge::ml
