// Server-side update rules: turn the weighted mean of the agents' deltas into
// the next global model.
//
// FedAvg (McMahan et al. 2017) with server_learning_rate = 1 and
// server_momentum = 0: global += mean_delta, i.e. the example-weighted mean
// of the local models. With momentum it is FedAvgM (Hsu et al. 2019):
// v = momentum * v + mean_delta; global += server_learning_rate * v.
// Not thread-safe (the momentum buffer is state); one per coordinator.
#ifndef FEDGE_COMMON_STRATEGY_H_
#define FEDGE_COMMON_STRATEGY_H_

#include <optional>

#include "absl/status/status.h"
#include "common/aggregation.h"
#include "common/tensor_buffer.h"

namespace fedge {

struct FedAvgOptions {
  double server_learning_rate = 1.0;  // > 0.
  double server_momentum = 0.0;       // In [0, 1).
};

class FedAvgStrategy {
 public:
  explicit FedAvgStrategy(FedAvgOptions options) : options_(options) {}

  // INVALID_ARGUMENT naming the option when it is out of range.
  static absl::Status Validate(const FedAvgOptions& options);

  // Applies `mean_delta` to `global`. INVALID_ARGUMENT (global unchanged)
  // when their schemas differ.
  absl::Status Apply(const ModelState& mean_delta, ModelState& global);

  // The same, with the mean delta taken from `sum` (FedAvg without momentum
  // folds it in place, never materializing the mean).
  absl::Status ApplyFrom(const WeightedMeanAccumulator& sum,
                         ModelState& global);

 private:
  FedAvgOptions options_;
  std::optional<ModelState> velocity_;  // FedAvgM only.
};

}  // namespace fedge

#endif  // FEDGE_COMMON_STRATEGY_H_
