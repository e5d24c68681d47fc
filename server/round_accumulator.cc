#include "server/round_accumulator.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

UpdateLimits WithDpClip(UpdateLimits limits, const StrategyOptions& options) {
  if (options.dp.has_value() && !options.dp->local) {
    limits.dp_clip_norm = options.dp->clip_norm;
  }
  return limits;
}

std::unique_ptr<RoundPrivacy> MakeLedger(const StrategyOptions& options) {
  if (!options.dp.has_value()) return nullptr;
  absl::StatusOr<std::unique_ptr<RoundPrivacy>> ledger =
      RoundPrivacy::Create(options);
  FEDGE_CHECK(ledger.ok()) << ledger.status();  // CreateStrategy checked.
  return *std::move(ledger);
}

}  // namespace

RoundAccumulator::RoundAccumulator(Strategy* strategy, UpdateLimits limits)
    : strategy_(strategy),
      limits_(WithDpClip(limits, strategy->options())),
      privacy_(MakeLedger(strategy->options())) {}

absl::Status RoundAccumulator::Check(const FitResult& result) const {
  absl::MutexLock lock(&mu_);
  return strategy_->CheckUpdate(result);
}

absl::Status RoundAccumulator::Add(const FitResult& result, int64_t bytes) {
  RETURN_IF_ERROR(ApplyLimits(result).status());
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(strategy_->CheckUpdate(result));
  Record(result, bytes);
  return absl::OkStatus();
}

void RoundAccumulator::AddChecked(const FitResult& result, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  Record(result, bytes);
}

void RoundAccumulator::Record(const FitResult& result, int64_t bytes) {
  strategy_->AddCheckedUpdate(result);
  const double n = result.num_examples;
  examples_ += n;
  loss_sum_ += n * result.metrics.loss;
  accuracy_sum_ += n * result.metrics.accuracy;
  slowest_train_seconds_ =
      std::max(slowest_train_seconds_, result.metrics.seconds);
  bytes_ += bytes;
}

absl::Status RoundAccumulator::AddSum(const SecAggSum& sum, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(strategy_->AddSum(sum.fit()));
  // Examples are whole: the fixed-point sum is within a rounding of it.
  examples_ += std::round(sum.examples);
  loss_sum_ += sum.loss_sum;
  accuracy_sum_ += sum.accuracy_sum;
  bytes_ += bytes;
  return absl::OkStatus();
}

int64_t RoundAccumulator::num_updates() const {
  absl::MutexLock lock(&mu_);
  return strategy_->num_updates();
}

RoundClose RoundAccumulator::Close(const RoundOutcome& outcome,
                                   const ModelState& global,
                                   int64_t num_available) {
  absl::MutexLock lock(&mu_);
  RoundClose close;
  RoundRecord& r = close.record;
  r.round = outcome.round;
  r.num_agents = static_cast<int>(outcome.reported.size());
  r.num_failed = static_cast<int>(outcome.failed.size());
  r.num_examples = static_cast<int64_t>(examples_);
  if (examples_ > 0) {
    r.train_loss = loss_sum_ / examples_;
    r.train_accuracy = accuracy_sum_ / examples_;
  }
  r.train_seconds = slowest_train_seconds_;
  r.bytes_received = bytes_;
  const bool had_updates = strategy_->num_updates() > 0;
  if (outcome.completed && had_updates) {
    FitRound round;
    round.round = outcome.round;
    round.num_available = num_available;
    round.failures = outcome.failed;
    absl::StatusOr<ModelState> next = strategy_->AggregateFit(round, global);
    if (next.ok()) {
      // The strategies check it too; a model that is not finite is never
      // published nor checkpointed, whichever strategy made it.
      if (absl::Status finite = CheckFinite(*next); !finite.ok()) {
        next = absl::InvalidArgumentError(
            absl::StrCat("the aggregate is not finite (", finite.message(),
                         "); the global model is kept"));
      }
    }
    if (next.ok()) {
      close.next = *std::move(next);
    } else {
      close.aggregation_error = next.status();
      FEDGE_LOG(WARNING) << "round " << outcome.round
                         << ": no new model, the global model is kept: "
                         << next.status();
    }
  } else {
    strategy_->DiscardRound();
  }
  if (privacy_ != nullptr) {
    // Central: what left the coordinator is the new model; local: the
    // agents' noised updates, whatever became of the round.
    const bool released =
        privacy_->options().local ? had_updates : close.next.has_value();
    if (released) {
      // An unknown roster (0) is accounted as q = 1: the most it can cost.
      absl::Status composed =
          privacy_->ComposeRound(std::max<int64_t>(1, num_available));
      FEDGE_CHECK(composed.ok())
          << "round " << outcome.round << ": " << composed;
    }
    const PrivacySpent spent = privacy_->Spent();
    r.epsilon = spent.epsilon;
    r.delta = spent.delta;
  }
  examples_ = loss_sum_ = accuracy_sum_ = slowest_train_seconds_ = 0;
  bytes_ = 0;
  return close;
}

}  // namespace fedge
