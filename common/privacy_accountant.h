// Privacy accounting for DP-FedAvg and DP-SGD: a Renyi-DP (RDP) accountant
// for the Poisson-subsampled Gaussian mechanism, and the noise multiplier
// that meets a target epsilon.
//
// One step of the mechanism samples each participant independently with
// probability q (Poisson sampling), sums their contributions, each clipped to
// L2 norm S, and adds N(0, (sigma * S)^2) noise per coordinate; sigma is the
// noise multiplier. Neighbouring datasets differ by adding or removing one
// participant (one agent for DP-FedAvg, one example for DP-SGD).
//
// What is computed, per order alpha > 1 (Mironov, Talwar, Zhang 2019,
// "Renyi Differential Privacy of the Sampled Gaussian Mechanism",
// arXiv:1908.10530):
//   RDP(alpha) = log(A_alpha) / (alpha - 1), with
//   A_alpha = E_{z ~ N(0, sigma^2)} [(1 - q + q exp((2z - 1) / s2))^alpha]
//   where s2 = 2 sigma^2.
// - q = 1: the Gaussian mechanism's closed form alpha / (2 sigma^2).
// - integer alpha: the exact binomial expansion
//     A_alpha = sum_{i=0..alpha} C(alpha, i) (1-q)^(alpha-i) q^i
//               * exp((i^2 - i) / (2 sigma^2)).
// - fractional alpha: the paper's two convergent series (the integral split
//   at z0 = sigma^2 log(1/q - 1) + 1/2, each half expanded with the
//   generalized binomial theorem, terms weighted by erfc), summed past
//   i > alpha until the terms of both fall below e^-30. Should the series not
//   converge within 10^6 terms, the valid upper bound RDP(ceil(alpha)) is
//   used instead (RDP is non-decreasing in alpha).
// All sums are taken in log space with a stable log-sum-exp (signed for the
// alternating series), so nothing overflows for orders up to 10^4. This is
// the computation of TF Privacy / Google dp_accounting
// (rdp_privacy_accountant.py) and Opacus; the tests check TF Privacy's
// published values and a numerical integration of A_alpha.
//
// Composition: RDP adds up over steps (Mironov 2017, Prop. 1), so T steps
// with the same (q, sigma) cost T * RDP(alpha), and different (q, sigma)
// phases add.
//
// Conversion to (epsilon, delta), minimized over the orders; which one was
// used is reported in every EpsilonResult:
// - kImproved (default): Canonne, Kamath, Steinke 2020 (arXiv:2004.00010,
//   Prop. 12); the same bound is in Balle et al. 2020 ("Hypothesis testing
//   interpretations and Renyi differential privacy", AISTATS) and Asoodeh et
//   al. 2020 (arXiv:2001.05990, eq. 20):
//     eps = rdp - (log(delta) + log(alpha)) / (alpha - 1)
//           + log((alpha - 1) / alpha)
//   used for alpha > 1.01 (it is numerically unstable near 1), plus the
//   KL-divergence bound: eps = 0 when delta^2 >= 1 - exp(-rdp). This is what
//   dp_accounting and current TF Privacy report.
// - kClassic: Mironov 2017 (arXiv:1702.07476, Prop. 3),
//     eps = rdp - log(delta) / (alpha - 1),
//   what Abadi et al. 2016's moments accountant and TF Privacy before 2020
//   reported; kept so those published numbers can be reproduced.
// epsilon is never negative; it is +infinity when no order gives a finite
// bound.
//
// Thread-safety: RdpAccountant is not thread-safe (the coordinator guards it
// with its own mutex); the free functions are thread-safe.
#ifndef FEDGE_COMMON_PRIVACY_ACCOUNTANT_H_
#define FEDGE_COMMON_PRIVACY_ACCOUNTANT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace fedge {

// How RDP is turned into (epsilon, delta); see the file comment.
enum class RdpConversion {
  kImproved,  // Balle et al. 2020 / Canonne-Kamath-Steinke 2020.
  kClassic,   // Mironov 2017, Prop. 3.
};

// A human-readable name, e.g. "classic (Mironov 2017)".
const char* RdpConversionName(RdpConversion conversion);

struct EpsilonResult {
  double epsilon = 0.0;        // >= 0; +infinity when no order bounds it.
  double optimal_order = 0.0;  // The order alpha that gave `epsilon`.
  RdpConversion conversion = RdpConversion::kImproved;
};

// The standard orders, as TF Privacy's compute_dp_sgd_privacy uses:
// 1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5, 5, 6, ..., 63, 128, 256, 512.
std::vector<double> DefaultRdpOrders();

// Largest order accepted (the integer expansion costs O(alpha)).
inline constexpr double kMaxRdpOrder = 1e4;

// RDP at `order` of ONE step of the Poisson-subsampled Gaussian mechanism
// with sampling rate `q` and noise multiplier `sigma`.
// INVALID_ARGUMENT naming the parameter unless q is in (0, 1], sigma > 0 and
// finite, and order is in (1, kMaxRdpOrder].
absl::StatusOr<double> ComputeRdpSampledGaussian(double q, double sigma,
                                                 double order);

// The best (epsilon, delta) guarantee implied by RDP values `rdp` at
// `orders` (same length), with `conversion`.
// INVALID_ARGUMENT when delta is not in (0, 1), the spans differ in length
// or are empty, an order is not > 1, or an rdp value is negative or NaN.
absl::StatusOr<EpsilonResult> RdpToEpsilon(absl::Span<const double> orders,
                                           absl::Span<const double> rdp,
                                           double delta,
                                           RdpConversion conversion);

// Accumulates the privacy cost of a training run (one Compose per phase of
// equal (q, sigma), or one per round) and reports epsilon for a delta.
//
//   ASSIGN_OR_RETURN(auto accountant, RdpAccountant::Create({}));
//   RETURN_IF_ERROR(accountant->Compose(/*q=*/0.1, /*sigma=*/1.0, 1));
//   ASSIGN_OR_RETURN(EpsilonResult eps, accountant->GetEpsilon(1e-5));
class RdpAccountant {
 public:
  struct Options {
    // RDP orders alpha to track, each in (1, kMaxRdpOrder]. More orders give
    // a tighter epsilon (the minimum over them) at linear cost.
    std::vector<double> orders = DefaultRdpOrders();
    // How GetEpsilon converts RDP to (epsilon, delta).
    RdpConversion conversion = RdpConversion::kImproved;
  };

  // An accountant with nothing spent yet. INVALID_ARGUMENT naming `orders`
  // when the list is empty or an order is out of range.
  static absl::StatusOr<std::unique_ptr<RdpAccountant>> Create(Options options);

  RdpAccountant(const RdpAccountant&) = delete;
  RdpAccountant& operator=(const RdpAccountant&) = delete;

  // Adds `steps` steps of the Poisson-subsampled Gaussian mechanism with
  // sampling rate `q` and noise multiplier `sigma` (one DP-FedAvg round with
  // n of N agents is q = n / N; the noise multiplier is the noise stddev on
  // the sum divided by the clip norm). steps == 0 changes nothing.
  // INVALID_ARGUMENT naming the parameter (nothing changes) unless q is in
  // (0, 1], sigma > 0 and finite, and steps >= 0.
  absl::Status Compose(double q, double sigma, int64_t steps);

  // The (epsilon, delta) guarantee of everything composed so far (epsilon 0
  // before any Compose), with the optimal order and the conversion used.
  // INVALID_ARGUMENT naming `delta` unless it is in (0, 1).
  absl::StatusOr<EpsilonResult> GetEpsilon(double delta) const;

  // The accumulated RDP as a small text string (one line per order, exact
  // round trip), for the coordinator's checkpoint.
  std::string SaveState() const;

  // Replaces the accumulated RDP with a SaveState() string. The string is
  // untrusted input: INVALID_ARGUMENT (nothing changes) when it is malformed,
  // or was saved with different orders than this accountant's, or holds a
  // negative or NaN value.
  absl::Status RestoreState(absl::string_view state);

  const std::vector<double>& orders() const { return options_.orders; }
  // Accumulated RDP, one value per order (may be +infinity).
  const std::vector<double>& rdp() const { return rdp_; }

 private:
  explicit RdpAccountant(Options options);

  Options options_;
  std::vector<double> rdp_;
};

// The smallest noise multiplier sigma (to a relative 1e-6, rounded up) for
// which `steps` steps with sampling rate `q` are (target_eps, delta)-DP
// according to an RdpAccountant with `options`. The search covers
// sigma in [0.01, 10^4]; if even sigma = 0.01 meets the target, 0.01 is
// returned.
// INVALID_ARGUMENT naming the parameter unless target_eps > 0 and finite,
// delta in (0, 1), q in (0, 1], steps >= 1 and the options are valid;
// OUT_OF_RANGE when even sigma = 10^4 does not reach target_eps (possible
// with the classic conversion, whose epsilon is at least
// -log(delta) / (max order - 1)).
absl::StatusOr<double> NoiseMultiplierForEpsilon(
    double target_eps, double delta, double q, int64_t steps,
    const RdpAccountant::Options& options = {});

}  // namespace fedge

#endif  // FEDGE_COMMON_PRIVACY_ACCOUNTANT_H_
