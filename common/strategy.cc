#include "common/strategy.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace fedge {

absl::Status FedAvgStrategy::Validate(const FedAvgOptions& options) {
  if (!(options.server_learning_rate > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("server_learning_rate must be > 0, got ",
                     options.server_learning_rate));
  }
  if (!(options.server_momentum >= 0 && options.server_momentum < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server_momentum must be in [0, 1), got ", options.server_momentum));
  }
  return absl::OkStatus();
}

absl::Status FedAvgStrategy::Apply(const ModelState& mean_delta,
                                   ModelState& global) {
  RETURN_IF_ERROR(CheckSameSchema(global, mean_delta));
  const float lr = static_cast<float>(options_.server_learning_rate);
  if (options_.server_momentum == 0) {
    return AddScaledInPlace(global, mean_delta, lr);
  }
  if (!velocity_.has_value()) {
    velocity_ = mean_delta.Clone();
  } else {
    const float m = static_cast<float>(options_.server_momentum);
    for (size_t i = 0; i < velocity_->size(); ++i) {
      TensorBuffer& v = velocity_->mutable_tensor(i);
      if (v.dtype() != DType::kFloat32) continue;
      absl::Span<float> vv = v.mutable_floats();
      absl::Span<const float> d = mean_delta.tensor(i).floats();
      for (size_t j = 0; j < vv.size(); ++j) vv[j] = m * vv[j] + d[j];
    }
  }
  return AddScaledInPlace(global, *velocity_, lr);
}

absl::Status FedAvgStrategy::ApplyFrom(const WeightedMeanAccumulator& sum,
                                       ModelState& global) {
  if (options_.server_momentum == 0) {
    return sum.AddMeanTo(global, options_.server_learning_rate);
  }
  ASSIGN_OR_RETURN(ModelState mean, sum.Mean());
  return Apply(mean, global);
}

}  // namespace fedge
