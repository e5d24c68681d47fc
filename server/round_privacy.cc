#include "server/round_privacy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

constexpr absl::string_view kRoundsPrefix = "rounds ";

}  // namespace

absl::StatusOr<std::unique_ptr<RoundPrivacy>> RoundPrivacy::Create(
    const StrategyOptions& options) {
  if (!options.dp.has_value()) {
    return absl::InvalidArgumentError("the strategy runs without DP options");
  }
  if (absl::Status s = options.dp->Validate(); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("strategy.dp.", s.message()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<RdpAccountant> accountant,
                   RdpAccountant::Create({}));
  return std::unique_ptr<RoundPrivacy>(
      new RoundPrivacy(options, std::move(accountant)));
}

RoundPrivacy::RoundPrivacy(const StrategyOptions& options,
                           std::unique_ptr<RdpAccountant> accountant)
    : strategy_(options),
      dp_(*options.dp),
      accountant_(std::move(accountant)) {}

RoundPrivacy::Mechanism RoundPrivacy::RoundMechanism(
    int64_t num_available) const {
  FEDGE_CHECK(num_available >= 1) << "num_available " << num_available;
  Mechanism m;
  if (dp_.local) {
    // Two clipped updates differ by up to 2S: z / 2 per agent, no sampling.
    m.q = 1;
    m.sigma = dp_.noise_multiplier / 2;
    return m;
  }
  const double sampled = static_cast<double>(
      FitSelectionSize(strategy_, static_cast<size_t>(num_available)));
  m.q = std::min(1.0, sampled / static_cast<double>(num_available));
  m.sigma = dp_.noise_multiplier;
  return m;
}

double RoundPrivacy::EpsilonLocked() const {
  absl::StatusOr<EpsilonResult> e = accountant_->GetEpsilon(dp_.delta);
  FEDGE_CHECK(e.ok()) << e.status();  // delta was validated.
  return e->epsilon;
}

absl::StatusOr<double> RoundPrivacy::EpsilonAfterNextRound(
    int64_t num_available) const {
  if (num_available < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_available must be >= 1, got ", num_available));
  }
  const Mechanism m = RoundMechanism(num_available);
  ASSIGN_OR_RETURN(std::unique_ptr<RdpAccountant> next,
                   RdpAccountant::Create({}));
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(next->RestoreState(accountant_->SaveState()));
  }
  RETURN_IF_ERROR(next->Compose(m.q, m.sigma, 1));
  ASSIGN_OR_RETURN(EpsilonResult e, next->GetEpsilon(dp_.delta));
  return e.epsilon;
}

absl::Status RoundPrivacy::CheckBudget(int64_t num_available) const {
  if (dp_.max_epsilon <= 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(const double after, EpsilonAfterNextRound(num_available));
  if (after <= dp_.max_epsilon) return absl::OkStatus();
  const PrivacySpent now = Spent();
  return absl::ResourceExhaustedError(absl::StrFormat(
      "privacy budget reached: after %d rounds epsilon is %.4f (delta %g); "
      "one more round over %d agents would take it to %.4f, above "
      "strategy.dp.max_epsilon = %g",
      now.rounds, now.epsilon, dp_.delta, num_available, after,
      dp_.max_epsilon));
}

absl::Status RoundPrivacy::ComposeRound(int64_t num_available) {
  if (num_available < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_available must be >= 1, got ", num_available));
  }
  const Mechanism m = RoundMechanism(num_available);
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(accountant_->Compose(m.q, m.sigma, 1));
  ++rounds_;
  return absl::OkStatus();
}

PrivacySpent RoundPrivacy::Spent() const {
  absl::MutexLock lock(&mu_);
  PrivacySpent s;
  s.epsilon = EpsilonLocked();
  s.delta = dp_.delta;
  s.rounds = rounds_;
  s.max_epsilon = dp_.max_epsilon;
  s.local = dp_.local;
  return s;
}

std::string RoundPrivacy::SaveState() const {
  absl::MutexLock lock(&mu_);
  return absl::StrCat(kRoundsPrefix, rounds_, "\n", accountant_->SaveState());
}

absl::Status RoundPrivacy::RestoreState(absl::string_view state) {
  const size_t newline = state.find('\n');
  int64_t rounds = 0;
  if (!absl::StartsWith(state, kRoundsPrefix) ||
      newline == absl::string_view::npos ||
      !absl::SimpleAtoi(
          state.substr(kRoundsPrefix.size(), newline - kRoundsPrefix.size()),
          &rounds) ||
      rounds < 0) {
    return absl::InvalidArgumentError(
        "the privacy ledger's state must start with 'rounds N'");
  }
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(accountant_->RestoreState(state.substr(newline + 1)));
  rounds_ = rounds;
  return absl::OkStatus();
}

}  // namespace fedge
