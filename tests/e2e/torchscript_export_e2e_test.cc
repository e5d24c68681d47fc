// End-to-end: the real `fedge-evaluator --export-initial` on the example
// archive (examples/torchscript_cnn/make_model.py, made with
// /usr/bin/python3), whose output the coordinator decodes as the initial
// model; and its refusals.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/model_codec.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/evaluator_process.h"
#include "tests/e2e/process.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kEvaluator =
    std::string(FEDGE_BINARY_DIR) + "/server/fedge-evaluator";
const std::string kExample =
    std::string(FEDGE_SOURCE_DIR) + "/examples/torchscript_cnn";

class TorchScriptExportE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        absl::StrCat(::testing::TempDir(), "/fedge_ts_export_e2e.", getpid());
    std::filesystem::create_directories(dir_);
    std::string log;
    ASSERT_EQ(Run({"/usr/bin/python3", kExample + "/make_model.py", "--out",
                   dir_ + "/model.pt"},
                  &log),
              0)
        << log;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs `argv`; its exit code, output in *log.
  int Run(const std::vector<std::string>& argv, std::string* log) {
    Process p(argv, dir_ + "/log" + std::to_string(runs_++));
    const std::optional<int> rc = p.Wait(absl::Seconds(120));
    *log = p.Log();
    return rc.value_or(-1);
  }
  int Export(const std::vector<std::string>& args, std::string* log) {
    std::vector<std::string> argv = {kEvaluator, "--export-initial"};
    argv.insert(argv.end(), args.begin(), args.end());
    return Run(argv, log);
  }

  std::string dir_;
  int runs_ = 0;
};

TEST_F(TorchScriptExportE2eTest, WritesTheArchivesStateAsCanonicalEncoding) {
  const std::string out = dir_ + "/initial.fedge";
  std::string log;
  ASSERT_EQ(Export({dir_ + "/model.pt", out, "--input_shape", "1,28,28",
                    "--num_classes", "10"},
                   &log),
            0)
      << log;

  auto model = DecodeModel(ReadFileOrEmpty(out));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(log, absl::StrCat("ok ", ToHex(ModelDigest(*model)), "\n"));
  std::vector<std::string> names;
  for (const TensorBuffer& t : model->tensors()) names.push_back(t.name());
  const std::vector<std::string> expected = {"conv1.weight",
                                             "bn1.weight",
                                             "bn1.bias",
                                             "conv2.weight",
                                             "bn2.weight",
                                             "bn2.bias",
                                             "fc.weight",
                                             "fc.bias",
                                             "bn1.running_mean",
                                             "bn1.running_var",
                                             "bn1.num_batches_tracked",
                                             "bn2.running_mean",
                                             "bn2.running_var",
                                             "bn2.num_batches_tracked"};
  EXPECT_EQ(names, expected);
  EXPECT_EQ(model->Find("fc.weight")->shape(),
            (std::vector<int64_t>{10, 32 * 7 * 7}));
  EXPECT_EQ(model->Find("bn1.num_batches_tracked")->dtype(), DType::kInt64);
  EXPECT_EQ(model->Find("bn2.running_var")->floats()[0], 1.0f);
  int64_t parameters = 0;
  for (size_t i = 0; i < 8; ++i) parameters += model->tensor(i).num_elements();
  EXPECT_EQ(parameters, 20538);

  // Same archive, same bytes (the flags' '=' form too).
  const std::string again = dir_ + "/again.fedge";
  ASSERT_EQ(Export({dir_ + "/model.pt", again, "--input_shape=1,28,28",
                    "--num_classes=10"},
                   &log),
            0)
      << log;
  EXPECT_EQ(ReadFileOrEmpty(again), ReadFileOrEmpty(out));
}

TEST_F(TorchScriptExportE2eTest, Refusals_PrintErrorExitOneWriteNothing) {
  const std::string out = dir_ + "/initial.fedge";
  std::string log;
  EXPECT_EQ(Export({dir_ + "/model.pt", out, "--num_classes", "12"}, &log), 1);
  EXPECT_THAT(log, StartsWith("error "));
  EXPECT_THAT(log, HasSubstr("expected logits float32[2,12]"));

  EXPECT_EQ(Export({dir_ + "/missing.pt", out}, &log), 1);
  EXPECT_THAT(log, StartsWith("error "));
  EXPECT_THAT(log, HasSubstr("missing.pt"));

  const std::string archive = ReadFileOrEmpty(dir_ + "/model.pt");
  {
    std::ofstream(dir_ + "/truncated.pt", std::ios::binary)
        << archive.substr(0, archive.size() - 100);
  }
  EXPECT_EQ(Export({dir_ + "/truncated.pt", out}, &log), 1);
  EXPECT_THAT(log, HasSubstr("not a readable TorchScript archive"));

  EXPECT_EQ(Export({dir_ + "/model.pt"}, &log), 1);
  EXPECT_THAT(log, HasSubstr("usage"));
  EXPECT_EQ(Export({dir_ + "/model.pt", out, "--input_shape", "1,x"}, &log), 1);
  EXPECT_THAT(log, HasSubstr("--input_shape"));
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST_F(TorchScriptExportE2eTest, EvaluatorServesTheArchiveForTheCoordinator) {
  const std::string out = dir_ + "/initial.fedge";
  std::string log;
  ASSERT_EQ(Export({dir_ + "/model.pt", out}, &log), 0) << log;
  auto initial = DecodeModel(ReadFileOrEmpty(out));
  ASSERT_TRUE(initial.ok()) << initial.status();

  EvaluatorProcess::Options options;
  options.binary = kEvaluator;
  options.work_dir = dir_;
  v1::EvaluatorConfig& config = options.config;
  config.mutable_data()->set_source("synthetic");
  config.mutable_data()->set_synthetic_test_examples(300);
  config.mutable_model()->set_architecture("torchscript");
  config.mutable_model()->set_torchscript_path(dir_ + "/model.pt");
  auto evaluator = EvaluatorProcess::Start(options);
  ASSERT_TRUE(evaluator.ok()) << evaluator.status();
  auto metrics = (*evaluator)->Evaluate(*initial);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->num_examples, 300);
  EXPECT_GT(metrics->loss, 0);

  ModelState wrong = initial->Clone();
  wrong.mutable_tensors().pop_back();
  auto refused = (*evaluator)->Evaluate(wrong);
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("bn2.num_batches_tracked"));
  EXPECT_TRUE((*evaluator)->Evaluate(*initial).ok());  // Still serving.
}

}  // namespace
}  // namespace fedge::testing
