// RoundPrivacy: the privacy ledger of a DP-FedAvg run (docs/privacy.md),
// shared by fedge-coordinator and fedge-sim through the round accumulator
// (server/round_accumulator.h). It turns the strategy's DP options
// (StrategyOptions::dp, common/dp.h) into one accountant step per round
// (common/privacy_accountant.h), answers whether the next round fits the
// budget, and saves and restores the accountant for checkpoints.
//
// One round, as common/dp.h analyses it:
//   central DP  the Poisson-subsampled Gaussian mechanism with
//               q = sampled / available (sampled = FitSelectionSize of the
//               roster when the round starts) and sigma = noise_multiplier;
//               composed for a round that released a model.
//   local DP    the Gaussian mechanism (q = 1) with sigma =
//               noise_multiplier / 2 for any agent that took part: an upper
//               bound for every agent, as if each took part in every round;
//               composed for every closed round that received an update
//               (the agents' noised updates left them, model or not).
//
// Thread-safe (one internal mutex).
#ifndef FEDGE_SERVER_ROUND_PRIVACY_H_
#define FEDGE_SERVER_ROUND_PRIVACY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/privacy_accountant.h"
#include "common/strategy.h"

namespace fedge {

// The guarantee so far.
struct PrivacySpent {
  double epsilon = 0;  // For `delta`; +infinity when unbounded.
  double delta = 0;
  int64_t rounds = 0;      // Rounds composed.
  double max_epsilon = 0;  // The budget (0 = none).
  bool local = false;
};

class RoundPrivacy {
 public:
  // The ledger of a run with `options` (options.dp must be set).
  // INVALID_ARGUMENT when it is not, or the DP options are out of range.
  static absl::StatusOr<std::unique_ptr<RoundPrivacy>> Create(
      const StrategyOptions& options);

  RoundPrivacy(const RoundPrivacy&) = delete;
  RoundPrivacy& operator=(const RoundPrivacy&) = delete;

  // One round's sampling rate q and noise multiplier sigma for a roster of
  // `num_available` agents (see the file comment). num_available >= 1.
  struct Mechanism {
    double q = 1;
    double sigma = 1;
  };
  Mechanism RoundMechanism(int64_t num_available) const;

  // The epsilon after one more round over `num_available` agents.
  // INVALID_ARGUMENT for num_available < 1.
  absl::StatusOr<double> EpsilonAfterNextRound(int64_t num_available) const;
  // OK when a budget is unset or the next round keeps epsilon within it;
  // RESOURCE_EXHAUSTED naming strategy.dp.max_epsilon, the epsilon now and
  // after the round, otherwise.
  absl::Status CheckBudget(int64_t num_available) const;

  // Composes one round over `num_available` agents (>= 1; INVALID_ARGUMENT
  // and nothing changes otherwise).
  absl::Status ComposeRound(int64_t num_available);

  PrivacySpent Spent() const;
  const DpFedAvgOptions& options() const { return dp_; }

  // The ledger's state (the rounds and the accountant's RDP), text.
  std::string SaveState() const;
  // Replaces the state with a SaveState() string (untrusted: a checkpoint).
  // INVALID_ARGUMENT, nothing changed, when it does not parse.
  absl::Status RestoreState(absl::string_view state);

 private:
  RoundPrivacy(const StrategyOptions& options,
               std::unique_ptr<RdpAccountant> accountant);
  double EpsilonLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const StrategyOptions strategy_;
  const DpFedAvgOptions dp_;
  mutable absl::Mutex mu_;
  std::unique_ptr<RdpAccountant> accountant_ ABSL_GUARDED_BY(mu_);
  int64_t rounds_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fedge

#endif  // FEDGE_SERVER_ROUND_PRIVACY_H_
