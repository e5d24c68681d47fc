// "Bring your own model": a network defined in PyTorch and saved with
// torch.jit.script or torch.jit.trace, trained by fedge exactly like a zoo
// network.
//
// TorchScriptNet loads an archive and presents it as a zoo Net (a
// torch::nn::Module): forward(x) runs the archive's forward, train(bool)
// switches its mode, and the archive's parameters and buffers are registered
// (the same tensors, not copies) under their dotted names in a mirror of the
// archive's module tree. So TorchTrainer, the evaluator, prediction and the
// one converter (torch_converters.h) handle it unchanged, and its state reads
// like a zoo model's: parameters in named_parameters() order, then buffers in
// named_buffers() order (BatchNorm's running_mean / running_var are float32,
// aggregated by weighted mean; num_batches_tracked an int64 counter, max).
//
// What an archive must provide, checked by Create:
//   - a method `forward` taking one Tensor (further arguments need defaults)
//     and returning logits: for a float32 batch of zeros [2, input_shape...]
//     a float32 Tensor [2, num_classes];
//   - float32 parameters, float32 or int64 buffers.
// Buffers must be updated in place (as torch.nn's layers do): a forward that
// rebinds a buffer attribute to a new tensor leaves the registered one stale.
// A traced module keeps the control flow of the mode it was traced in, so a
// model with BatchNorm or dropout should be scripted.
//
// Trust: archives are code. Load only archives the operator chose (agents
// verify the coordinator's SHA-256 before loading, see model_spec.h).
//
// Thread-safety: one TorchScriptNet is not thread-safe (like any Net); give
// each thread its own (each Create loads its own copy).
#ifndef FEDGE_COMMON_ML_TORCHSCRIPT_MODEL_H_
#define FEDGE_COMMON_ML_TORCHSCRIPT_MODEL_H_

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ml/model_spec.h"
#include "common/ml/model_zoo.h"
#include "common/tensor_buffer.h"

namespace fedge::ml {

class TorchScriptNet final : public Net {
 public:
  struct Options {
    std::string path;                  // The archive (a .pt file).
    std::vector<int64_t> input_shape;  // Shape of one example, e.g. [C,H,W].
    int64_t num_classes = 0;           // Logits per example (>= 2).
  };

  // Loads and checks the archive. Returns, naming the file:
  //   INVALID_ARGUMENT  empty path, num_classes < 2, an input shape with a
  //                     dimension < 1; a file that is not a TorchScript
  //                     archive (corrupt, truncated); no `forward`, or one
  //                     that does not take one Tensor; a forward that throws
  //                     on the probe batch or returns anything but float32
  //                     [2, num_classes] (expected vs found); a parameter
  //                     or buffer of another dtype (naming the tensor);
  //   NOT_FOUND         no file at `path` (other errno codes: see
  //                     common/file_util.h ErrnoStatus).
  // The probe runs in eval mode without gradients and leaves the buffers
  // as they were; the net is returned in training mode.
  static absl::StatusOr<std::shared_ptr<TorchScriptNet>> Create(
      const Options& options);

  // Runs the archive's forward. Throws (c10::Error, std::exception) like any
  // LibTorch call; callers wrap it in CallTorch (torch_status.h).
  torch::Tensor forward(torch::Tensor x) override;
  // Sets training mode on this module and on the archive's modules.
  void train(bool on = true) override;

  const std::string& path() const { return path_; }
  torch::jit::Module& module() { return module_; }

 private:
  TorchScriptNet(std::string path, torch::jit::Module module);
  // Registers the archive's tensors in a mirror of its module tree.
  absl::Status Mirror();
  // The mirror's modules by the archive's module names ("" is this one).
  std::map<std::string, torch::nn::Module*> MirrorModules();
  // OK when this module lists its tensors as `expected` (the archive's
  // order: parameters, then buffers).
  absl::Status CheckOrder(const std::vector<std::string>& expected) const;
  // Runs forward once on zeros and checks the logits' dtype and shape.
  absl::Status Probe(const Options& options);

  std::string path_;
  torch::jit::Module module_;
};

// The network `spec` names: the archive at spec.torchscript_path for
// architecture "torchscript" (TorchScriptNet::Create's statuses), else the
// zoo's (BuildModel's statuses).
absl::StatusOr<std::shared_ptr<Net>> BuildNet(const ModelSpec& spec);

// The global model of round 0 for `spec`: an archive's own weights for
// architecture "torchscript" (TorchScriptNet::Create's statuses, and
// INVALID_ARGUMENT for a non-finite value), else the zoo's seeded
// initializer (model_init.h, as the coordinator uses it).
absl::StatusOr<ModelState> InitialState(const ModelSpec& spec);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_TORCHSCRIPT_MODEL_H_
