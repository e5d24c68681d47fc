#include "server/sim/simulator.h"

#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/dp.h"
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
  if (!(options.dropout_probability >= 0 && options.dropout_probability <= 1)) {
    return absl::InvalidArgumentError("dropout_probability must be in [0, 1]");
  }
  if (options.secure_aggregation.enabled &&
      (options.fedbuff.enabled || !IsSumOnlyStrategy(options.strategy.name))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy.secure_aggregation needs sync rounds and a strategy that "
        "uses only the weighted sum (fedavg, fedavgm, fedprox, fednova, "
        "fedadam, fedyogi, fedadagrad), got strategy '",
        options.strategy.name, "'",
        options.fedbuff.enabled ? " (fedbuff)" : ""));
  }
  if (options.strategy.dp.has_value() && options.fedbuff.enabled) {
    return absl::InvalidArgumentError(
        "differential privacy needs rounds: strategy.mode must be sync with "
        "strategy.dp");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Strategy> strategy,
                   CreateStrategy(options.strategy, initial_model));
  // The simulator drives time itself: nobody times out, no deadline passes.
  options.engine.agent_timeout = absl::InfiniteDuration();
  options.engine.round_deadline = absl::InfiniteDuration();
  options.engine.min_available_agents =
      std::min<int>(options.engine.min_available_agents, partitions.size());
  options.engine.min_fit_agents = std::min(options.engine.min_fit_agents,
                                           options.engine.min_available_agents);
  ASSIGN_OR_RETURN(std::unique_ptr<RoundEngine> engine,
                   RoundEngine::Create(options.engine, RealClock::Get()));
  for (size_t i = 0; i < partitions.size(); ++i) {
    RETURN_IF_ERROR(engine->AddAgent(SimAgentId(i)));
  }
  return std::unique_ptr<Simulator>(new Simulator(
      std::move(options), std::move(partitions), std::move(initial_model),
      std::move(trainers), std::move(engine), std::move(strategy),
      std::move(on_worker_start)));
}

Simulator::Simulator(SimulatorOptions options,
                     std::vector<std::vector<int64_t>> partitions,
                     ModelState initial_model,
                     std::vector<std::unique_ptr<LocalTrainer>> trainers,
                     std::unique_ptr<RoundEngine> engine,
                     std::unique_ptr<Strategy> strategy,
                     std::function<void(int)> on_worker_start)
    : options_(std::move(options)),
      partitions_(std::move(partitions)),
      global_(std::move(initial_model)),
      trainers_(std::move(trainers)),
      engine_(std::move(engine)),
      strategy_(std::move(strategy)),
      accumulator_(strategy_.get(), options_.update_limits),
      residuals_(partitions_.size()),
      scaffold_(partitions_.size()),
      pool_(static_cast<int>(trainers_.size()), std::move(on_worker_start)) {
  if (options_.strategy.dp.has_value()) {
    // Agents' noise: from the configured seed (reproducible runs) or fresh.
    const uint64_t seed = options_.strategy.dp->noise_seed;
    agent_noise_secret_ =
        seed != 0 ? MixSeed({seed, 0x6167656e7473ULL}) : SecretSeed();
  }
  poisoned_.assign(partitions_.size(), false);
  for (int i : options_.poisoned) {
    if (i >= 0 && i < static_cast<int>(poisoned_.size())) poisoned_[i] = true;
  }
  for (size_t i = 0; i < partitions_.size(); ++i) {
    AgentInfo info;
    info.id = SimAgentId(i);
    info.num_examples = static_cast<int64_t>(partitions_[i].size());
    if (i < options_.device_classes.size()) {
      info.device_class = options_.device_classes[i];
    }
    agents_.push_back(std::move(info));
  }
}

bool Simulator::DropsOut(int64_t round, int agent) const {
  if (options_.dropout_probability <= 0) return false;
  DeterministicRng rng(
      MixSeed({options_.strategy.seed, 0x64726f70ULL,
               static_cast<uint64_t>(round), static_cast<uint64_t>(agent)}));
  return rng.UniformDouble() < options_.dropout_probability;
}

double Simulator::SimulatedSeconds(int index, const TrainOutput& output,
                                   const TrainPlan& plan) const {
  if (options_.examples_per_second.empty()) return 0;
  const double examples =
      static_cast<double>(output.metrics.num_steps) * plan.batch_size;
  return examples / options_.examples_per_second[index] +
         options_.task_overhead_seconds;
}

absl::StatusOr<TrainOutput> Simulator::TrainLocal(
    int64_t round, const FitInstruction& instruction, const ModelState& base,
    LocalTrainer& trainer, std::optional<ModelState>* extras, double* seconds,
    int64_t* bytes) {
  const int index = SimAgentIndex(instruction.agent_id);
  if (DropsOut(round, index)) {
    return absl::UnavailableError("dropped out (simulated)");
  }
  TrainPlan plan = instruction.plan;
  if (options_.random_epochs_max > 0) {
    DeterministicRng rng(
        MixSeed({options_.strategy.seed, 0x65706f63ULL,
                 static_cast<uint64_t>(round), static_cast<uint64_t>(index)}));
    plan.epochs = 1 + static_cast<int>(rng.UniformInt(
                          static_cast<uint64_t>(options_.random_epochs_max)));
  }
  const ModelState* server_control = strategy_->BroadcastExtras();
  std::optional<ModelState> correction;
  if (strategy_->client_algorithm() == "scaffold") {
    if (!scaffold_[index].has_value()) {
      ASSIGN_OR_RETURN(ScaffoldClient c,
                       ScaffoldClient::Create(SchemaOf(base), ModelState()));
      scaffold_[index] = std::move(c);
    }
    ASSIGN_OR_RETURN(correction, scaffold_[index]->Correction(*server_control));
    plan.gradient_correction = &*correction;
  }
  ASSIGN_OR_RETURN(TrainOutput out,
                   trainer.Train(base, plan, partitions_[index]));
  if (correction.has_value()) {
    ASSIGN_OR_RETURN(*extras, scaffold_[index]->Finish(
                                  out.delta, *server_control,
                                  out.metrics.num_steps, plan.learning_rate));
  }
  *seconds = SimulatedSeconds(index, out, plan);
  if (plan.dp_clip_norm > 0 || plan.dp_noise_stddev > 0) {
    PrivatizeUpdate(out.delta, plan.dp_clip_norm, plan.dp_noise_stddev,
                    MixSeed({agent_noise_secret_, static_cast<uint64_t>(round),
                             static_cast<uint64_t>(index)}));
  }
  if (poisoned_[index]) {  // A Byzantine agent: ignores the plan.
    for (TensorBuffer& t : out.delta.mutable_tensors()) {
      if (t.dtype() != DType::kFloat32) continue;
      for (float& v : t.mutable_floats()) {
        v = static_cast<float>(v * options_.poison_scale);
      }
    }
  }
  if (plan.update_encoding.kind == UpdateEncoding::kFp32) {
    *bytes = EncodedSize(out.delta);
    return out;
  }
  ASSIGN_OR_RETURN(EncodedModel encoded,
                   EncodeWithErrorFeedback(out.delta, plan.update_encoding,
                                           &residuals_[index]));
  *bytes = EncodedSize(encoded);
  ASSIGN_OR_RETURN(out.delta, DecodeModel(EncodeModel(encoded)));
  return out;
}

double Simulator::TrainRound(int64_t round,
                             const std::vector<FitInstruction>& plan,
                             const ModelState& downloaded) {
  absl::Mutex mu;
  double slowest = 0;
  pool_.RunBatch(plan.size(), [&](size_t task, int worker) {
    const FitInstruction& instruction = plan[task];
    std::optional<ModelState> extras;
    double seconds = 0;
    int64_t bytes = 0;
    absl::StatusOr<TrainOutput> out =
        TrainLocal(round, instruction, downloaded, *trainers_[worker], &extras,
                   &seconds, &bytes);
    absl::Status s = out.status();
    if (out.ok()) {
      FitResult result;
      result.agent_id = instruction.agent_id;
      result.num_examples = static_cast<double>(out->metrics.num_examples);
      result.declared_examples =
          agents_[SimAgentIndex(instruction.agent_id)].num_examples;
      result.num_steps = out->metrics.num_steps;
      result.metrics = out->metrics;
      result.delta = &out->delta;
      result.extras = extras.has_value() ? &*extras : nullptr;
      s = accumulator_.Add(result, bytes);
      if (s.ok()) s = engine_->AcceptResult(instruction.agent_id, round, "sim");
    }
    if (s.ok()) {
      absl::MutexLock lock(&mu);
      slowest = std::max(slowest, seconds);
      return;
    }
    // A failed agent is data: the round goes on without it.
    FEDGE_LOG(WARNING) << "round " << round << ": " << instruction.agent_id
                       << " failed: " << s;
    engine_->ReportFailure(instruction.agent_id, round).IgnoreError();
  });
  return slowest;
}

absl::Status Simulator::EvaluateRound(int64_t round, bool last,
                                      RoundRecord& record) {
  if (!last && round % options_.eval_every_rounds != 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(EvalMetrics eval, trainers_[0]->Evaluate(global_));
  record.test_loss = eval.loss;
  record.test_accuracy = eval.accuracy;
  ASSIGN_OR_RETURN(std::optional<EvalMetrics> fed, FederatedEvaluation(round));
  if (fed.has_value()) {
    record.fed_eval_loss = fed->loss;
    record.fed_eval_accuracy = fed->accuracy;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<EvalMetrics>> Simulator::FederatedEvaluation(
    int64_t round) {
  if (options_.eval_partitions.size() < agents_.size()) {
    return std::optional<EvalMetrics>();
  }
  const std::vector<std::string> chosen =
      strategy_->ConfigureEvaluate(round, agents_);
  if (chosen.empty()) return std::optional<EvalMetrics>();
  std::vector<EvalMetrics> results(chosen.size());
  absl::Mutex mu;
  absl::Status first_error;
  pool_.RunBatch(chosen.size(), [&](size_t task, int worker) {
    const int index = SimAgentIndex(chosen[task]);
    absl::StatusOr<EvalMetrics> m =
        trainers_[worker]->EvaluateOn(global_, options_.eval_partitions[index]);
    if (m.ok()) {
      results[task] = *m;
      return;
    }
    absl::MutexLock lock(&mu);
    if (first_error.ok()) first_error = m.status();
  });
  RETURN_IF_ERROR(first_error);
  EvalMetrics aggregate = strategy_->AggregateEvaluate(results);
  if (aggregate.num_examples == 0) return std::optional<EvalMetrics>();
  return std::optional<EvalMetrics>(aggregate);
}

void Simulator::AddAbandoned(const RoundRecord& record,
                             const std::vector<FitInstruction>& plan,
                             AbandonedStreak* streak) const {
  if (streak->rounds++ == 0) streak->first_round = record.round;
  streak->reported += record.num_agents;
  streak->failed += record.num_failed;
  for (const FitInstruction& f : plan) {
    if (DropsOut(record.round, SimAgentIndex(f.agent_id))) ++streak->dropped;
  }
}

absl::Status Simulator::AbandonedError(const AbandonedStreak& streak,
                                       int64_t last_round) const {
  std::string why;
  if (streak.reported > 0) {
    why = absl::StrCat("fewer agents reported than the quorum of ",
                       options_.engine.min_fit_agents, " (", streak.reported,
                       " updates in all, ", streak.failed, " agents failed)");
  } else if (streak.dropped == streak.failed) {
    why = absl::StrCat("no agent reported (all ", streak.failed,
                       " selected agents dropped out, simulated with "
                       "probability ",
                       options_.dropout_probability, ")");
  } else {
    why = absl::StrCat(
        "no agent reported (", streak.failed, " selected agents failed, ",
        streak.dropped,
        " of them simulated dropouts; see the agents' errors above: e.g. a "
        "diverged model whose every update is refused as not finite)");
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the last ", streak.rounds, " attempted rounds (", streak.first_round,
      " to ", last_round, ") were abandoned: ", why, "; ", completed_rounds_,
      " of ", engine_->num_rounds(),
      " rounds completed. Stopping: max_abandoned_rounds is ",
      options_.max_abandoned_rounds, " (0 = never stop)"));
}

absl::StatusOr<std::vector<RoundRecord>> Simulator::Run(
    const std::function<void(const RoundRecord&)>& on_round) {
  if (options_.fedbuff.enabled) return RunFedBuff(on_round);
  std::vector<RoundRecord> records;
  double simulated = 0;
  AbandonedStreak streak;
  while (true) {
    const absl::Time start = absl::Now();
    if (!engine_->Tick().empty()) {
      return absl::InternalError("round finished outside the simulator loop");
    }
    if (!engine_->CanStartRound()) break;  // Done.
    const int64_t round = engine_->current_round() + 1;
    if (const RoundPrivacy* privacy = accumulator_.privacy();
        privacy != nullptr) {
      absl::Status budget = privacy->CheckBudget(agents_.size());
      if (!budget.ok()) {
        stop_reason_ = absl::StrCat("stopped before round ", round, ": ",
                                    budget.message());
        FEDGE_LOG(INFO) << stop_reason_;
        break;
      }
    }
    const std::vector<FitInstruction> plan =
        strategy_->ConfigureFit(round, agents_);
    std::vector<std::string> selected;
    for (const FitInstruction& f : plan) selected.push_back(f.agent_id);
    ASSIGN_OR_RETURN(const int64_t started, engine_->StartRound(selected));
    FEDGE_CHECK(started == round);
    const absl::Time train_start = absl::Now();
    // Agents train from the model as they download it (in fp32 the global
    // model itself: no copy).
    int64_t download_bytes = EncodedSize(global_);
    std::optional<ModelState> rounded;
    if (options_.download_encoding != UpdateEncoding::kFp32) {
      ASSIGN_OR_RETURN(
          rounded,
          AsDownloaded(global_, options_.download_encoding, &download_bytes));
    }
    const ModelState& base = rounded.has_value() ? *rounded : global_;
    absl::Status secure = absl::OkStatus();
    if (options_.secure_aggregation.enabled) {
      double slowest = 0;
      secure = TrainSecureRound(round, plan, base, &slowest);
      simulated += slowest;
    } else {
      simulated += TrainRound(round, plan, base);
    }
    const double train_seconds =
        absl::ToDoubleSeconds(absl::Now() - train_start);
    std::vector<RoundOutcome> outcomes = engine_->Tick();
    if (outcomes.size() != 1) {
      return absl::InternalError("round did not close after all agents ran");
    }
    if (!secure.ok()) {
      // No sum: the round is abandoned and the model kept, whatever the
      // engine counted (its reports carried masked inputs only).
      FEDGE_LOG(WARNING) << "round " << round
                         << ": secure aggregation failed, the round is "
                            "abandoned and the global model kept: "
                         << secure;
      RoundOutcome& o = outcomes[0];
      o.completed = false;
      o.failed.insert(o.failed.end(), o.reported.begin(), o.reported.end());
      o.reported.clear();
    }
    RoundClose close = accumulator_.Close(outcomes[0], global_, agents_.size());
    RoundRecord record = std::move(close.record);
    record.train_seconds = train_seconds;
    // Every selected agent downloads the model.
    record.bytes_sent = download_bytes * static_cast<int64_t>(plan.size());
    if (!options_.examples_per_second.empty()) {
      record.simulated_seconds = simulated;
    }
    const bool new_model = close.next.has_value();
    if (new_model) global_ = *std::move(close.next);
    const bool last = engine_->state() == RoundState::kDone;
    RETURN_IF_ERROR(EvaluateRound(engine_->completed_rounds(), last, record));
    record.round_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    records.push_back(record);
    completed_rounds_ = engine_->completed_rounds();
    last_round_abandoned_ = !new_model;
    if (on_round) on_round(record);
    if (outcomes[0].completed) {
      streak = AbandonedStreak();
    } else {
      AddAbandoned(record, plan, &streak);
    }
    if (options_.max_abandoned_rounds > 0 &&
        streak.rounds >= options_.max_abandoned_rounds) {
      return AbandonedError(streak, round);
    }
    if (options_.stop_at_accuracy > 0 && record.test_accuracy.has_value() &&
        *record.test_accuracy >= options_.stop_at_accuracy) {
      break;
    }
  }
  return records;
}

}  // namespace fedge
