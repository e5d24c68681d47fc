#include "common/ml/export.h"

#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/fuse_linear.h>

#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/ml/model_files.h"
#include "common/ml/prune.h"
#include "common/ml/torch_converters.h"
#include "common/ml/torch_status.h"
#include "common/ml/torchscript_model.h"
#include "common/status_macros.h"

namespace fedge::ml {
namespace {

namespace jit = torch::jit;

// The batch the network is traced on, and the batches the trace is checked
// on: distinct, and unlike the sizes a network's other dimensions take in
// a reshape's leading position.
constexpr int64_t kTraceBatch = 3;
constexpr int64_t kCheckBatches[] = {1, 5};
constexpr int kMinOpset = 13, kMaxOpset = 17;

std::vector<int64_t> BatchShape(int64_t batch, const ModelSpec& spec) {
  std::vector<int64_t> shape = {batch};
  shape.insert(shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  return shape;
}

// A TorchScript module tree holding the network's own tensors (not copies)
// under their names: "a.b.weight" is parameter "weight" of submodule "b" of
// submodule "a".
jit::Module MirrorAsScript(const torch::nn::Module& net) {
  auto unit = std::make_shared<jit::CompilationUnit>();
  std::map<std::string, jit::Module> modules = {
      {"", jit::Module(c10::QualifiedName("__torch__.fedge.Net"), unit,
                       /*shouldMangle=*/true)}};
  // The submodule at dotted `path`, created (with its parents) on first use.
  std::function<jit::Module(const std::string&)> module_at =
      [&](const std::string& path) -> jit::Module {
    auto it = modules.find(path);
    if (it != modules.end()) return it->second;
    const size_t dot = path.rfind('.');
    jit::Module parent =
        module_at(dot == std::string::npos ? "" : path.substr(0, dot));
    jit::Module child(
        c10::QualifiedName(absl::StrCat(
            "__torch__.fedge.Net_", absl::StrReplaceAll(path, {{".", "_"}}))),
        unit, /*shouldMangle=*/true);
    parent.register_module(path.substr(dot + 1), child);
    return modules[path] = child;
  };
  auto owner_and_leaf = [&](const std::string& name) {
    const size_t dot = name.rfind('.');
    return std::make_pair(
        module_at(dot == std::string::npos ? "" : name.substr(0, dot)),
        name.substr(dot + 1));
  };
  for (const auto& p : net.named_parameters()) {
    auto [owner, leaf] = owner_and_leaf(p.key());
    owner.register_parameter(leaf, p.value(), /*is_buffer=*/false);
  }
  for (const auto& b : net.named_buffers()) {
    auto [owner, leaf] = owner_and_leaf(b.key());
    owner.register_buffer(leaf, b.value());
  }
  return modules.at("");
}

// The value of an int[] the graph computes from constants (a constant or
// a prim::ListConstruct of constants).
c10::optional<std::vector<int64_t>> ConstantInts(jit::Value* value) {
  c10::optional<c10::IValue> constant = jit::toIValue(value);
  if (constant.has_value()) {
    if (!constant->isIntList()) return c10::nullopt;
    return constant->toIntVector();
  }
  if (value->node()->kind() != c10::prim::ListConstruct) return c10::nullopt;
  std::vector<int64_t> ints;
  for (jit::Value* element : value->node()->inputs()) {
    c10::optional<c10::IValue> v = jit::toIValue(element);
    if (!v.has_value() || !v->isInt()) return c10::nullopt;
    ints.push_back(v->toInt());
  }
  return ints;
}

// A traced reshape records its target shape as constants, the batch
// included (LibTorch's sizes are plain integers). Makes the leading
// dimension of every view / reshape to a constant shape starting with
// `batch` the input's own size(0).
void FreeBatchDimension(jit::Graph& graph, int64_t batch) {
  for (jit::Node* node : graph.nodes()) {
    if (node->kind() != c10::aten::view && node->kind() != c10::aten::reshape) {
      continue;
    }
    c10::optional<std::vector<int64_t>> size = ConstantInts(node->input(1));
    if (!size.has_value() || size->empty() || (*size)[0] != batch) continue;
    const std::vector<int64_t>& dims = *size;
    jit::WithInsertPoint guard(node);
    std::vector<jit::Value*> elements = {
        graph.insert(c10::aten::size, {node->input(0), int64_t{0}})};
    for (size_t i = 1; i < dims.size(); ++i) {
      elements.push_back(graph.insertConstant(dims[i]));
    }
    node->replaceInput(
        1, graph.insertNode(graph.createList(c10::IntType::get(), elements))
               ->output());
  }
  jit::EliminateDeadCode(graph.block());
}

// LibTorch's pooling functions take `max_pool2d(x, 2)` as the one-element
// lists [2], which the trace records; ONNX wants one value per spatial
// dimension (PyTorch records [2, 2]). Expands them.
void ExpandPoolingLists(jit::Graph& graph) {
  for (jit::Node* node : graph.nodes()) {
    if (node->kind() != c10::aten::max_pool2d &&
        node->kind() != c10::aten::avg_pool2d) {
      continue;
    }
    // kernel_size, stride, padding (and dilation for max_pool2d).
    for (size_t i = 1; i <= 4 && i < node->inputs().size(); ++i) {
      c10::optional<std::vector<int64_t>> v = ConstantInts(node->input(i));
      if (!v.has_value() || v->size() != 1) continue;
      jit::WithInsertPoint guard(node);
      node->replaceInput(
          i, graph.insertConstant(std::vector<int64_t>{(*v)[0], (*v)[0]}));
    }
  }
  jit::EliminateDeadCode(graph.block());
}

// Records net.forward on a batch into a `forward` method of `module`.
void Trace(Net& net, const ModelSpec& spec, jit::Module& module) {
  const torch::Tensor x = torch::rand(BatchShape(kTraceBatch, spec));
  auto traced = jit::tracer::trace(
      {x},
      [&net](jit::Stack inputs) -> jit::Stack {
        return {net.forward(inputs[0].toTensor())};
      },
      [](const torch::autograd::Variable&) { return std::string(); },
      /*strict=*/true, /*force_outplace=*/false, &module);
  std::shared_ptr<jit::Graph> graph = traced.first->graph;
  FreeBatchDimension(*graph, kTraceBatch);
  // LibTorch's linear layers run addmm(bias, x, weight.t()), which the
  // trace records as such; PyTorch records aten::linear, which its ONNX
  // exporter and int8 quantization handle best.
  jit::FuseLinear(graph);
  ExpandPoolingLists(*graph);
  jit::Function* forward =
      module._ivalue()->compilation_unit()->create_function(
          c10::QualifiedName(*module.type()->name(), "forward"), graph);
  module.type()->addMethod(forward);
}

// Replaces the tensors of `module` (a MirrorAsScript tree) by those of
// `state` with the same names.
void SetTensors(jit::Module& module, const ModelState& state) {
  for (const TensorBuffer& t : state.tensors()) {
    const std::string& name = t.name();
    const size_t dot = name.rfind('.');
    jit::Module owner = module;
    if (dot != std::string::npos) {
      for (absl::string_view part :
           absl::StrSplit(absl::string_view(name).substr(0, dot), '.')) {
        owner = owner.attr(std::string(part)).toModule();
      }
    }
    const std::string leaf = name.substr(dot + 1);
    const torch::Tensor value = ViewAsTensor(t).clone();
    if (owner.hasattr(leaf) &&
        owner.type()->is_parameter(*owner.type()->findAttributeSlot(leaf))) {
      owner.register_parameter(leaf, value, /*is_buffer=*/false);
    } else {
      owner.register_buffer(leaf, value);
    }
  }
}

// OK when `module` computes what `net` does on batches of other sizes.
absl::Status CheckTrace(Net& net, const ModelSpec& spec, jit::Module& module) {
  for (int64_t batch : kCheckBatches) {
    const torch::Tensor x = torch::randn(BatchShape(batch, spec));
    const torch::Tensor want = net.forward(x);
    const torch::Tensor got = module.forward({x}).toTensor();
    const double scale = 1 + want.abs().max().item<double>();
    const double diff = got.sizes() == want.sizes()
                            ? (got - want).abs().max().item<double>()
                            : -1;
    if (diff < 0 || diff > 1e-5 * scale) {
      return absl::InternalError(absl::StrCat(
          "the traced '", spec.architecture, "' does not reproduce the ",
          "network on a batch of ", batch, " (",
          diff < 0 ? "other output shape" : absl::StrCat("max diff ", diff),
          "); export it from an archive (architecture 'torchscript')"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LoadedModel> LoadModel(const ModelFiles& files) {
  const std::string spec_path = files.spec_path.empty()
                                    ? DefaultSpecPath(files.model_path)
                                    : files.spec_path;
  LoadedModel m;
  // The model first: a missing model is named, not its missing spec.
  ASSIGN_OR_RETURN(m.state, ReadModelFile(files.model_path));
  ASSIGN_OR_RETURN(m.spec, ReadSpecFile(spec_path));
  if (m.spec.architecture == "torchscript") {
    if (files.archive_path.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model spec ", spec_path,
                       " names a TorchScript archive: pass it with --archive"));
    }
    m.spec.torchscript_path = files.archive_path;
    if (!m.spec.torchscript_sha256.empty()) {
      RETURN_IF_ERROR(VerifyArchive(m.spec));
    }
  }
  ASSIGN_OR_RETURN(m.net, BuildNet(m.spec));
  RETURN_IF_ERROR(
      Annotate(ImportState(m.state, *m.net),
               absl::StrCat(files.model_path, " does not fit the ",
                            m.spec.architecture, " of ", spec_path)));
  RETURN_IF_ERROR(CallTorch([&]() -> absl::Status {
    m.net->eval();
    return absl::OkStatus();
  }));
  return m;
}

absl::StatusOr<torch::jit::Module> ToTorchScript(Net& net,
                                                 const ModelSpec& spec,
                                                 int64_t* removed_channels) {
  int64_t removed = 0;
  if (removed_channels == nullptr) removed_channels = &removed;
  *removed_channels = 0;
  if (spec.input_shape.empty()) {
    return absl::InvalidArgumentError("the model spec has no input_shape");
  }
  return CallTorch([&]() -> absl::StatusOr<jit::Module> {
    torch::NoGradGuard no_grad;
    net.eval();
    if (auto* archive = dynamic_cast<TorchScriptNet*>(&net)) {
      jit::Module module = archive->module();
      module.eval();
      return module;
    }
    jit::Module module = MirrorAsScript(net);
    Trace(net, spec, module);
    module.eval();
    ASSIGN_OR_RETURN(ModelState state, ExportState(net));
    ASSIGN_OR_RETURN(ModelState narrow,
                     RemoveZeroChannels(spec, state, removed_channels));
    if (*removed_channels > 0) SetTensors(module, narrow);
    RETURN_IF_ERROR(CheckTrace(net, spec, module));
    return module;
  });
}

absl::Status SaveTorchScript(Net& net, const ModelSpec& spec,
                             const std::string& path,
                             int64_t* removed_channels) {
  ASSIGN_OR_RETURN(jit::Module module,
                   ToTorchScript(net, spec, removed_channels));
  return Annotate(CallTorch([&]() -> absl::Status {
                    module.save(path);
                    return absl::OkStatus();
                  }),
                  "cannot write " + path);
}

absl::Status ConvertToOnnx(const std::string& torchscript_path,
                           const ModelSpec& spec, const std::string& out,
                           int opset, const PythonOptions& python) {
  if (opset < kMinOpset || opset > kMaxOpset) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--opset must be in [", kMinOpset, ", ", kMaxOpset, "], got ", opset));
  }
  return RunPythonScript(python, "export_onnx.py",
                         {"--model", torchscript_path, "--out", out,
                          "--input-shape", absl::StrJoin(spec.input_shape, ","),
                          "--opset", absl::StrCat(opset)})
      .status();
}

}  // namespace fedge::ml
