// Simulator: N virtual agents in one process, driven by the same RoundEngine,
// aggregation and strategy as the networked coordinator, with no network.
//
// Each round the engine selects agents; the selected agents train in
// parallel on a thread pool (one LocalTrainer per worker thread); each update
// is folded into one streaming accumulator as soon as it is ready (memory
// O(model), not O(agents x model)); the strategy makes the next global model,
// which worker 0's trainer then evaluates. Torch-free: trainers come in
// through the LocalTrainer interface.
//
// Not thread-safe: one thread calls Run().
#ifndef FEDGE_SERVER_SIM_SIMULATOR_H_
#define FEDGE_SERVER_SIM_SIMULATOR_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/aggregation.h"
#include "common/history.h"
#include "common/local_trainer.h"
#include "common/strategy.h"
#include "common/tensor_buffer.h"
#include "common/thread_pool.h"
#include "server/round_engine.h"

namespace fedge {

struct SimulatorOptions {
  // Selection and quorum (num_rounds is the number of rounds to run).
  RoundEngineOptions engine;
  FedAvgOptions strategy;
  // Local training; plan.seed is replaced per agent and round.
  TrainPlan plan;
  uint64_t seed = 1;
  // Evaluate every this many rounds (and always after the last).
  int eval_every_rounds = 1;
  // Stop once the test accuracy reaches this (0 = never).
  double stop_at_accuracy = 0;
};

class Simulator {
 public:
  // `partitions[i]` are the example indices of agent i (into the trainers'
  // training set). `trainers` holds one trainer per worker thread (>= 1);
  // `on_worker_start(worker)` runs once on each worker thread first.
  // INVALID_ARGUMENT for empty partitions or trainers, or bad options.
  static absl::StatusOr<std::unique_ptr<Simulator>> Create(
      SimulatorOptions options, std::vector<std::vector<int64_t>> partitions,
      ModelState initial_model,
      std::vector<std::unique_ptr<LocalTrainer>> trainers,
      std::function<void(int worker)> on_worker_start = nullptr);

  // Runs until num_rounds rounds completed or the accuracy target is met,
  // calling `on_round` after each finished round. Returns the records, or
  // the first training/evaluation error.
  absl::StatusOr<std::vector<RoundRecord>> Run(
      const std::function<void(const RoundRecord&)>& on_round);

  const ModelState& global_model() const { return global_; }

 private:
  Simulator(SimulatorOptions options,
            std::vector<std::vector<int64_t>> partitions,
            ModelState initial_model,
            std::vector<std::unique_ptr<LocalTrainer>> trainers,
            std::unique_ptr<RoundEngine> engine,
            std::function<void(int)> on_worker_start);
  // Trains the selected agents of `round` and folds their updates.
  absl::Status TrainRound(int64_t round, RoundRecord& record);
  absl::Status FinishRound(const RoundOutcome& outcome, RoundRecord& record);

  SimulatorOptions options_;
  std::vector<std::vector<int64_t>> partitions_;
  ModelState global_;
  std::vector<std::unique_ptr<LocalTrainer>> trainers_;
  std::unique_ptr<RoundEngine> engine_;
  FedAvgStrategy strategy_;
  WeightedMeanAccumulator accumulator_;
  ThreadPool pool_;
};

// "agent-00042" for index 42, and back (-1 when not an agent id).
std::string SimAgentId(int index);
int SimAgentIndex(const std::string& agent_id);

}  // namespace fedge

#endif  // FEDGE_SERVER_SIM_SIMULATOR_H_
