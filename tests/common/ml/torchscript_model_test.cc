// TorchScript archives made by Python (the example's make_model.py and the
// small modules in kArchivesPy), loaded, trained and evaluated like zoo
// models, and every way an archive or a state can be wrong.
#include "common/ml/torchscript_model.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/data/dataset.h"
#include "common/ml/model_init.h"
#include "common/ml/torch_converters.h"
#include "common/ml/torch_trainer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Archives for the tests; argv[1] is the output folder, argv[2] the example
// folder (whose SmallCnn gives the reference tensor order).
constexpr char kArchivesPy[] = R"py(
import sys
import torch
from torch import nn

out, example = sys.argv[1], sys.argv[2]
sys.path.insert(0, example)
from make_model import SmallCnn


class Traced(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(torch.flatten(x, 1))


class OnlyOther(nn.Module):
    @torch.jit.export
    def other(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Linear(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.fc = nn.Linear(784, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class RaisesOnZeros(Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() == 0):
            raise RuntimeError("boom on zeros")
        return self.fc(x.flatten(1))


class RaisesOnThree(Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(0) == 3:
            raise ValueError("a batch of three")
        return self.fc(x.flatten(1))


class TwoInputs(Linear):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) + y


class ReturnsTuple(Linear):
    def forward(self, x: torch.Tensor):
        logits = self.fc(x.flatten(1))
        return logits, logits


class DoubleBuffer(Linear):
    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.ones(1, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * self.scale.float()


torch.manual_seed(0)
torch.jit.trace(Traced(), torch.zeros(2, 1, 28, 28)).save(out + "/traced.pt")
torch.jit.script(OnlyOther()).save(out + "/no_forward.pt")
torch.jit.script(RaisesOnZeros()).save(out + "/raises.pt")
torch.jit.script(RaisesOnThree()).save(out + "/raises_on_three.pt")
torch.jit.script(Linear(12)).save(out + "/twelve_classes.pt")
torch.jit.script(TwoInputs()).save(out + "/two_inputs.pt")
torch.jit.script(ReturnsTuple()).save(out + "/tuple.pt")
torch.jit.script(DoubleBuffer()).save(out + "/float64_buffer.pt")
# Traced in training mode: its BatchNorm updates the statistics even in
# eval mode, so loading must undo the probe's forward.
traced_bn = torch.jit.trace(SmallCnn(), torch.zeros(2, 1, 28, 28))
traced_bn.save(out + "/traced_bn.pt")
with open(out + "/traced_bn_count.txt", "w") as f:
    f.write(str(int(traced_bn.bn1.num_batches_tracked)))

# The tensor order Python gives, and model.pt's tensors as raw bytes.
cnn = SmallCnn()
names = [n for n, _ in cnn.named_parameters()]
names += [n for n, _ in cnn.named_buffers()]
with open(out + "/names.txt", "w") as f:
    f.write("\n".join(names) + "\n")
m = torch.jit.load(out + "/model.pt")
tensors = [t for _, t in m.named_parameters()]
tensors += [t for _, t in m.named_buffers()]
with open(out + "/state.bin", "wb") as f:
    for t in tensors:
        f.write(t.detach().contiguous().numpy().tobytes())
)py";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `command`; its exit status, stdout in *out.
int RunCommand(const std::string& command, std::string* out) {
  out->clear();
  std::FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out->append(buf, n);
  return pclose(pipe);
}

class TorchScriptModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(
        absl::StrCat(::testing::TempDir(), "/fedge_torchscript.", getpid()));
    std::filesystem::create_directories(*dir_);
    const std::string example =
        std::string(FEDGE_SOURCE_DIR) + "/examples/torchscript_cnn";
    make_model_out_ = new std::string;
    ASSERT_EQ(
        RunCommand(absl::StrCat("/usr/bin/python3 ", example,
                                "/make_model.py --out ", *dir_, "/model.pt"),
                   make_model_out_),
        0);
    std::ofstream(*dir_ + "/archives.py") << kArchivesPy;
    std::string log;
    ASSERT_EQ(
        RunCommand(absl::StrCat("/usr/bin/python3 ", *dir_, "/archives.py ",
                                *dir_, " ", example, " 2>&1"),
                   &log),
        0)
        << log;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    delete make_model_out_;
  }

  void SetUp() override {
    SyntheticOptions options;
    options.num_examples = 640;
    options.separation = 0.1;
    options.seed = 3;
    auto split = MakeSyntheticSplit(options, 200);
    ASSERT_TRUE(split.ok()) << split.status();
    train_ = std::move(split->first);
    test_ = std::move(split->second);
  }

  static std::string Path(const std::string& name) {
    return *dir_ + "/" + name;
  }
  static ModelSpec Spec(const std::string& archive, int64_t classes = 10) {
    ModelSpec spec;
    spec.architecture = "torchscript";
    spec.torchscript_path = Path(archive);
    spec.input_shape = {1, 28, 28};
    spec.num_classes = classes;
    return spec;
  }
  static absl::Status LoadStatus(const std::string& archive,
                                 int64_t classes = 10) {
    return BuildNet(Spec(archive, classes)).status();
  }
  std::unique_ptr<TorchTrainer> MakeTrainer(const std::string& archive) {
    TorchTrainerOptions options;
    options.model = Spec(archive);
    options.train = &train_;
    options.eval = &test_;
    auto trainer = TorchTrainer::Create(options);
    EXPECT_TRUE(trainer.ok()) << trainer.status();
    return trainer.ok() ? *std::move(trainer) : nullptr;
  }

  static std::string* dir_;
  static std::string* make_model_out_;
  Dataset train_, test_;
};

std::string* TorchScriptModelTest::dir_ = nullptr;
std::string* TorchScriptModelTest::make_model_out_ = nullptr;

bool SameBytes(const ModelState& a, const ModelState& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const TensorBuffer &x = a.tensor(i), &y = b.tensor(i);
    if (x.name() != y.name() || x.dtype() != y.dtype() ||
        x.shape() != y.shape() ||
        std::memcmp(x.data(), y.data(), x.num_bytes()) != 0) {
      return false;
    }
  }
  return true;
}

TEST_F(TorchScriptModelTest, Load_StateIsParametersThenBuffersInPythonOrder) {
  auto net = BuildNet(Spec("model.pt"));
  ASSERT_TRUE(net.ok()) << net.status();
  auto state = ExportState(**net);
  ASSERT_TRUE(state.ok()) << state.status();

  std::vector<std::string> names;
  for (const TensorBuffer& t : state->tensors()) names.push_back(t.name());
  const std::vector<std::string> python =
      absl::StrSplit(ReadAll(Path("names.txt")), '\n', absl::SkipEmpty());
  EXPECT_EQ(names, python);
  EXPECT_EQ(names.front(), "conv1.weight");
  EXPECT_THAT(names, ::testing::Contains("bn1.running_mean"));

  const TensorBuffer* mean = state->Find("bn2.running_mean");
  const TensorBuffer* var = state->Find("bn2.running_var");
  const TensorBuffer* count = state->Find("bn2.num_batches_tracked");
  ASSERT_NE(mean, nullptr);
  ASSERT_NE(var, nullptr);
  ASSERT_NE(count, nullptr);
  EXPECT_EQ(mean->dtype(), DType::kFloat32);
  EXPECT_EQ(mean->shape(), std::vector<int64_t>{32});
  EXPECT_EQ(var->dtype(), DType::kFloat32);
  EXPECT_EQ(count->dtype(), DType::kInt64);
  EXPECT_TRUE(count->shape().empty());
  EXPECT_EQ(state->Find("conv1.weight")->shape(),
            (std::vector<int64_t>{16, 1, 3, 3}));

  // The archive's own weights, bit for bit.
  std::string bytes;
  for (const TensorBuffer& t : state->tensors()) {
    bytes.append(reinterpret_cast<const char*>(t.data()), t.num_bytes());
  }
  EXPECT_TRUE(bytes == ReadAll(Path("state.bin")));

  // make_model.py prints the parameter count.
  EXPECT_THAT(*make_model_out_,
              HasSubstr(absl::StrCat(CountParameters(**net), " parameters")));
  EXPECT_EQ(CountParameters(**net), 20538);
}

TEST_F(TorchScriptModelTest, Train_LossFallsAndBatchNormStatisticsMove) {
  auto trainer = MakeTrainer("model.pt");
  ASSERT_NE(trainer, nullptr);
  auto global = trainer->State();
  ASSERT_TRUE(global.ok()) << global.status();
  auto before = trainer->Evaluate(*global);
  ASSERT_TRUE(before.ok()) << before.status();

  TrainPlan plan;
  plan.epochs = 2;
  plan.batch_size = 32;
  plan.learning_rate = 0.05;
  plan.momentum = 0.5;
  plan.weight_decay = 1e-4;
  plan.proximal_mu = 0.01;
  auto out = trainer->Train(*global, plan, {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->metrics.num_steps, 2 * 20);
  EXPECT_EQ(out->metrics.num_examples, 640);
  // Counters travel as their new value; statistics as a difference.
  EXPECT_EQ(out->delta.Find("bn1.num_batches_tracked")->int64s()[0], 40);
  float moved = 0;
  for (float v : out->delta.Find("bn1.running_mean")->floats()) {
    moved += std::abs(v);
  }
  EXPECT_GT(moved, 0);

  ASSERT_TRUE(AddScaledInPlace(*global, out->delta, 1.0f).ok());
  auto after = trainer->Evaluate(*global);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_LT(after->loss, before->loss);
  EXPECT_GT(after->accuracy, before->accuracy);
  EXPECT_EQ(after->num_examples, 200);
}

TEST_F(TorchScriptModelTest, State_RoundTripsBitExactly) {
  auto net = BuildNet(Spec("model.pt"));
  ASSERT_TRUE(net.ok()) << net.status();
  auto state = ExportState(**net);
  ASSERT_TRUE(state.ok());
  ModelState changed = state->Clone();
  for (TensorBuffer& t : changed.mutable_tensors()) {
    if (t.dtype() == DType::kFloat32) {
      for (float& v : t.mutable_floats()) v = v * 1.5f + 0.25f;
    } else {
      for (int64_t& v : t.mutable_int64s()) v += 7;
    }
  }
  ASSERT_TRUE(ImportState(changed, **net).ok());
  auto back = ExportState(**net);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(SameBytes(*back, changed));
  EXPECT_FALSE(SameBytes(*back, *state));
  // The archive's module sees the same tensors.
  auto* ts = dynamic_cast<TorchScriptNet*>(net->get());
  ASSERT_NE(ts, nullptr);
  EXPECT_EQ(ts->module()
                .attr("bn1")
                .toModule()
                .attr("num_batches_tracked")
                .toTensor()
                .item<int64_t>(),
            7);
}

TEST_F(TorchScriptModelTest, TrainAndEval_SwitchTheArchivesMode) {
  auto net = BuildNet(Spec("model.pt"));
  ASSERT_TRUE(net.ok());
  auto* ts = dynamic_cast<TorchScriptNet*>(net->get());
  EXPECT_TRUE(ts->module().is_training());
  (*net)->eval();
  EXPECT_FALSE(ts->module().is_training());
  EXPECT_FALSE(ts->module().attr("bn1").toModule().is_training());
  (*net)->train();
  EXPECT_TRUE(ts->module().attr("bn2").toModule().is_training());
}

TEST_F(TorchScriptModelTest, Evaluate_IsDeterministicAndLeavesStateAlone) {
  auto trainer = MakeTrainer("model.pt");
  ASSERT_NE(trainer, nullptr);
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  auto a = trainer->Evaluate(*global);
  auto b = trainer->Evaluate(*global);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->loss, b->loss);
  EXPECT_EQ(a->accuracy, b->accuracy);
  EXPECT_GE(a->accuracy, 0.0);
  EXPECT_LE(a->accuracy, 1.0);
  auto state = trainer->State();
  ASSERT_TRUE(state.ok());
  EXPECT_TRUE(SameBytes(*state, *global));  // eval() froze BatchNorm.
}

TEST_F(TorchScriptModelTest, TracedModule_TrainsToo) {
  auto trainer = MakeTrainer("traced.pt");
  ASSERT_NE(trainer, nullptr);
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  ASSERT_EQ(global->size(), 4u);
  EXPECT_EQ(global->tensor(0).name(), "conv.weight");
  auto before = trainer->Evaluate(*global);
  ASSERT_TRUE(before.ok()) << before.status();
  TrainPlan plan;
  plan.batch_size = 32;
  plan.learning_rate = 0.05;
  auto out = trainer->Train(*global, plan, {});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE(AddScaledInPlace(*global, out->delta, 1.0f).ok());
  auto after = trainer->Evaluate(*global);
  ASSERT_TRUE(after.ok());
  EXPECT_LT(after->loss, before->loss);
}

TEST_F(TorchScriptModelTest, Load_LeavesBuffersAsTheArchiveHasThem) {
  auto net = BuildNet(Spec("traced_bn.pt"));
  ASSERT_TRUE(net.ok()) << net.status();
  auto state = ExportState(**net);
  ASSERT_TRUE(state.ok());
  int64_t saved = -1;
  ASSERT_TRUE(absl::SimpleAtoi(ReadAll(Path("traced_bn_count.txt")), &saved));
  EXPECT_EQ(state->Find("bn1.num_batches_tracked")->int64s()[0], saved);
}

TEST_F(TorchScriptModelTest, MissingFile_NotFound) {
  const absl::Status s = LoadStatus("nope.pt");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("nope.pt"));
}

TEST_F(TorchScriptModelTest, CorruptArchive_InvalidArgument) {
  const std::string whole = ReadAll(Path("model.pt"));
  std::ofstream(Path("truncated.pt"), std::ios::binary)
      << whole.substr(0, whole.size() / 2);
  absl::Status s = LoadStatus("truncated.pt");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), AllOf(HasSubstr("truncated.pt"),
                                 HasSubstr("not a readable TorchScript")));

  std::ofstream(Path("garbage.pt"), std::ios::binary) << "PK\x03\x04 garbage";
  s = LoadStatus("garbage.pt");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;

  std::ofstream(Path("empty.pt"), std::ios::binary) << "";
  s = LoadStatus("empty.pt");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST_F(TorchScriptModelTest, NoForward_InvalidArgumentListsMethods) {
  const absl::Status s = LoadStatus("no_forward.pt");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("no_forward.pt has no forward method"),
                    HasSubstr("other")));
}

TEST_F(TorchScriptModelTest, ForwardTakingTwoTensors_InvalidArgument) {
  const absl::Status s = LoadStatus("two_inputs.pt");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("forward must take one Tensor"));
}

TEST_F(TorchScriptModelTest, ForwardThatRaises_InvalidArgumentWithItsError) {
  const absl::Status s = LoadStatus("raises.pt");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("raises.pt"), HasSubstr("[2,1,28,28]"),
                    HasSubstr("RuntimeError: boom on zeros")));
}

TEST_F(TorchScriptModelTest, ForwardThatRaisesWhileTraining_Internal) {
  auto trainer = MakeTrainer("raises_on_three.pt");
  ASSERT_NE(trainer, nullptr);
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  TrainPlan plan;
  plan.batch_size = 3;
  auto out = trainer->Train(*global, plan, {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal) << out.status();
  EXPECT_THAT(out.status().message(),
              AllOf(HasSubstr("raises_on_three.pt: forward"),
                    HasSubstr("a batch of three")));
  plan.batch_size = 4;  // The trainer is still usable.
  EXPECT_TRUE(trainer->Train(*global, plan, {}).ok());
}

TEST_F(TorchScriptModelTest, WrongOutputShape_InvalidArgumentExpectedVsFound) {
  absl::Status s = LoadStatus("twelve_classes.pt");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), AllOf(HasSubstr("twelve_classes.pt"),
                                 HasSubstr("returned float32[2,12]"),
                                 HasSubstr("expected logits float32[2,10]")));
  EXPECT_TRUE(LoadStatus("twelve_classes.pt", 12).ok());

  s = LoadStatus("tuple.pt");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("must return a Tensor"));

  ModelSpec spec = Spec("model.pt");
  spec.input_shape = {3, 8, 8};  // The CNN's linear layer wants 28x28.
  s = BuildNet(spec).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("[2,3,8,8]"));
}

TEST_F(TorchScriptModelTest, UnsupportedDtype_InvalidArgumentNamesTensor) {
  const absl::Status s = LoadStatus("float64_buffer.pt");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("buffer 'scale'"), HasSubstr("Double[1]")));
}

TEST_F(TorchScriptModelTest, MismatchingState_InvalidArgumentNamesTensor) {
  auto trainer = MakeTrainer("model.pt");
  ASSERT_NE(trainer, nullptr);
  auto global = trainer->State();
  ASSERT_TRUE(global.ok());
  const TrainPlan plan;

  ModelState wrong_shape = global->Clone();
  wrong_shape.mutable_tensor(0) =
      *TensorBuffer::Zeros("conv1.weight", DType::kFloat32, {8, 1, 3, 3});
  absl::Status s = trainer->Train(wrong_shape, plan, {}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), AllOf(HasSubstr("conv1.weight float32[8,1,3,3]"),
                                 HasSubstr("float32[16,1,3,3]")));

  ModelState wrong_dtype = global->Clone();
  const size_t last = wrong_dtype.size() - 1;
  wrong_dtype.mutable_tensor(last) =
      *TensorBuffer::Zeros("bn2.num_batches_tracked", DType::kFloat32, {});
  s = trainer->Evaluate(wrong_dtype).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), AllOf(HasSubstr("bn2.num_batches_tracked float32"),
                                 HasSubstr("int64")));

  ModelState missing = global->Clone();
  missing.mutable_tensors().pop_back();
  s = trainer->Evaluate(missing).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("model tensor bn2.num_batches_tracked"));

  ModelState renamed = global->Clone();
  renamed.mutable_tensor(1) =
      *TensorBuffer::Zeros("bn1.gamma", DType::kFloat32, {16});
  s = trainer->Evaluate(renamed).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), AllOf(HasSubstr("bn1.gamma"),
                                 HasSubstr("model tensor bn1.weight")));

  // A refused state changes nothing.
  auto after = trainer->State();
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(SameBytes(*after, *global));
}

TEST_F(TorchScriptModelTest, BadOptions_InvalidArgument) {
  ModelSpec spec = Spec("model.pt");
  spec.torchscript_path.clear();
  EXPECT_EQ(BuildNet(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec = Spec("model.pt", 1);
  EXPECT_EQ(BuildNet(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec = Spec("model.pt");
  spec.input_shape = {1, 0, 28};
  EXPECT_EQ(BuildNet(spec).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TorchScriptModelTest, BuildNet_ZooSpecsStillBuildTheZoo) {
  ModelSpec spec;
  spec.architecture = "2nn";
  auto net = BuildNet(spec);
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_EQ(dynamic_cast<TorchScriptNet*>(net->get()), nullptr);
  EXPECT_EQ(CountParameters(**net), 199210);
  // The zoo itself refuses "torchscript" (its weights are in the archive).
  const absl::Status s = BuildModel(Spec("model.pt")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--export-initial"));
}

TEST_F(TorchScriptModelTest, InitialState_ArchiveWeightsOrZooInitializer) {
  auto from_archive = InitialState(Spec("model.pt"));
  ASSERT_TRUE(from_archive.ok()) << from_archive.status();
  std::string bytes;
  for (const TensorBuffer& t : from_archive->tensors()) {
    bytes.append(reinterpret_cast<const char*>(t.data()), t.num_bytes());
  }
  EXPECT_TRUE(bytes == ReadAll(Path("state.bin")));

  ModelSpec zoo;
  zoo.architecture = "mobile_cnn";
  auto a = InitialState(zoo);
  auto b = InitialModelState(zoo);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(SameBytes(*a, *b));

  EXPECT_EQ(InitialState(Spec("nope.pt")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TorchScriptModelTest, SpecCarriesArchiveIdentity) {
  ModelSpec spec = Spec("model.pt");
  ASSERT_TRUE(StampArchive(spec).ok());
  EXPECT_EQ(spec.torchscript_sha256.size(), 64u);
  EXPECT_EQ(spec.torchscript_size_bytes,
            static_cast<int64_t>(ReadAll(Path("model.pt")).size()));
  EXPECT_TRUE(VerifyArchive(spec).ok());

  const ModelSpec back = SpecFromProto(SpecToProto(spec));
  EXPECT_EQ(back.architecture, "torchscript");
  EXPECT_EQ(back.torchscript_sha256, spec.torchscript_sha256);
  EXPECT_EQ(back.torchscript_size_bytes, spec.torchscript_size_bytes);
  EXPECT_TRUE(back.torchscript_path.empty());  // Local to each machine.

  v1::ModelConfig config;
  config.set_architecture("torchscript");
  config.set_torchscript_path("/models/cnn.pt");
  EXPECT_EQ(SpecFromConfig(config).torchscript_path, "/models/cnn.pt");

  ModelSpec other = spec;
  other.torchscript_path = Path("traced.pt");
  const absl::Status s = VerifyArchive(other);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr(spec.torchscript_sha256));
  other.torchscript_path = Path("nope.pt");
  EXPECT_EQ(StampArchive(other).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace fedge::ml
