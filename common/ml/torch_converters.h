// The one converter between torch::Tensor / torch::nn::Module and the core's
// TensorBuffer / ModelState. Everything that crosses from the ML layer into
// aggregation, checkpoints or the wire goes through here.
//
// A module's state is its named parameters followed by its named buffers, in
// registration order (the same order on every process for the same zoo
// model). Stateless; thread-safe as long as the module is not shared.
#ifndef FEDGE_COMMON_ML_TORCH_CONVERTERS_H_
#define FEDGE_COMMON_ML_TORCH_CONVERTERS_H_

#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor_buffer.h"

namespace fedge::ml {

// Copies `tensor` (float32 or int64, any device/layout) into a TensorBuffer
// named `name`. INVALID_ARGUMENT for other dtypes.
absl::StatusOr<TensorBuffer> ToTensorBuffer(const std::string& name,
                                            const torch::Tensor& tensor);

// A CPU tensor viewing `buffer`'s memory (no copy). The buffer must outlive
// the tensor and is not modified through it unless the caller writes to it.
torch::Tensor ViewAsTensor(const TensorBuffer& buffer);

// Views of the masks (common/ml/prune.h PruningMask: a float32 tensor per
// tensor of the state, parameters first, 0 where an element must stay
// zero) of `params`: one per parameter, undefined where the mask masks
// nothing. INVALID_ARGUMENT when the mask does not fit the parameters. The
// mask must outlive the views.
absl::StatusOr<std::vector<torch::Tensor>> ParameterMasks(
    const std::vector<torch::Tensor>& params, const ModelState& mask);

// Drops the gradients of `params` (each becomes undefined) before the next
// backward pass, which then hands its fresh gradients over instead of
// adding them to zeroed ones: the same values, without a zero-fill and an
// add over every parameter each step.
void ClearGradients(std::vector<torch::Tensor>& params);

// One optimizer step that keeps the masked elements at zero: their
// gradients are zeroed before it (no momentum builds up) and the elements
// after it (weight decay cannot move them). `masks` as ParameterMasks (or
// empty: a plain step). Call with gradients computed and grad mode off.
void MaskedStep(torch::optim::Optimizer& optimizer,
                std::vector<torch::Tensor>& params,
                const std::vector<torch::Tensor>& masks);

// The module's parameters and buffers, copied.
absl::StatusOr<ModelState> ExportState(const torch::nn::Module& module);

// Copies `state` into the module's parameters and buffers. INVALID_ARGUMENT
// (module unchanged) when names, dtypes or shapes differ.
absl::Status ImportState(const ModelState& state, torch::nn::Module& module);

// The module's tensors (parameters then buffers) with their names, in the
// same order as ExportState.
std::vector<std::pair<std::string, torch::Tensor>> StateTensors(
    const torch::nn::Module& module);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_TORCH_CONVERTERS_H_
