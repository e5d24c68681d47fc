// Simulator: N virtual agents in one process, driven by the same RoundEngine,
// strategy (common/strategy.h) and round close (server/round_accumulator.h)
// as the networked coordinator, with no network.
//
// Each round the strategy selects agents and plans their local work; the
// selected agents train in parallel on a thread pool (one LocalTrainer per
// worker thread); each update is folded into the round as soon as it is
// ready (memory O(model) for the streaming strategies); the round close
// makes the next global model, which worker 0's trainer then evaluates. An
// agent whose training fails (an error in training, an injected dropout) is
// recorded as a failure of that round, as in the coordinator, and the run
// goes on. SCAFFOLD's agent-side state lives here per virtual agent.
// With differential privacy (StrategyOptions::dp) the simulated agents clip
// (and for local DP noise) their updates as fedge-agent does
// (PrivatizeUpdate), and no round starts that would exceed the budget.
// Torch-free: trainers come in through the LocalTrainer interface.
//
// Not thread-safe: one thread calls Run().
#ifndef FEDGE_SERVER_SIM_SIMULATOR_H_
#define FEDGE_SERVER_SIM_SIMULATOR_H_

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "common/history.h"
#include "common/local_trainer.h"
#include "common/scaffold.h"
#include "common/secagg_update.h"
#include "common/strategy.h"
#include "common/tensor_buffer.h"
#include "common/thread_pool.h"
#include "common/update_codec.h"
#include "server/round_accumulator.h"
#include "server/round_engine.h"

namespace fedge {

struct SimulatorOptions {
  // Quorum and the number of rounds (num_rounds).
  RoundEngineOptions engine;
  // The strategy, with the base plan, selection and the run's seed.
  StrategyOptions strategy;
  // Poisoning limits on every update (weight, metrics, norm), as in the
  // coordinator; an agent's declared examples are its partition's size.
  UpdateLimits update_limits;
  // How agents receive the global model (fp32 or fp16): they train from it
  // as downloaded, the global model stays float32 (as in the coordinator).
  UpdateEncoding download_encoding = UpdateEncoding::kFp32;
  // Evaluate every this many rounds (and always after the last).
  int eval_every_rounds = 1;
  // Stop once the test accuracy reaches this (0 = never).
  double stop_at_accuracy = 0;
  // Run() fails (FAILED_PRECONDITION) after this many rounds in a row are
  // abandoned; 0 = never.
  int max_abandoned_rounds = 10;
  // Each selected agent drops out of a round with this probability
  // (decided from the seed, the round and the agent): a failure.
  double dropout_probability = 0;
  // Device class of agent i (missing or "" = default), for the strategy's
  // per-class plans.
  std::vector<std::string> device_classes;
  // Federated evaluation (strategy.fraction_evaluate > 0): agent i's
  // held-out examples, as indices into the trainers' evaluation set.
  std::vector<std::vector<int64_t>> eval_partitions;
  // Simulated time (empty: none): agent i trains examples_per_second[i]
  // examples per second, and every task costs task_overhead_seconds more
  // (transfers). A sync round lasts as long as its slowest reporting agent.
  std::vector<double> examples_per_second;
  double task_overhead_seconds = 0;
  // When > 0, each agent's epochs in a round are drawn uniformly from
  // 1..random_epochs_max (heterogeneous local work).
  int random_epochs_max = 0;
  // Poisoned agents (indices) send their update times poison_scale.
  std::vector<int> poisoned;
  double poison_scale = -10;
  // Asynchronous buffered aggregation (FedBuff, Nguyen et al. 2022)
  // instead of rounds: `concurrency` agents train at any time, each on the
  // newest model when it starts; an update trained from a version s
  // versions old gets weight num_examples / sqrt(1 + s) (refused beyond
  // max_staleness); every buffer_size updates make the next version (a
  // "round" of the history). Needs simulated time.
  struct FedBuff {
    bool enabled = false;
    int buffer_size = 10;
    int max_staleness = 20;
    int concurrency = 10;
  } fedbuff;
  // Secure aggregation (sync rounds, sum-only strategies): each selected
  // agent runs a SecAggClient and the round one SecAggRound; the sum
  // takes the strategy's server step as a plain round's updates would.
  SecureAggregationOptions secure_aggregation;
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
  // calling `on_round` after each finished round, abandoned ones included
  // (they do not count toward num_rounds, as in the coordinator). Returns
  // the records, or the first evaluation error (a training error is a
  // failed agent); FAILED_PRECONDITION after max_abandoned_rounds abandoned
  // rounds in a row, saying why their agents did not report.
  absl::StatusOr<std::vector<RoundRecord>> Run(
      const std::function<void(const RoundRecord&)>& on_round);

  // Where the run stands, for `on_round` to report: the rounds completed so
  // far (those that count toward num_rounds; the record's `round` is the
  // id, abandoned rounds included), and whether the round just reported
  // was abandoned (no new global model: too few agents reported, or the
  // aggregate was refused).
  int completed_rounds() const { return completed_rounds_; }
  bool last_round_abandoned() const { return last_round_abandoned_; }

  const ModelState& global_model() const { return global_; }
  // Wall time spent in secure aggregation so far (zero when off): in the
  // server's half (SecAggRound, what a coordinator spends) and in the
  // agents' (summed over agents: devices would spend it in parallel);
  // training excluded.
  struct SecAggSeconds {
    double server = 0;
    double agents = 0;
    int rounds = 0;
  };
  const SecAggSeconds& secagg_seconds() const { return secagg_seconds_; }
  Strategy& strategy() { return *strategy_; }
  // The privacy ledger (null without strategy.dp).
  const RoundPrivacy* privacy() const { return accumulator_.privacy(); }
  // Why Run() stopped before its last round (the privacy budget's message);
  // empty otherwise.
  const std::string& stop_reason() const { return stop_reason_; }

 private:
  Simulator(SimulatorOptions options,
            std::vector<std::vector<int64_t>> partitions,
            ModelState initial_model,
            std::vector<std::unique_ptr<LocalTrainer>> trainers,
            std::unique_ptr<RoundEngine> engine,
            std::unique_ptr<Strategy> strategy,
            std::function<void(int)> on_worker_start);
  // Trains the agents of `round` on the pool and folds their updates;
  // returns the simulated duration of the round (0 without simulated time).
  // Agents train from `downloaded` (the global model as they receive it).
  double TrainRound(int64_t round, const std::vector<FitInstruction>& plan,
                    const ModelState& downloaded);
  // TrainRound with secure aggregation (simulator_secagg.cc): keys are
  // advertised and shared first, then each agent trains and sends its
  // masked input, which the session adds at once; after unmasking the sum
  // is folded into the round. An agent that fails after sharing its keys
  // is a dropout the protocol recovers. ABORTED (or another error) when
  // the round cannot be aggregated: the caller abandons it. `*slowest` is
  // the simulated duration, as TrainRound returns it.
  absl::Status TrainSecureRound(int64_t round,
                                const std::vector<FitInstruction>& plan,
                                const ModelState& downloaded, double* slowest);
  // One agent's local training from `base`: its update (SCAFFOLD's delta in
  // *extras), or why it failed. `*seconds` is its simulated compute time.
  // The update goes through the plan's encoding (top-k with error
  // feedback kept per agent): the returned delta is what the coordinator
  // would decode, `*bytes` its size on the wire.
  absl::StatusOr<TrainOutput> TrainLocal(int64_t round,
                                         const FitInstruction& instruction,
                                         const ModelState& base,
                                         LocalTrainer& trainer,
                                         std::optional<ModelState>* extras,
                                         double* seconds, int64_t* bytes);
  // The simulated time agent `index` takes for `output`.
  double SimulatedSeconds(int index, const TrainOutput& output,
                          const TrainPlan& plan) const;
  // Evaluation of the new global model for the record of `round`.
  absl::Status EvaluateRound(int64_t round, bool last, RoundRecord& record);
  absl::StatusOr<std::vector<RoundRecord>> RunFedBuff(
      const std::function<void(const RoundRecord&)>& on_round);
  bool DropsOut(int64_t round, int agent) const;
  // Abandoned rounds in a row, and what became of their selected agents.
  struct AbandonedStreak {
    int rounds = 0;
    int64_t first_round = 0;
    int reported = 0;  // Updates accepted (short of the quorum).
    int failed = 0;    // Selected agents that did not report...
    int dropped = 0;   // ... of which simulated dropouts.
  };
  // Counts the abandoned round of `record` (its agents: `plan`) in
  // `streak`.
  void AddAbandoned(const RoundRecord& record,
                    const std::vector<FitInstruction>& plan,
                    AbandonedStreak* streak) const;
  // Why the run stops after `streak` (FAILED_PRECONDITION).
  absl::Status AbandonedError(const AbandonedStreak& streak,
                              int64_t last_round) const;
  // Federated evaluation of the global model after `round` (the strategy's
  // configure/aggregate_evaluate); unset when off or nobody evaluated.
  absl::StatusOr<std::optional<EvalMetrics>> FederatedEvaluation(int64_t round);

  SimulatorOptions options_;
  std::vector<std::vector<int64_t>> partitions_;
  std::vector<AgentInfo> agents_;
  ModelState global_;
  std::vector<std::unique_ptr<LocalTrainer>> trainers_;
  std::unique_ptr<RoundEngine> engine_;
  std::unique_ptr<Strategy> strategy_;
  RoundAccumulator accumulator_;
  std::vector<bool> poisoned_;
  // Top-k error feedback: what each agent has not sent yet.
  std::vector<ModelState> residuals_;
  // SCAFFOLD: each agent's control variate, created at its first round.
  std::vector<std::optional<ScaffoldClient>> scaffold_;
  SecAggSeconds secagg_seconds_;
  // Secret base seed of the simulated agents' local DP noise.
  uint64_t agent_noise_secret_ = 0;
  std::string stop_reason_;
  int completed_rounds_ = 0;
  bool last_round_abandoned_ = false;
  ThreadPool pool_;
};

// "agent-00042" for index 42, and back (-1 when not an agent id).
std::string SimAgentId(int index);
int SimAgentIndex(const std::string& agent_id);

}  // namespace fedge

#endif  // FEDGE_SERVER_SIM_SIMULATOR_H_
