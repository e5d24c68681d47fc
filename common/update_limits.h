// Poisoning limits (DESIGN.md "Security and privacy", docs/security.md):
// what one update may claim and carry, checked before it changes anything,
// whatever the strategy. Shared by fedge-coordinator and fedge-sim through
// the round accumulator (server/round_accumulator.h); the coordinator also
// checks an upload's claims before it reads its bytes.
//
//   weight    num_examples <= what the agent declared at join (when it
//             declared a count) and <= max_examples_per_update (when set).
//   metrics   loss finite and >= 0, accuracy in [0, 1], seconds finite and
//             >= 0, num_steps >= 0.
//   norm      the L2 norm of the delta's float32 values <= update_norm_bound
//             (when set): above it the update is refused, or scaled down to
//             the bound in place (clip).
//   dp clip   central differential privacy (common/dp.h): the delta is then
//             clipped to dp_clip_norm (ClipUpdate), whatever the agent did:
//             the coordinator trusts no agent to have clipped.
//
// Each refusal is INVALID_ARGUMENT (the same bytes will never be accepted:
// an agent drops the update) whose message names the limit and its config
// field, and carries a reason label (UpdateLimitReason) for the metrics.
// Pure functions of their arguments; thread-safe. No gRPC, no LibTorch.
#ifndef FEDGE_COMMON_UPDATE_LIMITS_H_
#define FEDGE_COMMON_UPDATE_LIMITS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/local_trainer.h"
#include "common/strategy.h"
#include "common/tensor_buffer.h"

namespace fedge {

// The limits, from StrategyConfig.update_limits (common/fl_config.h
// converts and validates them). The defaults here are "no limit"; the
// config's defaults are in config.proto.
struct UpdateLimits {
  // Largest weight (examples) one update may claim; 0 = no maximum.
  int64_t max_examples_per_update = 0;
  // Bound on the L2 norm of an update's delta (float32 values); 0 = none.
  double update_norm_bound = 0;
  // Above the bound: refuse the update, or clip it to the bound.
  bool clip = false;
  // Central DP: every update is clipped to this L2 norm (never refused);
  // 0 = no DP clipping. The round accumulator sets it from the strategy's
  // StrategyOptions::dp.
  double dp_clip_norm = 0;
};

// Reason labels of the refusals (fedge_updates_total{reason}).
inline constexpr absl::string_view kLimitWeightDeclared = "weight_declared";
inline constexpr absl::string_view kLimitWeightMax = "weight_max";
inline constexpr absl::string_view kLimitMetrics = "metrics";
inline constexpr absl::string_view kLimitNorm = "norm";

// The checks that need no update values: the weight `num_examples` against
// `declared_examples` (what the agent declared at join; 0 = nothing) and
// the maximum, and the metrics' ranges. OK or INVALID_ARGUMENT (reason
// weight_declared, weight_max or metrics).
absl::Status CheckUpdateClaims(const UpdateLimits& limits,
                               int64_t declared_examples, double num_examples,
                               const TrainMetrics& metrics);

// The norm bound on `delta`. Without a bound, or for a delta within it,
// changes nothing and returns 1. Above it: INVALID_ARGUMENT (reason norm)
// when refusing; when clipping, scales every float32 value in place by
// bound / norm and returns that factor. Then, with dp_clip_norm set, a
// delta above it is clipped to it (ClipUpdate) and the returned factor
// includes that scaling. A delta whose norm is not finite (it holds inf or
// NaN) is left as it is and 1 returned: CheckFinite refuses it as
// malformed.
absl::StatusOr<double> BoundUpdateNorm(const UpdateLimits& limits,
                                       ModelState& delta);

// Both, for one update: CheckUpdateClaims with result.declared_examples,
// result.num_examples and result.metrics, then BoundUpdateNorm on
// *result.delta (when set). Returns the clip factor (1: not clipped).
absl::StatusOr<double> ApplyUpdateLimits(const UpdateLimits& limits,
                                         const FitResult& result);

// The reason label of a refusal returned above (e.g. "norm"); empty for
// any other status.
std::string UpdateLimitReason(const absl::Status& status);

}  // namespace fedge

#endif  // FEDGE_COMMON_UPDATE_LIMITS_H_
