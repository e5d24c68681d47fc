// Internal to the strategies (common/strategy*.cc): the factories of the two
// families. Use CreateStrategy (common/strategy.h) instead.
#ifndef FEDGE_COMMON_STRATEGY_IMPL_H_
#define FEDGE_COMMON_STRATEGY_IMPL_H_

#include <memory>

#include "absl/status/statusor.h"
#include "common/strategy.h"

namespace fedge {

// fedavg, fedavgm, fedprox, fednova, fedadam, fedyogi, fedadagrad, scaffold,
// norm_bounded: one running weighted sum per round (memory O(model)).
absl::StatusOr<std::unique_ptr<Strategy>> NewMeanStrategy(
    const StrategyOptions& options, const ModelState& model);

// median, trimmed_mean, krum, multi_krum: every update of a round is kept
// (at most max_buffered_updates of them).
absl::StatusOr<std::unique_ptr<Strategy>> NewRobustStrategy(
    const StrategyOptions& options, const ModelState& model);

// The next global model, checked: INVALID_ARGUMENT ("the global model is
// kept") when a value is not finite; otherwise its tensors are marked
// known finite, so that nothing downstream (the checkpoint) scans them
// again.
absl::Status CheckAggregate(ModelState& next);

}  // namespace fedge

#endif  // FEDGE_COMMON_STRATEGY_IMPL_H_
