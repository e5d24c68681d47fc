#include "common/update_limits.h"

#include <cmath>
#include <optional>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/dp.h"
#include "common/robust_aggregation.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

// The payload that carries a refusal's reason label.
constexpr absl::string_view kReasonUrl = "type.fedge.dev/fedge.UpdateLimit";

absl::Status Refusal(absl::string_view reason, std::string message) {
  absl::Status s = absl::InvalidArgumentError(message);
  s.SetPayload(kReasonUrl, absl::Cord(reason));
  return s;
}

constexpr const char* kField = "strategy.update_limits.";

// A count of examples, in full ("1099511627776", not "1.09951e+12").
std::string Count(double n) { return absl::StrFormat("%.17g", n); }

}  // namespace

absl::Status CheckUpdateClaims(const UpdateLimits& limits,
                               int64_t declared_examples, double num_examples,
                               const TrainMetrics& metrics) {
  if (declared_examples > 0 && num_examples > declared_examples) {
    return Refusal(kLimitWeightDeclared,
                   absl::StrCat("num_examples ", Count(num_examples),
                                " exceeds the ", declared_examples,
                                " examples the agent declared at join (an "
                                "update weighs at most what its agent "
                                "holds; join again to declare more)"));
  }
  if (limits.max_examples_per_update > 0 &&
      num_examples > limits.max_examples_per_update) {
    return Refusal(
        kLimitWeightMax,
        absl::StrCat(
            "num_examples ", Count(num_examples), " exceeds the limit ", kField,
            "max_examples_per_update = ", limits.max_examples_per_update));
  }
  const bool in_range = std::isfinite(metrics.loss) && metrics.loss >= 0 &&
                        std::isfinite(metrics.accuracy) &&
                        metrics.accuracy >= 0 && metrics.accuracy <= 1 &&
                        std::isfinite(metrics.seconds) &&
                        metrics.seconds >= 0 && metrics.num_steps >= 0;
  if (!in_range) {
    return Refusal(
        kLimitMetrics,
        absl::StrCat("metrics out of range: loss ", metrics.loss, ", accuracy ",
                     metrics.accuracy, ", train_seconds ", metrics.seconds,
                     ", num_steps ", metrics.num_steps,
                     " (loss must be finite and >= 0, accuracy in [0, 1], "
                     "train_seconds finite and >= 0, num_steps >= 0)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> BoundUpdateNorm(const UpdateLimits& limits,
                                       ModelState& delta) {
  const double bound = limits.update_norm_bound;
  const double dp_clip = limits.dp_clip_norm;
  if (bound <= 0 && dp_clip <= 0) return 1.0;
  double norm = L2Norm(delta);
  if (!std::isfinite(norm)) return 1.0;
  double factor = 1.0;
  if (bound > 0 && norm > bound) {
    if (!limits.clip) {
      return Refusal(kLimitNorm, absl::StrCat("the update's L2 norm ", norm,
                                              " exceeds the limit ", kField,
                                              "update_norm_bound = ", bound));
    }
    // ClipToL2Norm computes the norm again: scale here with the one we have.
    factor = bound / norm;
    for (TensorBuffer& t : delta.mutable_tensors()) {
      if (t.dtype() != DType::kFloat32) continue;
      for (float& x : t.mutable_floats()) x = static_cast<float>(x * factor);
    }
    norm = bound;
  }
  if (dp_clip > 0 && norm > dp_clip) {
    // DP's clip keeps a safety margin so rounding never leaves it above.
    ClipUpdate(delta, dp_clip);
    factor *= dp_clip / norm;
  }
  return factor;
}

absl::StatusOr<double> ApplyUpdateLimits(const UpdateLimits& limits,
                                         const FitResult& result) {
  RETURN_IF_ERROR(CheckUpdateClaims(limits, result.declared_examples,
                                    result.num_examples, result.metrics));
  if (result.delta == nullptr) return 1.0;
  return BoundUpdateNorm(limits, *result.delta);
}

std::string UpdateLimitReason(const absl::Status& status) {
  auto reason = status.GetPayload(kReasonUrl);  // absl::optional<Cord>.
  return reason.has_value() ? std::string(*reason) : std::string();
}

}  // namespace fedge
