// Export of zoo networks and archives to TorchScript (traced in C++, read
// back by LibTorch and as fedge archives) and to ONNX (through
// scripts/export_onnx.py with /usr/bin/python3, Debian's python3-torch and
// python3-onnx), and loading models from their files.
#include "common/ml/export.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/ml/model_files.h"
#include "common/ml/prune.h"
#include "common/ml/torch_converters.h"
#include "common/ml/torchscript_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/fedge_export_", name, ".", getpid());
  std::filesystem::create_directories(dir);
  return dir;
}

ModelSpec ZooSpec(const std::string& arch) {
  ModelSpec spec;
  spec.architecture = arch;
  if (arch == "mlp") spec.hidden_units = {32, 16};
  if (arch == "mobilenet_v2" || arch == "shufflenet_v2" ||
      arch == "squeezenet") {
    spec.width_multiplier = 0.5;  // Small and fast; same layout code.
  }
  return spec;
}

std::vector<int64_t> Batch(int64_t n, const ModelSpec& spec) {
  std::vector<int64_t> shape = {n};
  shape.insert(shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  return shape;
}

PythonOptions Python() {
  PythonOptions p;
  p.scripts_dir = std::string(FEDGE_SOURCE_DIR) + "/scripts";
  return p;
}

class ZooExportTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    spec_ = ZooSpec(GetParam());
    auto net = BuildModel(spec_);
    ASSERT_TRUE(net.ok()) << net.status();
    net_ = *net;
    net_->eval();
    dir_ = TempDir(GetParam());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  ModelSpec spec_;
  std::shared_ptr<Net> net_;
  std::string dir_;
};

TEST_P(ZooExportTest, TraceComputesWhatTheNetworkDoesOnAnyBatch) {
  auto module = ToTorchScript(*net_, spec_);
  ASSERT_TRUE(module.ok()) << module.status();
  torch::NoGradGuard no_grad;
  for (int64_t n : {1, 2, 7}) {
    const torch::Tensor x = torch::randn(Batch(n, spec_));
    const torch::Tensor want = net_->forward(x);
    const torch::Tensor got = module->forward({x}).toTensor();
    ASSERT_EQ(got.sizes(), want.sizes()) << "batch " << n;
    EXPECT_LT((got - want).abs().max().item<double>(), 1e-5) << "batch " << n;
  }
}

TEST_P(ZooExportTest, SavedFileLoadsWithTheFedgeTensorNames) {
  const std::string path = dir_ + "/model.pt";
  ASSERT_TRUE(SaveTorchScript(*net_, spec_, path).ok());
  torch::jit::Module loaded = torch::jit::load(path);
  std::vector<std::string> got, want;
  for (const auto& p : loaded.named_parameters()) got.push_back(p.name);
  for (const auto& b : loaded.named_buffers()) got.push_back(b.name);
  for (const auto& [name, tensor] : StateTensors(*net_)) want.push_back(name);
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn(Batch(3, spec_));
  EXPECT_LT((loaded.forward({x}).toTensor() - net_->forward(x))
                .abs()
                .max()
                .item<double>(),
            1e-5);
}

TEST_P(ZooExportTest, OnnxExportPassesTheChecker) {
  const std::string script = dir_ + "/model.pt";
  const std::string onnx = dir_ + "/model.onnx";
  ASSERT_TRUE(SaveTorchScript(*net_, spec_, script).ok());
  absl::Status s = ConvertToOnnx(script, spec_, onnx, 13, Python());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_GT(std::filesystem::file_size(onnx), 0u);
  EXPECT_FALSE(std::filesystem::exists(onnx + ".tmp"));
}

INSTANTIATE_TEST_SUITE_P(Zoo, ZooExportTest, ::testing::ValuesIn(ZooNames()),
                         [](const auto& info) { return info.param; });

TEST(ExportTest, TracedZooModelIsAFedgeArchiveWithTheSameState) {
  const std::string dir = TempDir("archive");
  ModelSpec spec = ZooSpec("cnn");
  auto net = BuildModel(spec);
  ASSERT_TRUE(net.ok());
  ASSERT_TRUE(SaveTorchScript(**net, spec, dir + "/cnn.pt").ok());

  ModelSpec archive = spec;
  archive.architecture = "torchscript";
  archive.torchscript_path = dir + "/cnn.pt";
  auto loaded = BuildNet(archive);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto want = ExportState(**net);
  auto got = ExportState(**loaded);
  ASSERT_TRUE(want.ok() && got.ok());
  ASSERT_TRUE(CheckSameSchema(*want, *got).ok());
  for (size_t i = 0; i < want->size(); ++i) {
    EXPECT_EQ(std::memcmp(want->tensor(i).data(), got->tensor(i).data(),
                          want->tensor(i).num_bytes()),
              0)
        << want->tensor(i).name();
  }
  std::filesystem::remove_all(dir);
}

TEST(ExportTest, StructuredCnnIsExportedWithoutItsZeroChannels) {
  ModelSpec spec = ZooSpec("cnn");
  auto net = BuildModel(spec);
  ASSERT_TRUE(net.ok());
  auto state = ExportState(**net);
  ASSERT_TRUE(state.ok());
  auto pruned = Prune(spec, *state, {0.5, true});
  ASSERT_TRUE(pruned.ok());
  ASSERT_TRUE(ImportState(pruned->state, **net).ok());
  (*net)->eval();

  int64_t removed = 0;
  auto module = ToTorchScript(**net, spec, &removed);
  ASSERT_TRUE(module.ok()) << module.status();
  EXPECT_EQ(removed, 16 + 32 + 256);
  EXPECT_EQ(module->attr("conv1").toModule().attr("weight").toTensor().size(0),
            16);
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({6, 1, 28, 28});
  EXPECT_LT((module->forward({x}).toTensor() - (*net)->forward(x))
                .abs()
                .max()
                .item<double>(),
            1e-4);
}

TEST(ExportTest, ArchiveIsSavedWithTheModelsWeights) {
  const std::string dir = TempDir("byom");
  const std::string example =
      std::string(FEDGE_SOURCE_DIR) + "/examples/torchscript_cnn";
  ASSERT_EQ(std::system(absl::StrCat("/usr/bin/python3 ", example,
                                     "/make_model.py --out ", dir,
                                     "/model.pt > /dev/null")
                            .c_str()),
            0);
  ModelSpec spec;
  spec.architecture = "torchscript";
  spec.torchscript_path = dir + "/model.pt";
  auto net = BuildNet(spec);
  ASSERT_TRUE(net.ok()) << net.status();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : (*net)->parameters()) p.add_(0.5);
  }
  ASSERT_TRUE(SaveTorchScript(**net, spec, dir + "/out.pt").ok());
  torch::jit::Module saved = torch::jit::load(dir + "/out.pt");
  auto want = (*net)->named_parameters();
  for (const auto& p : saved.named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value, want[p.name])) << p.name;
  }
  // Eval mode: batch norm uses the running statistics.
  EXPECT_FALSE(saved.is_training());
  std::filesystem::remove_all(dir);
}

TEST(ExportTest, OnnxRefusesOpsetsPyTorchCannotWrite) {
  ModelSpec spec = ZooSpec("2nn");
  absl::Status s = ConvertToOnnx("m.pt", spec, "m.onnx", 9, Python());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--opset"));
}

TEST(ExportTest, OnnxReportsTheConvertersError) {
  const std::string dir = TempDir("bad_onnx");
  std::ofstream(dir + "/junk.pt") << "not a model";
  absl::Status s = ConvertToOnnx(dir + "/junk.pt", ZooSpec("2nn"),
                                 dir + "/m.onnx", 13, Python());
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("export_onnx.py failed"));
  std::filesystem::remove_all(dir);
}

ModelFiles Files(const std::string& model, const std::string& spec = "",
                 const std::string& archive = "") {
  ModelFiles f;
  f.model_path = model;
  f.spec_path = spec;
  f.archive_path = archive;
  return f;
}

class LoadModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("load");
    spec_ = ZooSpec("2nn");
    auto state = InitialState(spec_);
    ASSERT_TRUE(state.ok());
    ASSERT_TRUE(WriteModelFile(dir_ + "/m.fedge", *state).ok());
    ASSERT_TRUE(WriteSpecFile(dir_ + "/m.spec", spec_).ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
  ModelSpec spec_;
};

TEST_F(LoadModelTest, ReadsTheSpecBesideTheModel) {
  auto m = LoadModel(Files(dir_ + "/m.fedge"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->spec.architecture, "2nn");
  EXPECT_EQ(m->state.size(), 6u);
  EXPECT_FALSE(m->net->is_training());
}

TEST_F(LoadModelTest, MissingSpecSaysWhereItLooked) {
  std::filesystem::remove(dir_ + "/m.spec");
  auto m = LoadModel(Files(dir_ + "/m.fedge"));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr(dir_ + "/m.spec"));
  EXPECT_THAT(m.status().message(), HasSubstr("--spec"));
}

TEST_F(LoadModelTest, MissingModelIsNamed_NotItsMissingSpec) {
  auto m = LoadModel(Files(dir_ + "/missing.fedge"));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr(dir_ + "/missing.fedge"));
  EXPECT_THAT(m.status().message(), ::testing::Not(HasSubstr("spec")));
}

TEST_F(LoadModelTest, ModelOfAnotherArchitectureIsRefusedNamingBothFiles) {
  ModelSpec other = ZooSpec("logreg");
  ASSERT_TRUE(WriteSpecFile(dir_ + "/other.spec", other).ok());
  auto m = LoadModel(Files(dir_ + "/m.fedge", dir_ + "/other.spec"));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr(dir_ + "/m.fedge"));
  EXPECT_THAT(m.status().message(), HasSubstr(dir_ + "/other.spec"));
}

TEST_F(LoadModelTest, TorchScriptSpecNeedsItsArchive) {
  ModelSpec ts = spec_;
  ts.architecture = "torchscript";
  ts.torchscript_sha256 = std::string(64, 'a');
  ts.torchscript_size_bytes = 10;
  ASSERT_TRUE(WriteSpecFile(dir_ + "/m.spec", ts).ok());
  auto m = LoadModel(Files(dir_ + "/m.fedge"));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("--archive"));

  std::ofstream(dir_ + "/other.pt") << "another archive";
  m = LoadModel(Files(dir_ + "/m.fedge", "", dir_ + "/other.pt"));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace fedge::ml
