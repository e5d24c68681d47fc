// Making a trained model smaller for deployment, the LibTorch side:
// fine-tuning a pruned model with its mask kept, distilling a teacher into
// a small zoo student, evaluating a network or a TorchScript module (float
// or int8), and int8 post-training quantization (through PyTorch, see
// python_tool.h). Pruning itself is torch-free (prune.h).
//
// Training here is local SGD with momentum on one dataset, in the spirit of
// a federated fine-tuning round run by the coordinator on data it holds
// (the federation's own fine-tuning rounds would use the same mask).
//
// Thread-safety: a Net or module is not thread-safe; the functions share no
// state except LibTorch's global quantized engine (SetQuantizedEngine).
#ifndef FEDGE_COMMON_ML_COMPRESS_H_
#define FEDGE_COMMON_ML_COMPRESS_H_

#include <torch/script.h>
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/data/dataset.h"
#include "common/ml/model_spec.h"
#include "common/ml/model_zoo.h"
#include "common/ml/python_tool.h"
#include "common/tensor_buffer.h"

namespace fedge::ml {

// Local SGD: `epochs` passes over the examples in a seeded random order.
struct SgdOptions {
  int epochs = 1;
  int64_t batch_size = 32;
  double learning_rate = 0.01;
  double momentum = 0.9;
  double weight_decay = 0;
  uint64_t seed = 1;  // Order of the examples.
};

struct TrainStats {
  int64_t steps = 0;
  double last_epoch_loss = 0;  // Mean loss over the last epoch.
  double seconds = 0;
};

// Trains `net` with cross-entropy on `data`, keeping the elements that
// `mask` (prune.h PruningMask: one tensor per tensor of the net's state,
// parameters first) sets to 0 at zero: they get no gradient, no momentum
// and no weight decay, and are zeroed after each step. Leaves the net in
// eval mode. INVALID_ARGUMENT for a bad option, data that does not fit the
// net, or a mask that does not fit its parameters; INTERNAL for LibTorch
// errors.
absl::StatusOr<TrainStats> FinetuneMasked(Net& net, const Dataset& data,
                                          const SgdOptions& options,
                                          const ModelState& mask);

struct DistillOptions {
  SgdOptions sgd;
  // Softening temperature T of both distributions (> 0); the loss is
  // T^2 * KL(softmax(teacher / T) || softmax(student / T)).
  double temperature = 4;
};

// Trains `student` to match `teacher`'s softened outputs on the examples
// of `data`; the labels are not used. Leaves both nets in eval mode.
// INVALID_ARGUMENT for a bad option or data the nets do not take, or nets
// of different output widths; INTERNAL for LibTorch errors.
absl::StatusOr<TrainStats> Distill(Net& teacher, Net& student,
                                   const Dataset& data,
                                   const DistillOptions& options);

// Top-1 accuracy on the first `limit` examples of `data` (0 = all), in eval
// mode. INVALID_ARGUMENT for empty data; INTERNAL for LibTorch errors.
absl::StatusOr<double> EvaluateAccuracy(Net& net, const Dataset& data,
                                        int64_t limit = 0);
absl::StatusOr<double> EvaluateAccuracy(torch::jit::Module& module,
                                        const Dataset& data, int64_t limit = 0);

// The logits [n, classes] of the first `limit` examples (0 = all),
// row-major, and n.
struct Logits {
  std::vector<float> values;
  int64_t num_examples = 0;
  int64_t num_classes = 0;
};
absl::StatusOr<Logits> ComputeLogits(Net& net, const Dataset& data,
                                     int64_t limit = 0);
absl::StatusOr<Logits> ComputeLogits(torch::jit::Module& module,
                                     const Dataset& data, int64_t limit = 0);

// Selects LibTorch's quantized kernels: "qnnpack" (ARM and x86) or
// "onednn" (x86). An int8 module must be loaded and run with the engine it
// was quantized for. INVALID_ARGUMENT for an engine this LibTorch lacks
// (listing those it has).
absl::Status SetQuantizedEngine(const std::string& engine);

// Loads a TorchScript file in eval mode. NOT_FOUND without the file;
// INVALID_ARGUMENT when it is not a TorchScript archive.
absl::StatusOr<torch::jit::Module> LoadTorchScriptFile(const std::string& path);

struct QuantizeOptions {
  std::string engine = "qnnpack";  // See SetQuantizedEngine.
  PythonOptions python;
};

// Post-training static int8 quantization of the float TorchScript file at
// `float_path` (as SaveTorchScript writes it) into `out`: PyTorch's graph
// mode quantization (torch.ao.quantization.quantize_jit, in
// scripts/quantize_int8.py) folds batch norm, quantizes weights (int8) and
// activations (uint8) with observers calibrated on `calibration`'s
// examples (features only), and saves TorchScript. `work_dir` holds the
// calibration examples meanwhile. RunPythonScript's errors; file errors.
absl::Status QuantizeInt8(const std::string& float_path,
                          const Dataset& calibration,
                          const std::string& work_dir, const std::string& out,
                          const QuantizeOptions& options);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_COMPRESS_H_
