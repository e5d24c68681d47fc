// The layers of a zoo model and what they cost, without LibTorch.
//
// ModelLayers is the torch-free definition of every zoo architecture: its
// layers with weights (linear, convolution, batch norm) in the order the
// LibTorch network (model_zoo.h) registers them, under the same names, with
// their sizes. InitialModelState (model_init.h) builds the initial tensors
// from it, and ComputeModelCost counts parameters and multiply-accumulates.
// Tests check it against the LibTorch networks.
//
// MACs are the multiply-accumulates of one forward pass of one example:
// a convolution costs out_channels * out_height * out_width *
// (in_channels / groups) * kernel^2, a linear layer in * out. Biases, batch
// norm, activations, pooling, residual additions, concatenations and
// channel shuffles are not counted.
//
// Plain values and pure functions: thread-safe.
#ifndef FEDGE_COMMON_ML_MODEL_COST_H_
#define FEDGE_COMMON_ML_MODEL_COST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ml/model_spec.h"

namespace fedge::ml {

// One layer with weights. Its tensors are "<name>.weight" and (with bias)
// "<name>.bias"; a batch norm layer also has the buffers
// "<name>.running_mean", "<name>.running_var" and "<name>.num_batches_tracked".
struct ModelLayer {
  enum class Kind { kLinear, kConv, kBatchNorm };
  Kind kind = Kind::kLinear;
  std::string name;  // e.g. "fc1", "block3.dw", "unit2.branch2_pw1_bn".
  // Linear: input and output features. Conv: input and output channels.
  // BatchNorm: channels (in == out).
  int64_t in = 0;
  int64_t out = 0;
  // Conv only: square kernel size, stride, zero padding and groups
  // (groups == in == out for a depthwise convolution).
  int64_t kernel = 1;
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t groups = 1;
  bool bias = true;  // Linear and conv: whether there is a bias.
  // Conv: spatial size of the output; 1 x 1 for the other kinds.
  int64_t out_height = 1;
  int64_t out_width = 1;

  // Trainable elements: weight and bias (batch norm: gamma and beta).
  int64_t parameters() const;
  // Multiply-accumulates of one forward pass of one example (0 for batch
  // norm).
  int64_t macs() const;
};

// The layers of the network `spec` names, in registration order.
// Returns CheckModelSpec's INVALID_ARGUMENT errors.
absl::StatusOr<std::vector<ModelLayer>> ModelLayers(const ModelSpec& spec);

struct ModelCost {
  // Trainable elements (what CountParameters counts for the LibTorch
  // network); batch norm running statistics are not included.
  int64_t parameters = 0;
  // Multiply-accumulates of one forward pass of one example (see above).
  int64_t macs = 0;
};

// Parameters and MACs of the network `spec` names.
// Returns CheckModelSpec's INVALID_ARGUMENT errors.
absl::StatusOr<ModelCost> ComputeModelCost(const ModelSpec& spec);

// CheckModelSpec's last check (call CheckModelSpec): OK when the sizes can
// be counted; INVALID_ARGUMENT for an input dimension < 1, an input of more
// than kMaxInputElements elements, a hidden width outside [1, 2^31), 2^31
// classes or more, or a network whose parameter or MAC count (of a layer or
// in total) does not fit in int64. Expects the architecture and input rank
// checks to have passed.
inline constexpr int64_t kMaxInputElements = int64_t{1} << 32;
absl::Status CheckModelSize(const ModelSpec& spec);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_MODEL_COST_H_
