#include "common/ml/model_init.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

absl::Status Mlp(Builder& b, int64_t in, const std::vector<int64_t>& hidden,
                 int64_t out) {
  int64_t prev = in;
  for (size_t i = 0; i <= hidden.size(); ++i) {
    const int64_t next = i < hidden.size() ? hidden[i] : out;
    RETURN_IF_ERROR(b.Linear(absl::StrCat("fc", i + 1), prev, next));
    prev = next;
  }
  return absl::OkStatus();
}

absl::Status FedAvgCnn(Builder& b, const ModelSpec& s) {
  const auto& in = s.input_shape;
  RETURN_IF_ERROR(b.Conv("conv1", in[0], 32, 5, 1, true));
  RETURN_IF_ERROR(b.Conv("conv2", 32, 64, 5, 1, true));
  RETURN_IF_ERROR(b.Linear("fc1", (in[1] / 4) * (in[2] / 4) * 64, 512));
  return b.Linear("fc2", 512, s.num_classes);
}

absl::Status MobileCnn(Builder& b, const ModelSpec& s) {
  RETURN_IF_ERROR(b.Conv("stem", s.input_shape[0], 16, 3, 1, false));
  RETURN_IF_ERROR(b.BatchNorm("stem_bn", 16));
  const int64_t widths[] = {16, 32, 64, 128};
  for (int i = 0; i < 3; ++i) {
    const std::string dw = absl::StrCat("dw", i + 1);
    const std::string pw = absl::StrCat("pw", i + 1);
    RETURN_IF_ERROR(b.Conv(dw, widths[i], widths[i], 3, widths[i], false));
    RETURN_IF_ERROR(b.BatchNorm(dw + "_bn", widths[i]));
    RETURN_IF_ERROR(b.Conv(pw, widths[i], widths[i + 1], 1, 1, false));
    RETURN_IF_ERROR(b.BatchNorm(pw + "_bn", widths[i + 1]));
  }
  return b.Linear("fc", 128, s.num_classes);
}

}  // namespace

absl::StatusOr<ModelState> InitialModelState(const ModelSpec& spec) {
  RETURN_IF_ERROR(CheckModelSpec(spec));
  Builder b(MixSeed({spec.init_seed, 0x1417}));
  int64_t in = 1;
  for (int64_t d : spec.input_shape) in *= d;
  const std::string& arch = spec.architecture;
  if (arch == "logreg") {
    RETURN_IF_ERROR(Mlp(b, in, {}, spec.num_classes));
  } else if (arch == "2nn") {
    RETURN_IF_ERROR(Mlp(b, in, {200, 200}, spec.num_classes));
  } else if (arch == "mlp") {
    RETURN_IF_ERROR(Mlp(b, in, spec.hidden_units, spec.num_classes));
  } else if (arch == "cnn") {
    RETURN_IF_ERROR(FedAvgCnn(b, spec));
  } else {
    RETURN_IF_ERROR(MobileCnn(b, spec));
  }
  return b.Finish();
}

}  // namespace fedge::ml
