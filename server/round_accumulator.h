// RoundAccumulator: one round's accepted updates and statistics, and the
// round close, written once and used by both fedge-coordinator and fedge-sim
// (the coordinator and the simulator share everything but the transport).
//
// During a round, Add() applies the poisoning limits to each update
// (common/update_limits.h: its weight, metrics and norm), hands it to the
// strategy (common/strategy.h: validated, then folded) and keeps the round's
// statistics (example-weighted training loss and accuracy, examples, bytes,
// the slowest agent's training time). Close() turns the round's outcome
// into the next global model (the strategy's aggregate_fit) and the history
// record; an abandoned round, or an aggregate that is not finite, leaves
// the model unchanged.
//
// Differential privacy (the strategy's StrategyOptions::dp, docs/
// privacy.md): with central DP every update is clipped to the clip norm
// among the limits (UpdateLimits::dp_clip_norm), whatever its agent did;
// the privacy ledger (server/round_privacy.h) composes each round at its
// close, and the record carries the (epsilon, delta) after it.
//
// Thread-safe: updates may arrive from many threads (the coordinator's
// upload handlers, the simulator's workers).
#ifndef FEDGE_SERVER_ROUND_ACCUMULATOR_H_
#define FEDGE_SERVER_ROUND_ACCUMULATOR_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/history.h"
#include "common/secagg_update.h"
#include "common/strategy.h"
#include "common/update_limits.h"
#include "server/round_engine.h"
#include "server/round_privacy.h"

namespace fedge {

// What a closed round produced.
struct RoundClose {
  // The next global model (unset: the round was abandoned, or its
  // aggregate was refused, and the model stays as it was).
  std::optional<ModelState> next;
  // Why a round with a quorum still produced no model (e.g. a non-finite
  // aggregate, too few updates for Krum); OK otherwise.
  absl::Status aggregation_error;
  // The history line, without evaluation and timings (the driver adds
  // them).
  RoundRecord record;
};

class RoundAccumulator {
 public:
  // `strategy` must outlive the accumulator; `limits` bound every update
  // (with central DP, the strategy's clip norm is added to them). The
  // strategy's DP options were validated by CreateStrategy.
  explicit RoundAccumulator(Strategy* strategy, UpdateLimits limits = {});
  RoundAccumulator(const RoundAccumulator&) = delete;
  RoundAccumulator& operator=(const RoundAccumulator&) = delete;

  // The poisoning limits on an update, before anything else looks at it
  // (ApplyUpdateLimits): its clip factor (1: unchanged), or INVALID_ARGUMENT
  // naming the limit (UpdateLimitReason gives its label). Clipping scales
  // *result.delta in place; nothing else changes. Needs no lock: callers
  // run it on their own update outside the round's serialization.
  absl::StatusOr<double> ApplyLimits(const FitResult& result) const {
    return ApplyUpdateLimits(limits_, result);
  }
  const UpdateLimits& limits() const { return limits_; }

  // The strategy's checks of an update, without recording it:
  // INVALID_ARGUMENT naming the problem.
  absl::Status Check(const FitResult& result) const;

  // ApplyLimits, then folds the update (once per accepted upload) and
  // counts its statistics; `bytes` is the size it had on the wire. The
  // limits' and the strategy's INVALID_ARGUMENT / RESOURCE_EXHAUSTED leave
  // everything unchanged.
  absl::Status Add(const FitResult& result, int64_t bytes);
  // Add() for an update Check() accepted, with nothing added since (the
  // caller serializes Check and AddChecked): not validated a second time.
  void AddChecked(const FitResult& result, int64_t bytes);

  // Folds a secure-aggregation round's sum (server/secagg_round.h) into the
  // strategy (Strategy::AddSum) and counts its statistics: the summed
  // examples and example-weighted metrics, `bytes` on the wire. The
  // per-update limits cannot apply to a sum: secure aggregation bounds each
  // element by its clip range instead. The strategy's FAILED_PRECONDITION
  // or INVALID_ARGUMENT leaves everything unchanged.
  absl::Status AddSum(const SecAggSum& sum, int64_t bytes);

  // Closes the round of `outcome`: for a completed round with updates, the
  // strategy's aggregate from `global`, which must be finite (else
  // aggregation_error is INVALID_ARGUMENT and no model comes out); then the
  // round's state is reset.
  // `num_available` is the roster size when the round started.
  RoundClose Close(const RoundOutcome& outcome, const ModelState& global,
                   int64_t num_available);

  // Updates folded in the round so far.
  int64_t num_updates() const;

  // The privacy ledger; null when the strategy runs without DP.
  RoundPrivacy* privacy() { return privacy_.get(); }
  const RoundPrivacy* privacy() const { return privacy_.get(); }

 private:
  // Folds a checked update and counts its statistics.
  void Record(const FitResult& result, int64_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Strategy* const strategy_;
  const UpdateLimits limits_;
  const std::unique_ptr<RoundPrivacy> privacy_;
  mutable absl::Mutex mu_;
  double examples_ ABSL_GUARDED_BY(mu_) = 0;
  double loss_sum_ ABSL_GUARDED_BY(mu_) = 0;
  double accuracy_sum_ ABSL_GUARDED_BY(mu_) = 0;
  double slowest_train_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fedge

#endif  // FEDGE_SERVER_ROUND_ACCUMULATOR_H_
