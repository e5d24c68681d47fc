// Strategy: a round's policy, in one object shared by fedge-coordinator and
// fedge-sim (Flower's vocabulary, DESIGN.md "Policy: the Strategy seam").
//
//   ConfigureFit      which agents train in a round, and the plan of each
//                     (from what each declared: examples, device class,
//                     speed), with the one per-agent seed derivation.
//   CheckUpdate /     aggregate_fit, streaming: each accepted update is
//   AddUpdate         validated, then folded into the round's state as it
//                     arrives (memory O(model) for the averaging strategies;
//                     bounded buffers for the robust ones).
//   AggregateFit      the next global model from the round's updates; the
//                     failures are data, not exceptions.
//   ConfigureEvaluate which agents evaluate a model on their own held-out
//   AggregateEvaluate data, and the example-weighted result.
//   SaveState /       the strategy's state (server momentum, optimizer
//   RestoreState      moments, control variates) in the coordinator's
//                     checkpoint, so a resumed run equals an uninterrupted one.
//
// Strategies by name (CreateStrategy): fedavg, fedavgm, fedprox, fednova,
// fedadam, fedyogi, fedadagrad, scaffold, median, trimmed_mean, krum,
// multi_krum, norm_bounded. No gRPC, no LibTorch.
//
// Thread-compatible: the caller serializes calls (RoundAccumulator does).
#ifndef FEDGE_COMMON_STRATEGY_H_
#define FEDGE_COMMON_STRATEGY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/dp.h"
#include "common/local_trainer.h"
#include "common/tensor_buffer.h"

namespace fedge {

// What an agent declared when it joined.
struct AgentInfo {
  std::string id;
  int64_t num_examples = 0;  // Local training examples (0: not declared).
  std::string device_class;  // E.g. "default", "slow" ("" = default).
  // Examples per second the device trains (0: unknown), for time budgets.
  double examples_per_second = 0;
};

// The local work of one device class (heterogeneous devices): slow devices
// do less instead of missing the deadline.
struct DeviceClassPlan {
  std::string device_class;
  int epochs = 0;         // > 0 overrides the plan's epochs.
  int64_t max_steps = 0;  // > 0 caps the local optimizer steps.
  // Overrides the update encoding's kind for this class.
  std::optional<UpdateEncoding> update_encoding;
};

// Everything CreateStrategy needs; converted from StrategyConfig by
// common/fl_config.h (which validates it, naming the config fields).
struct StrategyOptions {
  std::string name = "fedavg";
  // Selection (configure_fit): `count` agents if > 0, else
  // max(1, round(fraction * available)); never fewer than min_fit_agents.
  double fraction = 0.1;
  int count = 0;
  int min_fit_agents = 1;
  uint64_t seed = 1;  // Selection and per-agent plan seeds.
  TrainPlan plan;     // The base plan of every agent.
  std::vector<DeviceClassPlan> device_plans;
  // Each agent's optimizer steps are capped so that its declared speed
  // finishes them within this budget (0 = no budget).
  int64_t local_time_budget_ms = 0;
  // Server update. server_learning_rate < 0 takes the strategy's default
  // (1 for the averaging strategies, 0.01 for the adaptive ones).
  double server_learning_rate = -1;
  double server_momentum = 0.9;                  // fedavgm.
  double proximal_mu = 0.01;                     // fedprox.
  double beta1 = 0.9, beta2 = 0.99, tau = 1e-3;  // fedadam/yogi/adagrad.
  double trim_beta = 0.1;                        // trimmed_mean.
  int krum_f = 1;                                // krum, multi_krum.
  int krum_m = 0;               // multi_krum: updates averaged (0 = n - f).
  double max_update_norm = 10;  // norm_bounded: L2 clip of each update.
  // Robust strategies keep every update of a round: at most this many.
  int max_buffered_updates = 128;
  // Federated evaluation (configure_evaluate).
  double fraction_evaluate = 0;
  int min_evaluate_agents = 1;
  // Differential privacy (DP-FedAvg, common/dp.h; unset: off). Plans carry
  // the clip norm (and, for local DP, the noise stddev). Central DP: every
  // update weighs 1 (not its examples), the mean divides by the agents
  // sampled (FitSelectionSize of the roster when the round started), and
  // Gaussian noise of stddev MeanNoiseStddev is added to it before the
  // server step. Only fedavg, fedprox, fedavgm, fedadam, fedyogi and
  // fedadagrad accept it (ValidateStrategyOptions).
  std::optional<DpFedAvgOptions> dp;
};

// One agent's instructions for a round.
struct FitInstruction {
  std::string agent_id;
  TrainPlan plan;  // With the agent's seed, epochs and step cap.
};

// What AggregateFit knows of the round besides its updates.
struct FitRound {
  int64_t round = 0;
  // Agents in the roster when the round started (SCAFFOLD's N).
  int64_t num_available = 0;
  // Selected agents that did not report (failed, dropped, late).
  std::vector<std::string> failures;
};

// One accepted update, as the round accumulator hands it to the strategy.
struct FitResult {
  std::string agent_id;
  double num_examples = 0;  // FedAvg weight, already bounded by the caller.
  // What the agent declared at join (0: nothing), which bounds num_examples
  // (common/update_limits.h).
  int64_t declared_examples = 0;
  int64_t num_steps = 0;  // Local optimizer steps (FedNova).
  TrainMetrics metrics;
  ModelState* delta = nullptr;   // Local minus global; strategies may
                                 // modify it (e.g. clip it).
  ModelState* extras = nullptr;  // Strategy-specific tensors (SCAFFOLD's
                                 // control-variate delta); may be null.
};

// The sum of a round's updates as secure aggregation delivers it (the
// server never sees them one by one): for the sum-only strategies
// (IsSumOnlyStrategy), what folding each update would have accumulated.
struct FitSum {
  // sum_i w_i delta_i over float32 tensors, w_i each update's weight as the
  // strategy folds it (UpdateSumWeights); int64 tensors (counters) are
  // taken as they are (the global model's: secure aggregation cannot take
  // a maximum).
  const ModelState* weighted_delta_sum = nullptr;
  double total_weight = 0;  // sum_i w_i (> 0).
  double examples = 0;      // sum_i n_i.
  double work = 0;          // sum_i n_i a_i (FedNova's local work a_i).
  int64_t num_updates = 0;  // Updates in the sum (> 0).
};

// How the sum-only strategies weigh one update (fedavg and the like: its
// examples; fednova: examples / local work) and its local work a_i (the
// local steps, or FedNova's momentum-corrected count), so that an agent can
// weight its own update before secure aggregation as the strategy would.
struct UpdateWeights {
  double weight = 0;
  double work = 0;
};
UpdateWeights UpdateSumWeights(const StrategyOptions& options,
                               double num_examples, int64_t num_steps);

class Strategy {
 public:
  virtual ~Strategy() = default;

  virtual absl::string_view name() const = 0;

  // configure_fit: the agents of `round` (sorted by id) and their plans.
  // `available` is sorted by id. Deterministic in (options, round,
  // available). Empty when `available` is empty.
  virtual std::vector<FitInstruction> ConfigureFit(
      int64_t round, absl::Span<const AgentInfo> available) const;

  // What an update must carry beyond the delta (extras' schema); empty for
  // most strategies.
  virtual ModelSchema ExtrasSchema(const ModelSchema& model) const {
    return {};
  }
  // Tensors agents receive with the global model (SCAFFOLD's server control
  // variate), or null.
  virtual const ModelState* BroadcastExtras() const { return nullptr; }
  // The name of the agent-side algorithm agents must run ("" = plain local
  // training; "scaffold").
  virtual absl::string_view client_algorithm() const { return ""; }

  // Checks an update before it changes anything: INVALID_ARGUMENT naming
  // what is wrong (schema, non-finite values, a FedNova update without its
  // step count, a SCAFFOLD update without its control variate).
  virtual absl::Status CheckUpdate(const FitResult& result) const = 0;
  // CheckUpdate, then folds the update into the round. INVALID_ARGUMENT
  // (nothing changed) as CheckUpdate; RESOURCE_EXHAUSTED when a robust
  // strategy's buffer is full (max_buffered_updates).
  absl::Status AddUpdate(const FitResult& result);
  // Folds an update that CheckUpdate accepted, with nothing added since
  // (the caller holds the lock it checked under): an update's values are
  // read once for validation and once for folding, never twice.
  void AddCheckedUpdate(const FitResult& result) { Fold(result); }
  // Folds the round's updates given as their sum (secure aggregation).
  // FAILED_PRECONDITION for a strategy that needs each update
  // (!IsSumOnlyStrategy); INVALID_ARGUMENT (nothing changed) for a sum of
  // another schema, not finite, or without weight or updates.
  virtual absl::Status AddSum(const FitSum& sum);
  // Updates folded in the round so far.
  virtual int64_t num_updates() const = 0;
  // aggregate_fit: the next global model from `global` and the round's
  // updates, then forgets the round. FAILED_PRECONDITION when no update was
  // added or too few for the strategy (Krum's 2f+3); INVALID_ARGUMENT when
  // the result would not be finite. On error the strategy's state is
  // unchanged and the round forgotten.
  virtual absl::StatusOr<ModelState> AggregateFit(const FitRound& round,
                                                  const ModelState& global) = 0;
  // Forgets the round's updates (an abandoned round).
  virtual void DiscardRound() = 0;

  // configure_evaluate: the agents that evaluate the model of `round` on
  // their held-out data (none when fraction_evaluate is 0). Sorted.
  virtual std::vector<std::string> ConfigureEvaluate(
      int64_t round, absl::Span<const AgentInfo> available) const;
  // aggregate_evaluate: the example-weighted mean of `results`
  // (num_examples 0 when empty).
  virtual EvalMetrics AggregateEvaluate(
      absl::Span<const EvalMetrics> results) const;

  // The strategy's state across rounds (empty for stateless ones), and its
  // restoration for a model of `schema`. RestoreState: DATA_LOSS or
  // INVALID_ARGUMENT (nothing changed) for bytes that do not fit.
  virtual std::string SaveState() const { return ""; }
  virtual absl::Status RestoreState(absl::string_view bytes,
                                    const ModelSchema& schema);

  // Bytes the strategy keeps beyond the model (buffers, moments).
  virtual int64_t StateBytes() const { return 0; }

  const StrategyOptions& options() const { return options_; }

 protected:
  explicit Strategy(StrategyOptions options) : options_(std::move(options)) {}
  // The base plan for `agent` in `round`: its seed, its device class's
  // epochs and step cap, its time budget.
  TrainPlan PlanFor(int64_t round, const AgentInfo& agent) const;
  // Folds an update CheckUpdate accepted into the round (cannot fail).
  virtual void Fold(const FitResult& result) = 0;

  const StrategyOptions options_;
};

// Names CreateStrategy accepts, for help texts and errors.
std::vector<std::string> StrategyNames();
// True for strategies whose aggregate needs only the running weighted sum
// (they stream; secure aggregation can serve them).
bool IsSumOnlyStrategy(absl::string_view name);

// The strategy `options.name` for models shaped like `model` (values
// ignored). INVALID_ARGUMENT naming the option for an unknown name or a
// hyper-parameter out of range.
absl::StatusOr<std::unique_ptr<Strategy>> CreateStrategy(
    const StrategyOptions& options, const ModelState& model);

// Validates the options on their own (CreateStrategy does too).
absl::Status ValidateStrategyOptions(const StrategyOptions& options);

// How many agents ConfigureFit selects out of `available`: `count` if > 0,
// else max(1, round(fraction * available)); at least min_fit_agents; at
// most `available`.
size_t FitSelectionSize(const StrategyOptions& options, size_t available);

// True for the strategies DP-FedAvg works with (sum-only, uniform weights,
// no per-agent state): fedavg, fedprox, fedavgm, fedadam, fedyogi,
// fedadagrad.
bool SupportsDifferentialPrivacy(absl::string_view name);

// The agents of a round: `k` of `ids` (sorted) for `round`, a pure function
// of (seed, round, ids): the same in the simulator and the coordinator, on
// every platform and after a resume.
std::vector<std::string> SampleAgents(std::vector<std::string> ids, size_t k,
                                      uint64_t seed, int64_t round);

// The seed of an agent's local training in a round: the one derivation
// (portable, no std::hash), identical in the simulator and the coordinator.
uint64_t AgentPlanSeed(uint64_t seed, int64_t round,
                       absl::string_view agent_id);

}  // namespace fedge

#endif  // FEDGE_COMMON_STRATEGY_H_
