// SimRunner wires a fedge-sim run together from a validated SimConfig: loads
// the data, splits it among the virtual agents, builds one LibTorch trainer
// per worker thread, runs the Simulator, prints one progress line per round
// and writes the history CSV.
#ifndef FEDGE_SERVER_SIM_SIM_RUNNER_H_
#define FEDGE_SERVER_SIM_SIM_RUNNER_H_

#include <cstdio>
#include <vector>

#include "absl/status/statusor.h"
#include "common/history.h"
#include "fedge/v1/config.pb.h"

namespace fedge {

struct SimRunSummary {
  // One record per attempted round (abandoned ones included).
  std::vector<RoundRecord> rounds;
  // Rounds that count toward SimConfig.rounds (abandoned ones do not).
  int completed_rounds = 0;
  double best_accuracy = 0;
  int64_t first_round_at_target = -1;  // -1 when stop_at_accuracy not met.
  // Simulated time then (device_speed set), else -1.
  double simulated_seconds_at_target = -1;
  double total_seconds = 0;
  int num_threads = 0;
};

// Runs the simulation described by `config` (validated here first), writing
// progress to `out`. Errors name the config field, file or agent involved.
absl::StatusOr<SimRunSummary> RunSimulation(const v1::SimConfig& config,
                                            std::FILE* out);

}  // namespace fedge

#endif  // FEDGE_SERVER_SIM_SIM_RUNNER_H_
