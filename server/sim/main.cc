// fedge-sim: a federation of N virtual agents in one process.
//
//   fedge-sim --config configs/sim/mnist_2nn_iid.textproto
//       [--data_dir DIR] [--rounds N] [--history_out FILE.csv] [--field=value]
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/config_loader.h"
#include "common/logging.h"
#include "common/ml/blas_kernels.h"
#include "fedge/v1/config.pb.h"
#include "server/sim/sim_runner.h"

namespace {

constexpr char kUsage[] =
    "fedge-sim: simulate a federation of N agents in one process (FedAvg).\n"
    "\n"
    "usage: fedge-sim --config FILE [--data_dir DIR] [--rounds N]\n"
    "                 [--history_out FILE.csv] [--<field.path>=VALUE ...]\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime failure (data, files, a run that stops\n"
    "early), 2 bad usage or configuration.\n"
    "\n"
    "Every field of the config (proto/fedge/v1/config.proto, SimConfig) can\n"
    "be set with a flag named by its path:\n";

}  // namespace

int main(int argc, char** argv) {
  fedge::CommandLineSpec spec;
  spec.aliases = {{"data_dir", "data.data_dir"}};
  spec.config = fedge::v1::SimConfig::descriptor();
  auto cmd = fedge::ParseCommandLine(argc - 1, argv + 1, spec);
  if (!cmd.ok()) {
    absl::FPrintF(stderr, "fedge-sim: %s\n", cmd.status().message());
    return 2;
  }
  if (cmd->help) {
    absl::PrintF("%s%s", kUsage,
                 fedge::DescribeFlags(fedge::v1::SimConfig::descriptor()));
    return 0;
  }
  if (!cmd->positional.empty()) {
    absl::FPrintF(stderr, "fedge-sim: unexpected argument '%s' (see --help)\n",
                  cmd->positional[0]);
    return 2;
  }
  fedge::SetMinLogLevel(fedge::LogLevel::kWarning);  // Engine chatter.
  fedge::ml::ChooseBlasKernels();  // Before any thread or matrix product.
  fedge::v1::SimConfig config;
  if (auto s = fedge::BuildConfig(*cmd, &config); !s.ok()) {
    absl::FPrintF(stderr, "fedge-sim: %s\n", s.message());
    return 2;
  }
  auto summary = fedge::RunSimulation(config, stdout);
  if (!summary.ok()) {
    absl::FPrintF(stderr, "fedge-sim: %s\n", summary.status().message());
    // As fedge-coordinator: a config the run cannot take is bad usage.
    return absl::IsInvalidArgument(summary.status()) ? 2 : 1;
  }
  const int attempted = static_cast<int>(summary->rounds.size());
  absl::PrintF("done: %d rounds", summary->completed_rounds);
  if (attempted != summary->completed_rounds) {
    absl::PrintF(" completed of %d attempted (%d abandoned)", attempted,
                 attempted - summary->completed_rounds);
  }
  absl::PrintF(" in %.1f s, best test accuracy %.2f%%", summary->total_seconds,
               100 * summary->best_accuracy);
  if (summary->first_round_at_target > 0) {
    absl::PrintF(", reached %.2f%% at round %d",
                 100 * config.stop_at_accuracy(),
                 summary->first_round_at_target);
    if (summary->simulated_seconds_at_target >= 0) {
      absl::PrintF(" (simulated %.2f s)", summary->simulated_seconds_at_target);
    }
  }
  absl::PrintF("\n");
  return 0;
}
