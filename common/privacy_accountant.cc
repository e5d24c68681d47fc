#include "common/privacy_accountant.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr char kStateHeader[] = "fedge-rdp-accountant v1";
// The fractional-order series stops once both terms are below e^-30 ...
constexpr double kSeriesLogTolerance = -30.0;
// ... or, failing that, after this many terms (then RDP(ceil(alpha)) is used).
constexpr int64_t kMaxSeriesTerms = 1000000;
// NoiseMultiplierForEpsilon's search range and relative precision.
constexpr double kMinSearchSigma = 0.01;
constexpr double kMaxSearchSigma = 1e4;
constexpr double kSearchRelativeTolerance = 1e-6;
constexpr double kLogSqrtPi = 0.57236494292470008707;  // log(sqrt(pi)).

// log(exp(a) + exp(b)), exact for -infinity (zero) arguments.
double LogAdd(double a, double b) {
  if (a < b) std::swap(a, b);
  if (b == -kInf) return a;
  return a + std::log1p(std::exp(b - a));
}

// A signed real number stored as its sign and log magnitude, so that
// alternating series can be summed without overflow.
class SignedLogSum {
 public:
  // Adds (negative ? -1 : 1) * exp(log_abs).
  void Add(bool negative, double log_abs) {
    if (log_abs == -kInf) return;
    if (log_abs_ == -kInf) {
      negative_ = negative;
      log_abs_ = log_abs;
    } else if (negative == negative_) {
      log_abs_ = LogAdd(log_abs_, log_abs);
    } else if (log_abs > log_abs_) {
      negative_ = negative;
      log_abs_ = log_abs + std::log(-std::expm1(log_abs_ - log_abs));
    } else if (log_abs < log_abs_) {
      log_abs_ = log_abs_ + std::log(-std::expm1(log_abs - log_abs_));
    } else {
      negative_ = false;
      log_abs_ = -kInf;
    }
  }
  bool negative() const { return negative_; }
  double log_abs() const { return log_abs_; }

 private:
  bool negative_ = false;
  double log_abs_ = -kInf;
};

// log(erfc(x)), accurate where erfc(x) underflows: for x >= 25 it uses the
// asymptotic expansion erfc(x) = exp(-x^2) / (x sqrt(pi)) * S(1/x^2), with
// log S(u) = -u/2 + 5u^2/8 - 37u^3/24 + 353u^4/64 (error O(x^-10) < 1e-14).
double LogErfc(double x) {
  if (x < 25.0) return std::log(std::erfc(x));
  const double u = 1.0 / (x * x);
  const double log_series =
      u * (-0.5 + u * (0.625 + u * (-37.0 / 24.0 + u * (353.0 / 64.0))));
  return -x * x - std::log(x) - kLogSqrtPi + log_series;
}

// log(A_alpha) for integer alpha >= 2 and 0 < q < 1: the binomial expansion.
double LogAInteger(double q, double sigma, int64_t alpha) {
  const double log_q = std::log(q);
  const double log_1mq = std::log1p(-q);
  const double inv_2s2 = 1.0 / (2.0 * sigma * sigma);
  double log_a = -kInf;
  double log_binom = 0.0;  // log C(alpha, i), updated incrementally.
  for (int64_t i = 0; i <= alpha; ++i) {
    const double di = static_cast<double>(i);
    const double term = log_binom + di * log_q +
                        static_cast<double>(alpha - i) * log_1mq +
                        (di * di - di) * inv_2s2;
    log_a = LogAdd(log_a, term);
    log_binom += std::log(static_cast<double>(alpha - i)) - std::log(di + 1.0);
  }
  return log_a;
}

// log(A_alpha) for fractional alpha > 1 and 0 < q < 1: the two series of
// Mironov-Talwar-Zhang 2019. Returns NaN when the series does
// not converge within kMaxSeriesTerms or sums to a negative number.
double LogAFractional(double q, double sigma, double alpha) {
  const double log_q = std::log(q);
  const double log_1mq = std::log1p(-q);
  const double inv_2s2 = 1.0 / (2.0 * sigma * sigma);
  const double sqrt2_sigma = std::sqrt(2.0) * sigma;
  const double log_half = std::log(0.5);
  const double z0 = sigma * sigma * (log_1mq - log_q) + 0.5;
  SignedLogSum a0;         // Integral over (-inf, z0].
  SignedLogSum a1;         // Integral over [z0, +inf).
  double log_binom = 0.0;  // log |C(alpha, i)|, C(alpha, 0) = 1.
  bool binom_negative = false;
  for (int64_t i = 0; i < kMaxSeriesTerms; ++i) {
    const double di = static_cast<double>(i);
    const double j = alpha - di;
    const double s0 = log_binom + di * log_q + j * log_1mq +
                      (di * di - di) * inv_2s2 + log_half +
                      LogErfc((di - z0) / sqrt2_sigma);
    const double s1 = log_binom + j * log_q + di * log_1mq +
                      (j * j - j) * inv_2s2 + log_half +
                      LogErfc((z0 - j) / sqrt2_sigma);
    a0.Add(binom_negative, s0);
    a1.Add(binom_negative, s1);
    if (di > alpha && std::max(s0, s1) < kSeriesLogTolerance) {
      SignedLogSum total = a0;
      total.Add(a1.negative(), a1.log_abs());
      if (total.negative()) return std::nan("");
      return total.log_abs();
    }
    // C(alpha, i + 1) = C(alpha, i) * (alpha - i) / (i + 1).
    log_binom += std::log(std::fabs(j)) - std::log(di + 1.0);
    if (j < 0) binom_negative = !binom_negative;
  }
  return std::nan("");
}

// RDP of one step; arguments already validated.
double RdpOneStep(double q, double sigma, double order) {
  if (q == 1.0) return order / (2.0 * sigma * sigma);
  const double ceil_order = std::ceil(order);
  double log_a = std::nan("");
  if (order != ceil_order) log_a = LogAFractional(q, sigma, order);
  if (std::isnan(log_a) || log_a == kInf) {
    // Integer order, or the fractional series failed: RDP is non-decreasing
    // in the order, so RDP(ceil(order)) is a valid upper bound.
    const int64_t n = static_cast<int64_t>(ceil_order);
    return std::max(0.0, LogAInteger(q, sigma, n) / (ceil_order - 1.0));
  }
  return std::max(0.0, log_a / (order - 1.0));
}

absl::Status ValidateMechanism(double q, double sigma) {
  if (!(q > 0.0 && q <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling rate q must be in (0, 1], got ", q));
  }
  if (!(sigma > 0.0 && std::isfinite(sigma))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "noise multiplier sigma must be > 0 and finite, got ", sigma));
  }
  return absl::OkStatus();
}

absl::Status ValidateOrder(double order) {
  if (!(order > 1.0 && order <= kMaxRdpOrder)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RDP order must be in (1, ", kMaxRdpOrder, "], got ", order));
  }
  return absl::OkStatus();
}

absl::Status ValidateDelta(double delta) {
  if (!(delta > 0.0 && delta < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta must be in (0, 1), got ", delta));
  }
  return absl::OkStatus();
}

absl::Status ValidateOrders(const std::vector<double>& orders) {
  if (orders.empty()) {
    return absl::InvalidArgumentError("orders must not be empty");
  }
  for (double order : orders) {
    RETURN_IF_ERROR(Annotate(ValidateOrder(order), "orders"));
  }
  return absl::OkStatus();
}

// Epsilon from RDP value `rdp` at `order` (both valid).
double EpsilonAtOrder(double order, double rdp, double delta,
                      RdpConversion conversion) {
  if (rdp == kInf) return kInf;
  if (conversion == RdpConversion::kClassic) {
    return rdp - std::log(delta) / (order - 1.0);
  }
  // delta <= sqrt(1 - exp(-KL)) and KL <= RDP(order): (0, delta)-DP.
  if (delta * delta + std::expm1(-rdp) > 0.0) return 0.0;
  if (order <= 1.01) return kInf;  // The bound below is unstable near 1.
  return rdp + std::log1p(-1.0 / order) -
         std::log(delta * order) / (order - 1.0);
}

// Epsilon for `steps` steps of (q, sigma); arguments already validated.
EpsilonResult EpsilonForRun(double q, double sigma, int64_t steps, double delta,
                            const RdpAccountant::Options& options) {
  std::vector<double> rdp(options.orders.size());
  for (size_t i = 0; i < rdp.size(); ++i) {
    rdp[i] =
        RdpOneStep(q, sigma, options.orders[i]) * static_cast<double>(steps);
  }
  absl::StatusOr<EpsilonResult> result =
      RdpToEpsilon(options.orders, rdp, delta, options.conversion);
  return result.ok() ? *result : EpsilonResult{kInf, 0.0, options.conversion};
}

}  // namespace

const char* RdpConversionName(RdpConversion conversion) {
  switch (conversion) {
    case RdpConversion::kImproved:
      return "improved (Canonne-Kamath-Steinke 2020, Balle et al. 2020)";
    case RdpConversion::kClassic:
      return "classic (Mironov 2017)";
  }
  return "unknown";
}

std::vector<double> DefaultRdpOrders() {
  std::vector<double> orders = {1.25, 1.5, 1.75, 2.0, 2.25,
                                2.5,  3.0, 3.5,  4.0, 4.5};
  for (int order = 5; order <= 63; ++order) orders.push_back(order);
  for (double order : {128.0, 256.0, 512.0}) orders.push_back(order);
  return orders;
}

absl::StatusOr<double> ComputeRdpSampledGaussian(double q, double sigma,
                                                 double order) {
  RETURN_IF_ERROR(ValidateMechanism(q, sigma));
  RETURN_IF_ERROR(ValidateOrder(order));
  return RdpOneStep(q, sigma, order);
}

absl::StatusOr<EpsilonResult> RdpToEpsilon(absl::Span<const double> orders,
                                           absl::Span<const double> rdp,
                                           double delta,
                                           RdpConversion conversion) {
  RETURN_IF_ERROR(ValidateDelta(delta));
  if (orders.empty() || orders.size() != rdp.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("orders and rdp must be non-empty and of equal length, "
                     "got ",
                     orders.size(), " and ", rdp.size()));
  }
  EpsilonResult best{kInf, orders[0], conversion};
  for (size_t i = 0; i < orders.size(); ++i) {
    if (!(orders[i] > 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("orders must be > 1, got ", orders[i]));
    }
    if (!(rdp[i] >= 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rdp must be >= 0, got ", rdp[i], " at order ", orders[i]));
    }
    const double eps = EpsilonAtOrder(orders[i], rdp[i], delta, conversion);
    if (eps < best.epsilon) {
      best.epsilon = eps;
      best.optimal_order = orders[i];
    }
  }
  best.epsilon = std::max(0.0, best.epsilon);
  return best;
}

RdpAccountant::RdpAccountant(Options options)
    : options_(std::move(options)), rdp_(options_.orders.size(), 0.0) {}

absl::StatusOr<std::unique_ptr<RdpAccountant>> RdpAccountant::Create(
    Options options) {
  RETURN_IF_ERROR(ValidateOrders(options.orders));
  return std::unique_ptr<RdpAccountant>(new RdpAccountant(std::move(options)));
}

absl::Status RdpAccountant::Compose(double q, double sigma, int64_t steps) {
  RETURN_IF_ERROR(ValidateMechanism(q, sigma));
  if (steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("steps must be >= 0, got ", steps));
  }
  if (steps == 0) return absl::OkStatus();
  for (size_t i = 0; i < rdp_.size(); ++i) {
    rdp_[i] +=
        RdpOneStep(q, sigma, options_.orders[i]) * static_cast<double>(steps);
  }
  return absl::OkStatus();
}

absl::StatusOr<EpsilonResult> RdpAccountant::GetEpsilon(double delta) const {
  return RdpToEpsilon(options_.orders, rdp_, delta, options_.conversion);
}

std::string RdpAccountant::SaveState() const {
  std::string out = absl::StrCat(kStateHeader, "\n");
  for (size_t i = 0; i < rdp_.size(); ++i) {
    absl::StrAppendFormat(&out, "%.17g %.17g\n", options_.orders[i], rdp_[i]);
  }
  return out;
}

absl::Status RdpAccountant::RestoreState(absl::string_view state) {
  std::vector<absl::string_view> lines =
      absl::StrSplit(state, '\n', absl::SkipEmpty());
  if (lines.empty() || lines[0] != kStateHeader) {
    return absl::InvalidArgumentError(
        absl::StrCat("accountant state must start with '", kStateHeader, "'"));
  }
  if (lines.size() - 1 != rdp_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("accountant state has ", lines.size() - 1,
                     " orders, expected ", rdp_.size()));
  }
  std::vector<double> rdp(rdp_.size());
  for (size_t i = 0; i < rdp.size(); ++i) {
    std::vector<absl::string_view> fields =
        absl::StrSplit(lines[i + 1], ' ', absl::SkipEmpty());
    double order = 0.0;
    if (fields.size() != 2 || !absl::SimpleAtod(fields[0], &order) ||
        !absl::SimpleAtod(fields[1], &rdp[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("accountant state line ", i + 2,
                       " is not '<order> <rdp>': '", lines[i + 1], "'"));
    }
    if (order != options_.orders[i]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "accountant state line ", i + 2, " has order ", order, ", expected ",
          options_.orders[i], " (saved with other orders)"));
    }
    if (!(rdp[i] >= 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat("accountant state line ",
                                                     i + 2, " has rdp ", rdp[i],
                                                     ", expected >= 0"));
    }
  }
  rdp_ = std::move(rdp);
  return absl::OkStatus();
}

absl::StatusOr<double> NoiseMultiplierForEpsilon(
    double target_eps, double delta, double q, int64_t steps,
    const RdpAccountant::Options& options) {
  if (!(target_eps > 0.0 && std::isfinite(target_eps))) {
    return absl::InvalidArgumentError(
        absl::StrCat("target_eps must be > 0 and finite, got ", target_eps));
  }
  RETURN_IF_ERROR(ValidateDelta(delta));
  RETURN_IF_ERROR(ValidateMechanism(q, /*sigma=*/1.0));
  if (steps < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("steps must be >= 1, got ", steps));
  }
  RETURN_IF_ERROR(ValidateOrders(options.orders));
  auto eps_at = [&](double sigma) {
    return EpsilonForRun(q, sigma, steps, delta, options).epsilon;
  };
  double lo = kMinSearchSigma;
  double hi = kMaxSearchSigma;
  if (eps_at(lo) <= target_eps) return lo;
  const double eps_hi = eps_at(hi);
  if (eps_hi > target_eps) {
    return absl::OutOfRangeError(absl::StrCat(
        "target_eps ", target_eps, " is not reachable: epsilon is still ",
        eps_hi, " at noise multiplier ", hi, " with these orders"));
  }
  // Invariant: eps_at(lo) > target_eps >= eps_at(hi); bisect in log space.
  while (hi > lo * (1.0 + kSearchRelativeTolerance)) {
    const double mid = std::sqrt(lo * hi);
    if (eps_at(mid) <= target_eps) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return hi;
}

}  // namespace fedge
