// The initial weights of a zoo model, without LibTorch.
//
// Produces exactly the tensors a zoo network exports (common/ml/model_zoo.h:
// parameters in registration order, then buffers), initialized the way
// PyTorch initializes its layers by default (weights and biases of linear
// and convolution layers ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BatchNorm
// gamma 1, beta 0, running mean 0, variance 1, counter 0), from a seed with
// fedge's platform-independent generator. The coordinator uses it so that it
// need not load LibTorch; fedge-sim uses it too, so both start from the same
// global model for the same seed. Tests check the schema against LibTorch.
#ifndef FEDGE_COMMON_ML_MODEL_INIT_H_
#define FEDGE_COMMON_ML_MODEL_INIT_H_

#include "absl/status/statusor.h"
#include "common/ml/model_spec.h"
#include "common/tensor_buffer.h"

namespace fedge::ml {

// INVALID_ARGUMENT for an unknown architecture or a shape the model cannot
// take (naming the problem as BuildModel does).
absl::StatusOr<ModelState> InitialModelState(const ModelSpec& spec);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_MODEL_INIT_H_
