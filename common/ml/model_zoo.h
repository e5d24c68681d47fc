// The built-in model zoo: networks by name, for LibTorch.
//
//   "logreg"     multinomial logistic regression (one linear layer)
//   "2nn"        McMahan et al. 2017's MLP: 784-200-200-10, ReLU (199,210
//                parameters on MNIST)
//   "mlp"        an MLP with the hidden widths of ModelSpec::hidden_units
//   "cnn"        McMahan et al. 2017's CNN: 5x5 conv 32, 2x2 max-pool, 5x5
//                conv 64, 2x2 max-pool, fc 512, fc 10, 'same' padding, ReLU
//                (1,663,370 parameters on MNIST)
//   "mobile_cnn" a small depthwise-separable CNN for constrained devices
//
// Every network maps a float batch [N, C, H, W] to logits [N, num_classes];
// MLPs flatten their input. A Net is a torch::nn::Module; one instance is not
// thread-safe (give each thread its own).
#ifndef FEDGE_COMMON_ML_MODEL_ZOO_H_
#define FEDGE_COMMON_ML_MODEL_ZOO_H_

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ml/model_spec.h"

namespace fedge::ml {

class Net : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
};

// Builds the network named by `spec`, initialized from spec.init_seed.
// INVALID_ARGUMENT for an unknown architecture (listing the known ones) or
// a shape it cannot take (e.g. a CNN on a flat input).
absl::StatusOr<std::shared_ptr<Net>> BuildModel(const ModelSpec& spec);

// Number of trainable parameters.
int64_t CountParameters(const torch::nn::Module& module);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_MODEL_ZOO_H_
