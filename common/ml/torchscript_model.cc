#include "common/ml/torchscript_model.h"

#include <sys/stat.h>
#include <torch/csrc/jit/serialization/import.h>

#include <cerrno>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/ml/model_init.h"
#include "common/ml/torch_converters.h"
#include "common/ml/torch_status.h"
#include "common/status_macros.h"

namespace fedge::ml {
namespace {

constexpr char kInterpreterError[] =
    "The following operation failed in the TorchScript interpreter";

// The useful line of a LibTorch error: for errors raised inside the
// TorchScript interpreter the last line (the exception after the
// traceback), else the first (c10 appends a C++ backtrace).
std::string Gist(absl::string_view what) {
  std::vector<absl::string_view> lines =
      absl::StrSplit(what, '\n', absl::SkipWhitespace());
  if (lines.empty()) return "unknown error";
  return std::string(absl::StartsWith(what, kInterpreterError) ? lines.back()
                                                               : lines.front());
}

std::string Gist(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) {
    return Gist(c10->what_without_backtrace());
  }
  return Gist(e.what());
}

std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// "float32[2,10]", in the names of common/tensor_buffer.h where they apply.
std::string Describe(const torch::Tensor& t) {
  const torch::ScalarType type = t.scalar_type();
  const std::string dtype = type == torch::kFloat32 ? "float32"
                            : type == torch::kInt64 ? "int64"
                                                    : c10::toString(type);
  return absl::StrCat(dtype, ShapeString(t.sizes().vec()));
}

absl::Status CheckOptions(const TorchScriptNet::Options& o) {
  if (o.path.empty()) {
    return absl::InvalidArgumentError(
        "model 'torchscript' needs torchscript_path (the archive to load)");
  }
  if (o.num_classes < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        o.path, ": num_classes must be >= 2, got ", o.num_classes));
  }
  bool positive = !o.input_shape.empty();
  for (int64_t d : o.input_shape) positive = positive && d >= 1;
  if (!positive) {
    return absl::InvalidArgumentError(
        absl::StrCat(o.path, ": input_shape must have dimensions >= 1, got ",
                     ShapeString(o.input_shape)));
  }
  return absl::OkStatus();
}

absl::StatusOr<torch::jit::Module> LoadArchive(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return ErrnoStatus(errno, "torchscript archive", path);
  }
  try {
    return torch::jit::load(path, torch::kCPU);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is not a readable TorchScript archive: ", Gist(e)));
  }
}

// OK when `forward` exists and takes one Tensor (more only with defaults).
absl::Status CheckForwardSignature(const std::string& path,
                                   const torch::jit::Module& module) {
  auto forward = module.find_method("forward");  // c10::optional<Method>
  if (!forward.has_value()) {
    std::vector<std::string> names;
    for (const auto& m : module.get_methods()) names.push_back(m.name());
    return absl::InvalidArgumentError(
        absl::StrCat(path, " has no forward method (methods: ",
                     names.empty() ? "none" : absl::StrJoin(names, ", "), ")"));
  }
  const c10::FunctionSchema& schema = forward->function().getSchema();
  const auto& args = schema.arguments();  // args[0] is self.
  bool ok =
      args.size() >= 2 && args[1].type()->isSubtypeOf(*c10::TensorType::get());
  for (size_t i = 2; ok && i < args.size(); ++i) {
    ok = args[i].default_value().has_value();
  }
  if (!ok) {
    std::stringstream s;
    s << schema;
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": forward must take one Tensor (a batch), found ", s.str()));
  }
  return absl::OkStatus();
}

// OK for a float32 tensor, or an int64 buffer.
absl::Status CheckDType(const std::string& path, const std::string& name,
                        const torch::Tensor& t, bool parameter) {
  if (t.scalar_type() == torch::kFloat32 ||
      (!parameter && t.scalar_type() == torch::kInt64)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": ", parameter ? "parameter '" : "buffer '", name, "' is ",
      Describe(t),
      "; fedge trains float32 parameters and float32 or int64 buffers"));
}

}  // namespace

TorchScriptNet::TorchScriptNet(std::string path, torch::jit::Module module)
    : path_(std::move(path)), module_(std::move(module)) {}

absl::StatusOr<std::shared_ptr<TorchScriptNet>> TorchScriptNet::Create(
    const Options& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  ASSIGN_OR_RETURN(torch::jit::Module module, LoadArchive(options.path));
  RETURN_IF_ERROR(
      CallTorch([&]() { return CheckForwardSignature(options.path, module); }));
  std::shared_ptr<TorchScriptNet> net(
      new TorchScriptNet(options.path, std::move(module)));
  RETURN_IF_ERROR(net->Mirror());
  RETURN_IF_ERROR(net->Probe(options));  // Leaves the net in training mode.
  return net;
}

torch::Tensor TorchScriptNet::forward(torch::Tensor x) {
  try {
    return module_.forward({std::move(x)}).toTensor();
  } catch (const std::exception& e) {
    throw std::runtime_error(absl::StrCat(path_, ": forward: ", Gist(e)));
  }
}

void TorchScriptNet::train(bool on) {
  Net::train(on);
  module_.train(on);
}

absl::Status TorchScriptNet::Mirror() {
  return CallTorch([&]() -> absl::Status {
    const std::map<std::string, torch::nn::Module*> mirror = MirrorModules();
    std::set<const void*> seen;  // A tensor shared by two names counts once.
    std::vector<std::string> expected;
    auto add = [&](const std::string& name, const torch::Tensor& t,
                   bool parameter) -> absl::Status {
      RETURN_IF_ERROR(CheckDType(path_, name, t, parameter));
      if (!seen.insert(t.unsafeGetTensorImpl()).second) return absl::OkStatus();
      const size_t dot = name.rfind('.');
      torch::nn::Module* owner =
          mirror.at(dot == std::string::npos ? "" : name.substr(0, dot));
      if (parameter) {
        owner->register_parameter(name.substr(dot + 1), t, t.requires_grad());
      } else {
        owner->register_buffer(name.substr(dot + 1), t);
      }
      expected.push_back(name);
      return absl::OkStatus();
    };
    for (const auto& p : module_.named_parameters()) {
      RETURN_IF_ERROR(add(p.name, p.value, true));
    }
    for (const auto& b : module_.named_buffers()) {
      RETURN_IF_ERROR(add(b.name, b.value, false));
    }
    return CheckOrder(expected);
  });
}

std::map<std::string, torch::nn::Module*> TorchScriptNet::MirrorModules() {
  // One empty module per archive module, registered in the archive's
  // (pre-)order, so that named_parameters() / named_buffers() list the
  // tensors in the archive's order.
  std::map<std::string, torch::nn::Module*> mirror = {{"", this}};
  for (const auto& m : module_.named_modules()) {
    if (m.name.empty()) continue;
    const size_t dot = m.name.rfind('.');
    const std::string parent =
        dot == std::string::npos ? "" : m.name.substr(0, dot);
    auto child = std::make_shared<torch::nn::Module>();
    mirror.at(parent)->register_module(m.name.substr(dot + 1), child);
    mirror[m.name] = child.get();
  }
  return mirror;
}

absl::Status TorchScriptNet::CheckOrder(
    const std::vector<std::string>& expected) const {
  std::vector<std::string> found;
  for (const auto& p : named_parameters()) found.push_back(p.key());
  for (const auto& b : named_buffers()) found.push_back(b.key());
  if (found == expected) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      path_, ": cannot list the archive's tensors in its own order (",
      absl::StrJoin(expected, ","), " vs ", absl::StrJoin(found, ","), ")"));
}

absl::Status TorchScriptNet::Probe(const Options& options) {
  std::vector<int64_t> shape = {2};
  shape.insert(shape.end(), options.input_shape.begin(),
               options.input_shape.end());
  torch::jit::IValue result;
  try {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> saved;  // A traced model may update buffers.
    for (const auto& b : module_.buffers()) saved.push_back(b.clone());
    eval();
    result = module_.forward({torch::zeros(shape)});
    size_t i = 0;
    for (const auto& b : module_.buffers()) b.copy_(saved[i++]);
    train();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": forward failed on a batch of zeros ",
                     ShapeString(shape), ": ", Gist(e)));
  }
  if (!result.isTensor()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": forward must return a Tensor of logits, ",
                     "returned ", result.tagKind()));
  }
  const torch::Tensor out = result.toTensor();
  const std::vector<int64_t> want = {2, options.num_classes};
  if (out.scalar_type() != torch::kFloat32 || out.sizes().vec() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": forward on input ", ShapeString(shape), " returned ",
        Describe(out), ", expected logits float32", ShapeString(want),
        " (num_classes ", options.num_classes, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Net>> BuildNet(const ModelSpec& spec) {
  if (spec.architecture != "torchscript") return BuildModel(spec);
  TorchScriptNet::Options options;
  options.path = spec.torchscript_path;
  options.input_shape = spec.input_shape;
  options.num_classes = spec.num_classes;
  ASSIGN_OR_RETURN(std::shared_ptr<TorchScriptNet> net,
                   TorchScriptNet::Create(options));
  return std::shared_ptr<Net>(std::move(net));
}

absl::StatusOr<ModelState> InitialState(const ModelSpec& spec) {
  if (spec.architecture != "torchscript") return InitialModelState(spec);
  ASSIGN_OR_RETURN(std::shared_ptr<Net> net, BuildNet(spec));
  ASSIGN_OR_RETURN(ModelState state, ExportState(*net));
  RETURN_IF_ERROR(Annotate(CheckFinite(state), spec.torchscript_path));
  return state;
}

}  // namespace fedge::ml
