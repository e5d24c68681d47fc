// End-to-end: the real fedge-export on a 2NN (initial weights, synthetic
// data): its TorchScript and ONNX files give fedge's own logits in runtimes
// that are not fedge (PyTorch through bench/check_export.py, OpenCV's DNN
// module through bench/onnx_opencv_check), and the compression commands
// run and report. Needs /usr/bin/python3 with torch, onnx and numpy.
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/ml/model_files.h"
#include "common/ml/model_init.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/process.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;

const std::string kExport =
    std::string(FEDGE_BINARY_DIR) + "/server/fedge-export";
const std::string kFedge = std::string(FEDGE_BINARY_DIR) + "/server/fedge";
const std::string kOpenCvCheck =
    std::string(FEDGE_BINARY_DIR) + "/bench/onnx_opencv_check";
const std::string kCheckPy =
    std::string(FEDGE_SOURCE_DIR) + "/bench/check_export.py";
const std::vector<std::string> kData = {
    "--data.source=synthetic", "--data.synthetic_train_examples=1000",
    "--data.synthetic_test_examples=1000", "--data.synthetic_separation=1"};

// The number after `key=` in `text`, or -1.
double Figure(const std::string& text, const std::string& key) {
  std::smatch m;
  double v = -1;
  if (std::regex_search(text, m, std::regex(key + "=([-0-9.e+]+)"))) {
    if (!absl::SimpleAtod(m[1].str(), &v)) v = -1;
  }
  return v;
}

class ExportE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/fedge_export_e2e.", getpid());
    std::filesystem::create_directories(dir_);
    ml::ModelSpec spec;
    spec.architecture = "2nn";
    auto state = ml::InitialModelState(spec);
    ASSERT_TRUE(state.ok());
    ASSERT_TRUE(ml::WriteModelFile(Path("2nn.fedge"), *state).ok());
    ASSERT_TRUE(ml::WriteSpecFile(Path("2nn.spec"), spec).ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // Runs `argv`; its exit code, its output in *log.
  int Run(const std::vector<std::string>& argv, std::string* log) {
    Process p(argv, Path("log" + std::to_string(runs_++)));
    const std::optional<int> rc = p.Wait(absl::Seconds(300));
    *log = p.Log();
    return rc.value_or(-1);
  }
  // fedge-export `args` (with the synthetic data when `data`).
  int Export(std::vector<std::string> args, std::string* log,
             bool data = false) {
    args.insert(args.begin(), kExport);
    if (data) args.insert(args.end(), kData.begin(), kData.end());
    return Run(args, log);
  }
  // Exports 2nn.fedge to TorchScript and ONNX, and writes 1,000 examples
  // and fedge's logits for them.
  void ExportAndReference() {
    std::string log;
    ASSERT_EQ(Export({"model", Path("2nn.fedge"), "--format", "torchscript",
                      "-o", Path("2nn.pt")},
                     &log),
              0)
        << log;
    ASSERT_EQ(Export({"model", Path("2nn.fedge"), "--format", "onnx", "-o",
                      Path("2nn.onnx")},
                     &log),
              0)
        << log;
    EXPECT_THAT(log, HasSubstr("exported format=onnx"));
    ASSERT_EQ(Export({"evaluate", Path("2nn.fedge"), "--limit", "1000",
                      "--features_out", Path("x.npy"), "--logits_out",
                      Path("logits.npy")},
                     &log, true),
              0)
        << log;
    EXPECT_THAT(log, HasSubstr("num_examples=1000"));
  }

  std::string dir_;
  int runs_ = 0;
};

TEST_F(ExportE2eTest, TorchScriptAndOnnxGiveFedgesLogitsInPyTorch) {
  ExportAndReference();
  std::string log;
  ASSERT_EQ(Run({"/usr/bin/python3", kCheckPy, "--name", "2nn", "--features",
                 Path("x.npy"), "--logits", Path("logits.npy"), "--torchscript",
                 Path("2nn.pt"), "--onnx", Path("2nn.onnx")},
                &log),
            0)
      << log;
  EXPECT_THAT(log, HasSubstr("model=2nn format=torchscript"));
  EXPECT_THAT(log, HasSubstr("runtime=python-torch examples=1000"));
  EXPECT_THAT(log, HasSubstr("model=2nn format=onnx checker=ok opset=13"));
  const double diff = Figure(log, "max_abs_diff");
  EXPECT_GE(diff, 0);
  EXPECT_LT(diff, 1e-4);
}

TEST_F(ExportE2eTest, OnnxGivesFedgesLogitsInOpenCvDnn) {
  if (!std::filesystem::exists(kOpenCvCheck)) {
    GTEST_SKIP() << "no " << kOpenCvCheck << " (libopencv-dnn-dev)";
  }
  ExportAndReference();
  std::string log;
  ASSERT_EQ(Run({kOpenCvCheck, Path("2nn.onnx"), Path("x.npy"),
                 Path("logits.npy"), "2nn"},
                &log),
            0)
      << log;
  EXPECT_THAT(log, HasSubstr("model=2nn format=onnx"));
  EXPECT_THAT(log, HasSubstr("runtime=opencv-dnn examples=1000"));
  const double diff = Figure(log, "max_abs_diff");
  EXPECT_GE(diff, 0);
  EXPECT_LT(diff, 1e-4);
}

TEST_F(ExportE2eTest, PruneThenFinetuneKeepsTheSparsity) {
  std::string log;
  ASSERT_EQ(Export({"prune", Path("2nn.fedge"), "--sparsity", "0.8", "-o",
                    Path("p.fedge")},
                   &log, true),
            0)
      << log;
  EXPECT_THAT(log, HasSubstr("before file=" + Path("2nn.fedge")));
  EXPECT_THAT(log, HasSubstr("after file=" + Path("p.fedge")));
  EXPECT_THAT(log, HasSubstr("pruned sparsity=0.8000 weight_sparsity=0.8000"));
  EXPECT_LT(Figure(log, "after file=\\S+ size_bytes"),
            0.5 * Figure(log, "before file=\\S+ size_bytes"));
  EXPECT_TRUE(std::filesystem::exists(Path("p.spec")));

  ASSERT_EQ(Export({"finetune", Path("p.fedge"), "--epochs", "1", "-o",
                    Path("ft.fedge")},
                   &log, true),
            0)
      << log;
  EXPECT_THAT(log, HasSubstr("finetuned epochs=1"));
  EXPECT_THAT(log, HasSubstr("weight_sparsity=0.8000"));
  EXPECT_GE(Figure(log,
                   "after file=\\S+ size_bytes=\\d+ parameters=\\d+ "
                   "nonzero_parameters=\\d+ macs=\\d+ nonzero_macs=\\d+ "
                   "accuracy"),
            0.9);
}

// Fine-tuning rounds in a federation (fedge-sim; the coordinator shares
// its plan and initial weights): starting from the pruned model
// (model.initial_weights_path) with train.keep_pruned, the agents keep its
// zeros, so the trained model has exactly the pruned one's non-zeros.
TEST_F(ExportE2eTest, FederatedFinetuningKeepsThePrunedZeros) {
  std::string log;
  ASSERT_EQ(Export({"prune", Path("2nn.fedge"), "--sparsity", "0.8", "-o",
                    Path("p.fedge")},
                   &log, true),
            0)
      << log;
  const double pruned_nonzero =
      Figure(log,
             "after file=\\S+ size_bytes=\\d+ parameters=\\d+ "
             "nonzero_parameters");
  ASSERT_GT(pruned_nonzero, 0) << log;
  for (bool keep : {true, false}) {
    SCOPED_TRACE(keep ? "keep_pruned" : "without keep_pruned");
    const std::string out = Path(keep ? "fed.fedge" : "free.fedge");
    std::vector<std::string> sim = {
        std::string(FEDGE_BINARY_DIR) + "/server/sim/fedge-sim",
        "--model.architecture=2nn",
        "--num_agents=4",
        "--rounds=2",
        "--strategy.fraction=1",
        "--train.momentum=0.9",
        "--train.weight_decay=0.001",
        "--train.learning_rate=0.05",
        "--model.initial_weights_path=" + Path("p.fedge"),
        "--train.keep_pruned=" + std::string(keep ? "true" : "false"),
        "--model_out=" + out};
    sim.insert(sim.end(), kData.begin(), kData.end());
    ASSERT_EQ(Run(sim, &log), 0) << log;
    std::filesystem::copy_file(
        Path("p.spec"), out.substr(0, out.size() - 6) + ".spec",
        std::filesystem::copy_options::overwrite_existing);
    ASSERT_EQ(Export({"evaluate", out}, &log, true), 0) << log;
    ASSERT_EQ(
        Export({"prune", out, "--sparsity", "0.8", "-o", Path("re.fedge")},
               &log, true),
        0)
        << log;
    const double nonzero =
        Figure(log,
               "before file=\\S+ size_bytes=\\d+ parameters=\\d+ "
               "nonzero_parameters");
    if (keep) {
      EXPECT_EQ(nonzero, pruned_nonzero) << log;
    } else {
      EXPECT_GT(nonzero, pruned_nonzero) << log;
    }
  }
}

TEST_F(ExportE2eTest, StructuredPruningNarrowsThe2nnToAnMlp) {
  std::string log;
  ASSERT_EQ(Export({"prune", Path("2nn.fedge"), "--sparsity", "0.5",
                    "--structured", "-o", Path("s.fedge")},
                   &log),
            0)
      << log;
  EXPECT_THAT(log, HasSubstr("channels_pruned=200 channels_total=400"));
  EXPECT_THAT(log, HasSubstr("accuracy=none"));  // No data given or found.
  auto spec = ml::ReadSpecFile(Path("s.spec"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->architecture, "mlp");
  EXPECT_EQ(spec->hidden_units, (std::vector<int64_t>{100, 100}));
  // The narrower model exports like any zoo model.
  ASSERT_EQ(Export({"model", Path("s.fedge"), "--format", "torchscript", "-o",
                    Path("s.pt")},
                   &log),
            0)
      << log;
}

TEST_F(ExportE2eTest, QuantizeAndDistillReportSizesAndAccuracy) {
  std::string log;
  ASSERT_EQ(
      Export({"quantize", Path("2nn.fedge"), "--calibration-data", "train",
              "--calibration-examples", "200", "-o", Path("q.pt")},
             &log, true),
      0)
      << log;
  EXPECT_THAT(log, HasSubstr("int8 size_ratio="));
  EXPECT_THAT(log, HasSubstr("calibration_examples=200"));
  EXPECT_LT(Figure(log, "size_ratio"), 1 / 3.5);
  EXPECT_TRUE(std::filesystem::exists(Path("q.float.pt")));
  ASSERT_EQ(Export({"evaluate", Path("q.pt")}, &log, true), 0) << log;

  ASSERT_EQ(Export({"distill", Path("2nn.fedge"), "--student", "logreg",
                    "--epochs", "1", "-o", Path("d.fedge")},
                   &log, true),
            0)
      << log;
  EXPECT_THAT(log, HasSubstr("distilled_student=logreg params=7850"));
  EXPECT_THAT(log, HasSubstr("teacher=2nn teacher_params=199210"));
  auto spec = ml::ReadSpecFile(Path("d.spec"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->architecture, "logreg");
}

// `fedge export|prune|...` (the names the deployment docs use) run
// fedge-export beside fedge, with fedge-export's flags and exit codes.
TEST_F(ExportE2eTest, FedgeRunsTheDeploymentCommandsThroughFedgeExport) {
  std::string log;
  ASSERT_EQ(Run({kFedge, "export", Path("2nn.fedge"), "--format", "onnx", "-o",
                 Path("via_fedge.onnx")},
                &log),
            0)
      << log;
  EXPECT_THAT(log, HasSubstr("exported format=onnx"));
  EXPECT_GT(std::filesystem::file_size(Path("via_fedge.onnx")), 199210 * 4);

  std::vector<std::string> prune = {kFedge,         "prune", Path("2nn.fedge"),
                                    "--sparsity",   "0.5",   "-o",
                                    Path("p.fedge")};
  prune.insert(prune.end(), kData.begin(), kData.end());
  ASSERT_EQ(Run(prune, &log), 0) << log;
  EXPECT_THAT(log, HasSubstr("pruned sparsity=0.5000"));
  EXPECT_TRUE(std::filesystem::exists(Path("p.spec")));

  EXPECT_EQ(Run({kFedge, "export", Path("2nn.fedge"), "--format", "tflite",
                 "-o", Path("m.tflite")},
                &log),
            2);
  EXPECT_THAT(log, HasSubstr("--format must be torchscript or onnx"));
}

// A fedge without fedge-export beside it or on PATH (as in the container
// images) says where it looked and how to get it.
TEST_F(ExportE2eTest, FedgeWithoutFedgeExportSaysWhereItLooked) {
  std::filesystem::create_directories(Path("alone"));
  const std::string alone = std::filesystem::canonical(Path("alone"));
  std::filesystem::copy_file(kFedge, alone + "/fedge");
  std::string log;
  EXPECT_EQ(
      Run({"/usr/bin/env", "PATH=/usr/bin:/bin", alone + "/fedge", "distill",
           Path("2nn.fedge"), "--student", "logreg", "-o", Path("d.fedge")},
          &log),
      1);
  EXPECT_THAT(log, HasSubstr("fedge distill is run by fedge-export, found "
                             "neither in " +
                             alone + "/fedge-export,"));
  EXPECT_THAT(log, HasSubstr("scripts/build.sh fedge-export"));
  EXPECT_FALSE(std::filesystem::exists(Path("d.fedge")));
}

TEST_F(ExportE2eTest, BadUsageExitsTwoSayingWhy) {
  std::string log;
  EXPECT_EQ(Export({"shrink", Path("2nn.fedge")}, &log), 2);
  EXPECT_THAT(log, HasSubstr("unknown command 'shrink'"));
  EXPECT_EQ(Export({"model", Path("2nn.fedge"), "--sparsity", "0.5"}, &log), 2);
  EXPECT_THAT(log, HasSubstr("--sparsity does not apply"));
  EXPECT_EQ(Export({"model", Path("2nn.fedge"), "--format", "tflite", "-o",
                    Path("m.tflite")},
                   &log),
            2);
  EXPECT_THAT(log, HasSubstr("--format must be torchscript or onnx"));
  EXPECT_EQ(Export({"prune", Path("2nn.fedge"), "--sparsity", "0.5"}, &log), 2);
  EXPECT_THAT(log, HasSubstr("-o OUT is required"));
  EXPECT_EQ(Export({"distill", Path("2nn.fedge"), "--student", "resnet", "-o",
                    Path("d.fedge")},
                   &log, true),
            2);
  EXPECT_THAT(log, HasSubstr("resnet"));
  // The data flags are checked as fedge-sim and the agents check them.
  EXPECT_EQ(
      Export({"evaluate", Path("2nn.fedge"), "--data.source=fashion"}, &log),
      2);
  EXPECT_THAT(log, HasSubstr("config field 'data.source' must be one of "
                             "mnist, idx, csv, npy, synthetic; got 'fashion'"));
  EXPECT_EQ(Export({"evaluate", Path("2nn.fedge"), "--data.source=csv"}, &log),
            2);
  EXPECT_THAT(log, HasSubstr("'data.csv_train_path' is required"));
}

}  // namespace
}  // namespace fedge::testing
