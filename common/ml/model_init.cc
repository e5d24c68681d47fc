#include "common/ml/model_init.h"

#include <cmath>
#include <string>
#include <vector>

#include "common/ml/model_cost.h"
#include "common/random.h"
#include "common/status_macros.h"

namespace fedge::ml {
namespace {

// Collects a model's tensors: parameters and buffers in separate lists, in
// registration order, as torch::nn::Module exports them.
class Builder {
 public:
  explicit Builder(uint64_t seed) : rng_(seed) {}

  absl::Status Linear(const std::string& name, int64_t in, int64_t out) {
    return Uniform(name, {out, in}, in, /*bias=*/true);
  }
  absl::Status Conv(const std::string& name, int64_t in, int64_t out, int64_t k,
                    int64_t groups, bool bias) {
    return Uniform(name, {out, in / groups, k, k}, (in / groups) * k * k, bias);
  }
  absl::Status BatchNorm(const std::string& name, int64_t channels) {
    RETURN_IF_ERROR(Filled(params_, name + ".weight", channels, 1.0f));
    RETURN_IF_ERROR(Filled(params_, name + ".bias", channels, 0.0f));
    RETURN_IF_ERROR(Filled(buffers_, name + ".running_mean", channels, 0.0f));
    RETURN_IF_ERROR(Filled(buffers_, name + ".running_var", channels, 1.0f));
    ASSIGN_OR_RETURN(
        TensorBuffer n,
        TensorBuffer::Zeros(name + ".num_batches_tracked", DType::kInt64, {}));
    buffers_.push_back(std::move(n));
    return absl::OkStatus();
  }
  ModelState Finish() {
    for (TensorBuffer& b : buffers_) params_.push_back(std::move(b));
    return ModelState(std::move(params_));
  }

 private:
  absl::Status Uniform(const std::string& name, std::vector<int64_t> shape,
                       int64_t fan_in, bool bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    const int64_t out = shape[0];
    ASSIGN_OR_RETURN(TensorBuffer w,
                     TensorBuffer::Zeros(name + ".weight", DType::kFloat32,
                                         std::move(shape)));
    for (float& v : w.mutable_floats()) v = Draw(bound);
    params_.push_back(std::move(w));
    if (!bias) return absl::OkStatus();
    ASSIGN_OR_RETURN(
        TensorBuffer b,
        TensorBuffer::Zeros(name + ".bias", DType::kFloat32, {out}));
    for (float& v : b.mutable_floats()) v = Draw(bound);
    params_.push_back(std::move(b));
    return absl::OkStatus();
  }
  static absl::Status Filled(std::vector<TensorBuffer>& list,
                             const std::string& name, int64_t n, float value) {
    ASSIGN_OR_RETURN(TensorBuffer t,
                     TensorBuffer::Zeros(name, DType::kFloat32, {n}));
    for (float& v : t.mutable_floats()) v = value;
    list.push_back(std::move(t));
    return absl::OkStatus();
  }
  float Draw(double bound) {
    return static_cast<float>((2 * rng_.UniformDouble() - 1) * bound);
  }

  DeterministicRng rng_;
  std::vector<TensorBuffer> params_, buffers_;
};

absl::Status Add(Builder& b, const ModelLayer& layer) {
  switch (layer.kind) {
    case ModelLayer::Kind::kLinear:
      return b.Linear(layer.name, layer.in, layer.out);
    case ModelLayer::Kind::kConv:
      return b.Conv(layer.name, layer.in, layer.out, layer.kernel, layer.groups,
                    layer.bias);
    case ModelLayer::Kind::kBatchNorm:
      return b.BatchNorm(layer.name, layer.out);
  }
  return absl::InternalError("unknown layer kind");
}

}  // namespace

absl::StatusOr<ModelState> InitialModelState(const ModelSpec& spec) {
  ASSIGN_OR_RETURN(const std::vector<ModelLayer> layers, ModelLayers(spec));
  Builder b(MixSeed({spec.init_seed, 0x1417}));
  for (const ModelLayer& layer : layers) RETURN_IF_ERROR(Add(b, layer));
  return b.Finish();
}

}  // namespace fedge::ml
