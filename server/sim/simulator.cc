#include "server/sim/simulator.h"

#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/status_macros.h"

namespace fedge {

std::string SimAgentId(int index) {
  return absl::StrFormat("agent-%05d", index);
}

int SimAgentIndex(const std::string& agent_id) {
  absl::string_view rest = agent_id;
  int index;
  if (!absl::ConsumePrefix(&rest, "agent-") ||
      !absl::SimpleAtoi(rest, &index)) {
    return -1;
  }
  return index;
}

absl::StatusOr<std::unique_ptr<Simulator>> Simulator::Create(
    SimulatorOptions options, std::vector<std::vector<int64_t>> partitions,
    ModelState initial_model,
    std::vector<std::unique_ptr<LocalTrainer>> trainers,
    std::function<void(int)> on_worker_start) {
  if (partitions.empty()) {
    return absl::InvalidArgumentError("the simulation needs at least 1 agent");
  }
  if (trainers.empty()) {
    return absl::InvalidArgumentError(
        "the simulation needs at least 1 trainer");
  }
  if (options.eval_every_rounds < 1) {
    return absl::InvalidArgumentError("eval_every_rounds must be >= 1");
  }
  RETURN_IF_ERROR(FedAvgStrategy::Validate(options.strategy));
  // The simulator drives time itself: nobody times out, no deadline passes.
  options.engine.agent_timeout = absl::InfiniteDuration();
  options.engine.round_deadline = absl::InfiniteDuration();
  options.engine.min_available_agents =
      std::min<int>(options.engine.min_available_agents, partitions.size());
  ASSIGN_OR_RETURN(std::unique_ptr<RoundEngine> engine,
                   RoundEngine::Create(options.engine, RealClock::Get()));
  for (size_t i = 0; i < partitions.size(); ++i) {
    RETURN_IF_ERROR(engine->AddAgent(SimAgentId(i)));
  }
  return std::unique_ptr<Simulator>(new Simulator(
      std::move(options), std::move(partitions), std::move(initial_model),
      std::move(trainers), std::move(engine), std::move(on_worker_start)));
}

Simulator::Simulator(SimulatorOptions options,
                     std::vector<std::vector<int64_t>> partitions,
                     ModelState initial_model,
                     std::vector<std::unique_ptr<LocalTrainer>> trainers,
                     std::unique_ptr<RoundEngine> engine,
                     std::function<void(int)> on_worker_start)
    : options_(std::move(options)),
      partitions_(std::move(partitions)),
      global_(std::move(initial_model)),
      trainers_(std::move(trainers)),
      engine_(std::move(engine)),
      strategy_(options_.strategy),
      accumulator_(global_),
      pool_(static_cast<int>(trainers_.size()), std::move(on_worker_start)) {}

absl::Status Simulator::TrainRound(int64_t round, RoundRecord& record) {
  const std::vector<std::string> selected = engine_->SelectedAgents();
  absl::Mutex mu;
  absl::Status first_error;
  double loss_sum = 0, accuracy_sum = 0;
  const absl::Time start = absl::Now();
  pool_.RunBatch(selected.size(), [&](size_t task, int worker) {
    const std::string& agent = selected[task];
    const int index = SimAgentIndex(agent);
    TrainPlan plan = options_.plan;
    plan.seed = MixSeed({options_.seed, static_cast<uint64_t>(round),
                         static_cast<uint64_t>(index)});
    absl::StatusOr<TrainOutput> out =
        trainers_[worker]->Train(global_, plan, partitions_[index]);
    absl::MutexLock lock(&mu);
    if (!out.ok()) {
      if (first_error.ok()) first_error = Annotate(out.status(), agent);
      engine_->ReportFailure(agent, round).IgnoreError();
      return;
    }
    const double n = static_cast<double>(out->metrics.num_examples);
    absl::Status added = accumulator_.Add(out->delta, n);
    if (!added.ok()) {
      FEDGE_LOG(WARNING) << agent << ": update refused: " << added;
      engine_->ReportFailure(agent, round).IgnoreError();
      return;
    }
    engine_->AcceptResult(agent, round, "sim").IgnoreError();
    loss_sum += n * out->metrics.loss;
    accuracy_sum += n * out->metrics.accuracy;
  });
  record.train_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (accumulator_.total_weight() > 0) {
    record.train_loss = loss_sum / accumulator_.total_weight();
    record.train_accuracy = accuracy_sum / accumulator_.total_weight();
  }
  return first_error;
}

absl::Status Simulator::FinishRound(const RoundOutcome& outcome,
                                    RoundRecord& record) {
  record.round = outcome.round;
  record.num_agents = static_cast<int>(outcome.reported.size());
  record.num_failed = static_cast<int>(outcome.failed.size());
  record.num_examples = static_cast<int64_t>(accumulator_.total_weight());
  if (outcome.completed) {
    RETURN_IF_ERROR(strategy_.ApplyFrom(accumulator_, global_));
  }
  accumulator_.Reset();
  const bool last = engine_->state() == RoundState::kDone;
  if (last || engine_->completed_rounds() % options_.eval_every_rounds == 0) {
    ASSIGN_OR_RETURN(EvalMetrics eval, trainers_[0]->Evaluate(global_));
    record.test_loss = eval.loss;
    record.test_accuracy = eval.accuracy;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RoundRecord>> Simulator::Run(
    const std::function<void(const RoundRecord&)>& on_round) {
  std::vector<RoundRecord> records;
  while (true) {
    const absl::Time start = absl::Now();
    // Starts the next round (the previous one's outcome was consumed).
    if (!engine_->Tick().empty()) {
      return absl::InternalError("round finished outside the simulator loop");
    }
    if (engine_->state() != RoundState::kInProgress) break;
    const int64_t round = engine_->current_round();
    RoundRecord record;
    RETURN_IF_ERROR(TrainRound(round, record));
    std::vector<RoundOutcome> outcomes = engine_->Tick();
    if (outcomes.size() != 1) {
      return absl::InternalError("round did not close after all agents ran");
    }
    RETURN_IF_ERROR(FinishRound(outcomes[0], record));
    record.round_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    records.push_back(record);
    if (on_round) on_round(record);
    if (options_.stop_at_accuracy > 0 && record.test_accuracy.has_value() &&
        *record.test_accuracy >= options_.stop_at_accuracy) {
      break;
    }
  }
  return records;
}

}  // namespace fedge
