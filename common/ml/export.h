// Exporting a fedge model for deployment outside fedge: TorchScript (for
// PyTorch and LibTorch, the way to mobile runtimes) and ONNX (opset 13+,
// the way to OpenCV DNN, ONNX Runtime, TensorRT, NCNN, CoreML, TFLite).
//
// A model is a model file and its spec (model_files.h) and, for
// architecture "torchscript", the archive the spec names. Its TorchScript
// form runs in inference mode (batch norm uses its running statistics):
//   - a zoo network is traced: its LibTorch module, with the model's
//     weights, is recorded on a batch of examples into a TorchScript module
//     whose parameters and buffers carry the fedge names ("fc1.weight",
//     "block3.dw_bn.running_mean", ...), so the file is also a valid fedge
//     "torchscript" archive. The batch dimension stays free (shapes that
//     depend on it are recomputed from the input) and the trace is checked
//     against the network on batches of other sizes. Channels that
//     structured pruning zeroed in a "cnn" are left out;
//   - an archive is saved again with the model's weights in it.
// ONNX: the TorchScript file is converted by scripts/export_onnx.py with
// PyTorch's exporter (python_tool.h), input "input" [batch, input_shape...]
// and output "logits" [batch, num_classes], the batch axis dynamic, and
// checked with onnx.checker.
//
// Thread-safety: a Net is not thread-safe; the functions share no state.
#ifndef FEDGE_COMMON_ML_EXPORT_H_
#define FEDGE_COMMON_ML_EXPORT_H_

#include <torch/script.h>
#include <torch/torch.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/ml/model_spec.h"
#include "common/ml/model_zoo.h"
#include "common/ml/python_tool.h"
#include "common/tensor_buffer.h"

namespace fedge::ml {

struct ModelFiles {
  std::string model_path;    // The model (.fedge).
  std::string spec_path;     // Its spec; "" = DefaultSpecPath(model_path).
  std::string archive_path;  // Architecture "torchscript": the archive.
};

struct LoadedModel {
  ModelSpec spec;
  ModelState state;
  std::shared_ptr<Net> net;  // Holds `state`, in eval mode.
};

// Reads the model, then its spec, and builds the network with its weights.
// The errors of ReadModelFile (NOT_FOUND naming a missing model, whether
// or not its spec exists), then ReadSpecFile's; for a "torchscript" spec,
// INVALID_ARGUMENT without archive_path and DATA_LOSS when the archive is
// not the one the spec names (VerifyArchive); BuildNet's errors;
// INVALID_ARGUMENT, naming both files, when the model does not fit the
// network.
absl::StatusOr<LoadedModel> LoadModel(const ModelFiles& files);

// The network with its weights as a TorchScript module in eval mode (see
// above). A "cnn" whose structured pruning zeroed whole channels is
// exported narrower, without them (prune.h RemoveZeroChannels): the same
// logits from smaller files; `removed_channels` (optional) receives how
// many were removed. INVALID_ARGUMENT when the spec's input shape is empty;
// INTERNAL when tracing fails or the trace does not reproduce the network
// on a batch of another size (the largest difference).
absl::StatusOr<torch::jit::Module> ToTorchScript(
    Net& net, const ModelSpec& spec, int64_t* removed_channels = nullptr);

// ToTorchScript, saved to `path` (a .pt file PyTorch's torch.jit.load and
// LibTorch's torch::jit::load read). Its errors, and INTERNAL naming the
// file when it cannot be written.
absl::Status SaveTorchScript(Net& net, const ModelSpec& spec,
                             const std::string& path,
                             int64_t* removed_channels = nullptr);

// Converts the TorchScript file at `torchscript_path`, which takes
// examples of the spec's input shape, to ONNX at `out` with `opset` (13 to
// 17, what PyTorch 1.13 writes). INVALID_ARGUMENT for another opset;
// RunPythonScript's errors (INTERNAL with the exporter's message when the
// model has an operator ONNX cannot express).
absl::Status ConvertToOnnx(const std::string& torchscript_path,
                           const ModelSpec& spec, const std::string& out,
                           int opset, const PythonOptions& python);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_EXPORT_H_
