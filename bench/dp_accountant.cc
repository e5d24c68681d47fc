// Prints the (epsilon, delta) privacy of standard DP-SGD and DP-FedAvg
// settings from the RDP accountant, one "key=value" line each, and the noise
// multipliers that reach epsilon 1, 4 and 8 in the federated setting.
//
//   build/bench/dp_accountant
//   build/bench/dp_accountant --noise_for EPS Q ROUNDS DELTA
//       prints only the noise multiplier reaching epsilon EPS after ROUNDS
//       rounds with sampling rate Q at DELTA (improved conversion): what
//       bench/dp.sh runs with.
//
// The references (Abadi et al. 2016; TF Privacy's MNIST tutorial and its
// tests) are checked to their published precision by
// tests/common/privacy_accountant_test.cc; this tool shows the figures.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "common/privacy_accountant.h"

namespace fedge {
namespace {

const char* ShortName(RdpConversion conversion) {
  return conversion == RdpConversion::kImproved ? "improved" : "classic";
}

RdpAccountant::Options WithConversion(std::vector<double> orders,
                                      RdpConversion conversion) {
  RdpAccountant::Options options;
  options.orders = std::move(orders);
  options.conversion = conversion;
  return options;
}

// Prints one line for `steps` steps of (q, sigma) at `delta`; false on error.
bool PrintEpsilon(const char* setting, double q, double sigma, int64_t steps,
                  double delta, RdpAccountant::Options options = {}) {
  absl::StatusOr<std::unique_ptr<RdpAccountant>> accountant =
      RdpAccountant::Create(std::move(options));
  if (!accountant.ok()) {
    absl::FPrintF(stderr, "%s: %s\n", setting, accountant.status().ToString());
    return false;
  }
  absl::Status composed = (*accountant)->Compose(q, sigma, steps);
  absl::StatusOr<EpsilonResult> eps =
      composed.ok() ? (*accountant)->GetEpsilon(delta)
                    : absl::StatusOr<EpsilonResult>(composed);
  if (!eps.ok()) {
    absl::FPrintF(stderr, "%s: %s\n", setting, eps.status().ToString());
    return false;
  }
  absl::PrintF(
      "q=%.6g noise_multiplier=%.6g steps=%d delta=%.3g epsilon=%.4f "
      "order=%g conversion=%s setting=\"%s\"\n",
      q, sigma, steps, delta, eps->epsilon, eps->optimal_order,
      ShortName(eps->conversion), setting);
  return true;
}

bool PrintNoiseFor(double target_eps, double delta, double q, int64_t steps) {
  absl::StatusOr<double> sigma =
      NoiseMultiplierForEpsilon(target_eps, delta, q, steps);
  if (!sigma.ok()) {
    absl::FPrintF(stderr, "target epsilon %g: %s\n", target_eps,
                  sigma.status().ToString());
    return false;
  }
  absl::PrintF(
      "target_epsilon=%g q=%.6g steps=%d delta=%.3g noise_multiplier=%.4f "
      "conversion=improved setting=\"FedAvg MNIST, 10 of 100 agents, 100 "
      "rounds\"\n",
      target_eps, q, steps, delta, *sigma);
  return true;
}

int Run() {
  bool ok = true;
  const std::vector<double> defaults = DefaultRdpOrders();
  std::vector<double> moments_orders;  // Abadi et al.: lambda + 1, <= 33.
  for (int order = 2; order <= 33; ++order) moments_orders.push_back(order);

  // Abadi et al., CCS 2016, Sec. 3.1: eps ~ 1.26 (moments accountant).
  ok &= PrintEpsilon("Abadi et al. 2016 moments accountant (published 1.26)",
                     0.01, 4.0, 10000, 1e-5,
                     WithConversion(moments_orders, RdpConversion::kClassic));
  ok &= PrintEpsilon("Abadi et al. 2016 setting", 0.01, 4.0, 10000, 1e-5);

  // TF Privacy MNIST tutorial: N = 60000, batch 256, noise 1.1, 60 epochs.
  const double mnist_q = 256.0 / 60000.0;
  const int64_t mnist_steps =
      static_cast<int64_t>(std::ceil(60 * 60000.0 / 256.0));
  ok &= PrintEpsilon("TF Privacy MNIST tutorial (published 3.01, classic)",
                     mnist_q, 1.1, mnist_steps, 1e-5,
                     WithConversion(defaults, RdpConversion::kClassic));
  ok &= PrintEpsilon("TF Privacy MNIST tutorial", mnist_q, 1.1, mnist_steps,
                     1e-5);

  // TF Privacy compute_dp_sgd_privacy_test.py (published 0.7242, 1.4155).
  ok &= PrintEpsilon("TF Privacy test: N=60000 batch=150 15 epochs",
                     150.0 / 60000.0, 1.3, 6000, 1e-5);
  ok &= PrintEpsilon("TF Privacy test: N=100000 batch=100 30 epochs",
                     100.0 / 100000.0, 1.0, 30000, 1e-7);

  // DP-FedAvg on MNIST: 100 agents, 10 sampled per round, 100 rounds.
  constexpr double kFedQ = 0.1;
  constexpr int64_t kFedRounds = 100;
  constexpr double kFedDelta = 1e-5;
  for (double sigma : {0.5, 0.7, 1.0, 1.5, 2.0}) {
    ok &= PrintEpsilon("FedAvg MNIST, 10 of 100 agents, 100 rounds", kFedQ,
                       sigma, kFedRounds, kFedDelta);
  }
  for (double target : {1.0, 4.0, 8.0}) {
    ok &= PrintNoiseFor(target, kFedDelta, kFedQ, kFedRounds);
  }
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  if (argc == 6 && std::string(argv[1]) == "--noise_for") {
    double eps = 0, q = 0, delta = 0;
    int64_t rounds = 0;
    if (!absl::SimpleAtod(argv[2], &eps) || !absl::SimpleAtod(argv[3], &q) ||
        !absl::SimpleAtoi(argv[4], &rounds) ||
        !absl::SimpleAtod(argv[5], &delta)) {
      absl::FPrintF(stderr,
                    "usage: dp_accountant --noise_for EPS Q ROUNDS "
                    "DELTA\n");
      return 2;
    }
    absl::StatusOr<double> sigma =
        fedge::NoiseMultiplierForEpsilon(eps, delta, q, rounds);
    if (!sigma.ok()) {
      absl::FPrintF(stderr, "%s\n", sigma.status().ToString());
      return 1;
    }
    absl::PrintF("%.9g\n", *sigma);
    return 0;
  }
  if (argc != 1) {
    absl::FPrintF(stderr,
                  "usage: dp_accountant [--noise_for EPS Q ROUNDS DELTA]\n");
    return 2;
  }
  return fedge::Run();
}
