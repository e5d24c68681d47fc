// Streaming weighted averaging (FedAvg's aggregation).
//
// A WeightedMeanAccumulator keeps one running sum per tensor, in float64, and
// folds updates into it one at a time: memory is O(model) whatever the number
// of updates. float32 tensors are averaged with weights (FedAvg: weight =
// number of examples); int64 tensors (counters) keep the maximum.
//
// Every update is validated (schema, finite values, weight) before it touches
// the sum; an invalid update returns INVALID_ARGUMENT and changes nothing.
// Not thread-safe: callers serialize Add().
#ifndef FEDGE_COMMON_AGGREGATION_H_
#define FEDGE_COMMON_AGGREGATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor_buffer.h"

namespace fedge {

class WeightedMeanAccumulator {
 public:
  // An empty accumulator for updates shaped like `schema` (values ignored).
  explicit WeightedMeanAccumulator(const ModelState& schema);

  WeightedMeanAccumulator(WeightedMeanAccumulator&&) = default;
  WeightedMeanAccumulator& operator=(WeightedMeanAccumulator&&) = default;
  WeightedMeanAccumulator(const WeightedMeanAccumulator&) = delete;
  WeightedMeanAccumulator& operator=(const WeightedMeanAccumulator&) = delete;

  // OK when `update` could be added with `weight`: same schema as the
  // accumulator, all float32 values finite, weight finite and > 0.
  // INVALID_ARGUMENT naming the problem otherwise. Changes nothing.
  absl::Status Validate(const ModelState& update, double weight) const;

  // Validates, then adds weight * update to the running sums.
  // INVALID_ARGUMENT (nothing changed) when Validate() fails.
  absl::Status Add(const ModelState& update, double weight);
  // Adds an update Validate() accepted (not checked again: the values are
  // read once more, to fold them).
  void AddValidated(const ModelState& update, double weight);

  // Adds a sum of weighted updates made elsewhere (secure aggregation):
  // float32 tensors are added to the running sums as they are (already
  // weighted), int64 tensors count as one more maximum; `total_weight` and
  // `num_updates` are what the sum holds. INVALID_ARGUMENT (nothing
  // changed) for another schema, a value that is not finite, or a weight or
  // count that is not > 0.
  absl::Status AddWeightedSum(const ModelState& weighted_sum,
                              double total_weight, int64_t num_updates);

  // The weighted mean of everything added so far, as float32 tensors shaped
  // like the schema. FAILED_PRECONDITION when nothing was added.
  absl::StatusOr<ModelState> Mean() const;

  // target += scale * Mean() for float32 tensors (int64 tensors take the
  // maxima), without materializing the mean. INVALID_ARGUMENT (target
  // unchanged) when target's schema differs; FAILED_PRECONDITION when
  // nothing was added.
  absl::Status AddMeanTo(ModelState& target, double scale) const;
  // base + scale * Mean() as a new model, in one pass (int64 tensors: the
  // maxima); the same values as base.Clone() then AddMeanTo(), without
  // writing the copy first. Same errors as AddMeanTo.
  absl::StatusOr<ModelState> MeanPlus(const ModelState& base,
                                      double scale) const;

  // Forgets every update; keeps the schema and the memory. O(1) for the
  // float32 sums: the first update added after it overwrites them instead
  // of adding to them (a round's close does not sweep the model's sums).
  void Reset();

  int64_t num_updates() const { return num_updates_; }
  double total_weight() const { return total_weight_; }

 private:
  ModelSchema schema_;
  // float32 tensors; with num_updates_ == 0 they hold whatever an earlier
  // round left, and the next fold assigns instead of adding.
  std::vector<std::vector<double>> sums_;
  std::vector<std::vector<int64_t>> maxima_;  // int64 tensors.
  int64_t num_updates_ = 0;
  double total_weight_ = 0.0;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_AGGREGATION_H_
