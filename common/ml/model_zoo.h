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
// Three lightweight image networks for [C, H, W] input with H, W >= 8, cut
// down for 28x28 to 32x32 images (three stride-2 steps, no stride-2 stem);
// ModelSpec::width_multiplier scales their channels. Layouts are in
// model_spec.h; sizes at width 1 on 1x28x28 / 3x32x32 input, with 10
// classes (MACs: multiply-accumulates per example, see model_cost.h):
//   "mobilenet_v2"  MobileNetV2 (Sandler et al. 2018): inverted residual
//                   blocks (1x1 expansion, depthwise 3x3, linear 1x1
//                   bottleneck), BatchNorm, ReLU6. 231,434 / 232,010
//                   parameters, 9.5M / 12.2M MACs.
//   "shufflenet_v2" ShuffleNet V2 (Ma et al. 2018): channel split, channel
//                   shuffle, stride-2 units with both branches, BatchNorm.
//                   183,082 / 183,514 parameters, 5.3M / 6.7M MACs.
//   "squeezenet"    SqueezeNet 1.1 (Iandola et al. 2016): fire modules
//                   (squeeze 1x1, expand 1x1 and 3x3, concatenated), a 1x1
//                   classifier and global average pooling. Adds BatchNorm
//                   after each convolution but the classifier (the original
//                   has none and did not train at usual learning rates
//                   here). 420,202 / 421,354 parameters, 14.5M / 18.6M MACs.
// Dropout is left out of all three.
//
// Every network maps a float batch [N, C, H, W] to logits [N, num_classes];
// MLPs flatten their input. A Net is a torch::nn::Module; one instance is not
// thread-safe (give each thread its own). Its tensors are exactly those of
// InitialModelState (model_init.h), which builds them without LibTorch from
// the same layer list (model_cost.h).
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
