// Coordinator: differential privacy (strategy.dp, docs/privacy.md). The
// mechanism itself (clipping among the update limits, the noised
// fixed-denominator mean in the strategy, one accountant step per round)
// is shared with fedge-sim through the round accumulator; what is here is
// the coordinator's part: the ledger across restarts (checkpoints), the
// budget stop, and the figures for the operator.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/coordinator.h"

namespace fedge {

absl::Status Coordinator::RestorePrivacy(
    const v1::CoordinatorCheckpointExtra& extra, int completed_rounds) {
  RoundPrivacy* privacy = accumulator_.privacy();
  if (privacy == nullptr) {
    if (extra.has_privacy_accountant_state()) {
      FEDGE_LOG(WARNING) << "the checkpoint's run was differentially "
                            "private, this one is not (strategy.dp.mode "
                            "off): its new rounds have no DP guarantee";
    }
    return absl::OkStatus();
  }
  if (!extra.has_privacy_accountant_state()) {
    if (completed_rounds == 0) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        "the checkpoint in ", config_.state_dir(), "/checkpoints holds ",
        completed_rounds,
        " rounds trained without strategy.dp: their privacy cost is "
        "unbounded, so no epsilon could be reported; start the private run "
        "in a new state_dir, or set strategy.dp.mode to off"));
  }
  RETURN_IF_ERROR(
      Annotate(privacy->RestoreState(extra.privacy_accountant_state()),
               "restoring the privacy accountant from the checkpoint"));
  const PrivacySpent spent = privacy->Spent();
  FEDGE_LOG(INFO) << absl::StrFormat(
      "privacy: resumed at epsilon %.4f (delta %g) after %d rounds",
      spent.epsilon, spent.delta, spent.rounds);
  UpdatePrivacyMetrics();
  return absl::OkStatus();
}

bool Coordinator::StopAtPrivacyBudget(int64_t round, size_t num_available) {
  const RoundPrivacy* privacy = accumulator_.privacy();
  if (privacy == nullptr) return false;
  if (privacy_budget_exhausted_) return true;
  const absl::Status budget =
      privacy->CheckBudget(std::max<int64_t>(1, num_available));
  if (budget.ok()) return false;
  privacy_budget_exhausted_ = true;
  FEDGE_LOG(WARNING) << "round " << round
                     << " not started, the federation ends: "
                     << budget.message();
  // Between rounds the engine is done at once; the last round's model and
  // checkpoint (with the ledger) are already durable and published, so a
  // restart stops here again. This Tick then tells agents the federation
  // finished (done() and Settled()).
  engine_->StopAfterCurrentRound().IgnoreError();
  return true;
}

std::optional<PrivacyStatus> Coordinator::PrivacySnapshot() const {
  const RoundPrivacy* privacy = accumulator_.privacy();
  if (privacy == nullptr) return std::nullopt;
  const PrivacySpent spent = privacy->Spent();
  PrivacyStatus s;
  s.mode = spent.local ? "local" : "central";
  s.epsilon = spent.epsilon;
  s.delta = spent.delta;
  s.max_epsilon = spent.max_epsilon;
  s.rounds = spent.rounds;
  s.budget_exhausted = privacy_budget_exhausted_;
  return s;
}

void Coordinator::UpdatePrivacyMetrics() {
  const std::optional<PrivacyStatus> p = PrivacySnapshot();
  if (!p.has_value()) return;
  metrics_.privacy_epsilon.Set(p->epsilon);
  metrics_.privacy_delta.Set(p->delta);
}

}  // namespace fedge
