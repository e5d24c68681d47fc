// Coordinator: closing rounds (aggregate, publish, then evaluate,
// checkpoint and record in the background) and the operator views. The
// rest of the class is in coordinator.cc.
#include <algorithm>
#include <cmath>
#include <future>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fl_config.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/coordinator.h"

namespace fedge {
namespace {

std::string ShortHash(const std::string& hex) { return hex.substr(0, 12); }

}  // namespace

Checkpoint Coordinator::CheckpointSnapshot(int64_t model_version,
                                           int64_t* task_lease) const {
  Checkpoint ckpt;
  ckpt.model_version = model_version;
  ckpt.next_round = engine_->current_round() + 1;
  ckpt.completed_rounds = engine_->completed_rounds();
  v1::CoordinatorCheckpointExtra extra;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [agent, index] : partitions_) {
      (*extra.mutable_partitions())[agent] = index;
    }
    for (const auto& [agent, rounds] : contributed_) {
      (*extra.mutable_rounds_contributed())[agent] = rounds;
    }
  }
  extra.set_strategy_name(std::string(strategy_->name()));
  extra.set_strategy_state(strategy_->SaveState());
  if (rounds_set_by_operator_) extra.set_total_rounds(engine_->num_rounds());
  if (engine_->stopping()) extra.set_stopped(true);
  if (extra.has_total_rounds() || extra.stopped()) {
    extra.set_config_rounds(config_.rounds());
  }
  if (paused_) extra.set_paused(true);
  if (const RoundPrivacy* privacy = accumulator_.privacy()) {
    extra.set_privacy_accountant_state(privacy->SaveState());
  }
  if (fedbuff_ != nullptr) {
    extra.set_next_task(fedbuff_->Reserve());
    if (task_lease != nullptr) *task_lease = extra.next_task();
  }
  {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> evicted(evicted_.begin(), evicted_.end());
    std::sort(evicted.begin(), evicted.end());
    for (const std::string& id : evicted) extra.add_evicted_agents(id);
  }
  extra.SerializeToString(&ckpt.extra);
  return ckpt;
}

absl::Status Coordinator::SaveOperatorChanges() {
  if (!operator_changes_ || persisting_.valid() ||
      engine_->state() == RoundState::kInProgress || !Settled()) {
    return absl::OkStatus();
  }
  operator_changes_ = false;  // Before the snapshot reads the state.
  const std::shared_ptr<const PublishedModel> model = latest_model();
  FEDGE_LOG(INFO) << "checkpointing an operator's change (pause, rounds or "
                     "evicted agents)";
  int64_t lease = 0;
  RETURN_IF_ERROR(
      SaveCheckpoint(CheckpointSnapshot(model->version, &lease), *model));
  if (fedbuff_ != nullptr) fedbuff_->Durable(lease);
  return absl::OkStatus();
}

absl::Status Coordinator::SaveCheckpoint(const Checkpoint& ckpt,
                                         const PublishedModel& model) {
  RETURN_IF_ERROR(
      LogCheckpoint(checkpoints_->Save(ckpt, model.model, model.model_sha256),
                    ckpt.model_version));
  checkpoints_->PruneOld();
  return absl::OkStatus();
}

absl::Status Coordinator::LogCheckpoint(absl::StatusOr<std::string> path,
                                        int64_t model_version) {
  if (!path.ok()) return path.status();
  FEDGE_LOG(INFO) << "checkpoint " << *path << " (model version "
                  << model_version << ")";
  return absl::OkStatus();
}

void Coordinator::StartEvaluation(const PendingRound& round) {
  const std::vector<std::string> chosen =
      strategy_->ConfigureEvaluate(round.model->version, AvailableAgentInfos());
  absl::MutexLock lock(&mu_);
  if (eval_.has_value()) CloseEvaluationLocked();
  EvalRound e;
  e.round = round.model->version;
  e.model = round.model;
  e.deadline = clock_->Now() +
               absl::Milliseconds(config_.strategy().evaluate_deadline_ms());
  e.pending.insert(chosen.begin(), chosen.end());
  e.done = round.fed_eval;
  eval_ = std::move(e);
  FEDGE_LOG(INFO) << "round " << eval_->round << ": federated evaluation on "
                  << chosen.size() << " agents";
  if (eval_->pending.empty()) CloseEvaluationLocked();
}

void Coordinator::CloseEvaluationLocked() {
  if (!eval_.has_value()) return;
  const EvalMetrics m = strategy_->AggregateEvaluate(eval_->results);
  if (!eval_->pending.empty()) {
    FEDGE_LOG(INFO) << "round " << eval_->round << ": federated evaluation "
                    << "closed without " << eval_->pending.size()
                    << " agent(s)";
  }
  eval_->done->set_value(m.num_examples > 0 ? std::optional<EvalMetrics>(m)
                                            : std::nullopt);
  eval_.reset();
}

absl::Status Coordinator::SubmitEvaluation(
    const v1::SubmitEvaluationRequest& request) {
  ASSIGN_OR_RETURN(Session session, FindSession(request.session_token()));
  engine_->Heartbeat(session.agent_id).IgnoreError();
  const bool sane = request.num_examples() >= 1 &&
                    request.num_examples() <= (int64_t{1} << 31) &&
                    std::isfinite(request.loss()) && request.loss() >= 0 &&
                    request.accuracy() >= 0 && request.accuracy() <= 1;
  if (!sane) {
    return Refuse(session.agent_id, "invalid", "evaluation",
                  absl::InvalidArgumentError(absl::StrCat(
                      "evaluation metrics out of range: num_examples ",
                      request.num_examples(), ", loss ", request.loss(),
                      ", accuracy ", request.accuracy())));
  }
  absl::MutexLock lock(&mu_);
  if (!eval_.has_value() || eval_->round != request.round() ||
      eval_->model->version != request.model_version() ||
      eval_->pending.erase(session.agent_id) == 0) {
    return absl::AbortedError(
        absl::StrCat("no evaluation of round ", request.round(),
                     " is waiting for agent ", session.agent_id));
  }
  EvalMetrics m;
  m.num_examples = request.num_examples();
  m.loss = request.loss();
  m.accuracy = request.accuracy();
  eval_->results.push_back(m);
  if (eval_->pending.empty()) CloseEvaluationLocked();
  return absl::OkStatus();
}

bool Coordinator::Settled() const {
  if (engine_->HasOutcomeWaiting()) return false;
  {
    absl::MutexLock lock(&secagg_mu_);
    if (secagg_.has_value() && secagg_->outcome.has_value()) return false;
  }
  absl::MutexLock lock(&mu_);
  return !pending_.has_value() && !eval_.has_value();
}

absl::Status Coordinator::Flush() {
  if (!persisting_.valid()) return absl::OkStatus();
  if (pending_.has_value() && pending_->fed_eval != nullptr) {
    // Its evaluation never started (shutdown): the history line goes
    // without it.
    pending_->fed_eval->set_value(std::nullopt);
    pending_->fed_eval = nullptr;
  }
  absl::Status status = persisting_.get();
  if (status.ok() || durable_) {
    if (pending_.has_value()) {
      Publish(pending_->model);
      if (pending_->last) finished_ = true;
      pending_.reset();
    }
  }
  return status;
}

absl::Status Coordinator::PollPersistence() {
  if (!persisting_.valid()) return absl::OkStatus();
  if (pending_.has_value() && durable_) {
    Publish(pending_->model);
    if (pending_->fed_eval != nullptr) StartEvaluation(*pending_);
    if (pending_->new_version) {
      FEDGE_LOG(INFO) << "model version " << pending_->model->version
                      << " published (checkpoint durable)";
    }
    if (pending_->last) finished_ = true;
    pending_.reset();
  }
  if (persisting_.wait_for(std::chrono::seconds(0)) ==
      std::future_status::ready) {
    return Flush();
  }
  return absl::OkStatus();
}

absl::Status Coordinator::FinishRound(const RoundOutcome& outcome) {
  RETURN_IF_ERROR(Flush());  // At most one round is being persisted.
  std::shared_ptr<const PublishedModel> current = latest_model();
  int64_t num_available;
  {
    absl::MutexLock lock(&mu_);
    num_available = num_available_;
  }
  RoundClose close;
  const absl::Time aggregation_start = clock_->Now();
  {
    absl::MutexLock lock(&accumulate_mu_);
    close = accumulator_.Close(outcome, current->model, num_available);
  }
  if (edge_mode_) DeliverEdgeRound(outcome, close, current->model);
  return PersistRound(outcome, std::move(close), std::move(current),
                      clock_->Now() - aggregation_start);
}

absl::Status Coordinator::PersistRound(
    const RoundOutcome& outcome, RoundClose close,
    std::shared_ptr<const PublishedModel> current,
    absl::Duration aggregation_time) {
  RoundRecord record = std::move(close.record);
  const bool completed = close.next.has_value();
  UpdatePrivacyMetrics();
  if (completed) {
    metrics_.aggregation_seconds.Observe(
        absl::ToDoubleSeconds(aggregation_time));
    metrics_.rounds_completed.Increment();
    absl::MutexLock lock(&mu_);
    for (const std::string& id : outcome.reported) ++contributed_[id];
  } else {
    metrics_.rounds_abandoned.Increment();
    if (!close.aggregation_error.ok()) {
      metrics_.aggregates_refused.Increment();
      FEDGE_LOG(WARNING) << "round " << outcome.round
                         << ": the aggregate was refused, model version "
                         << current->version
                         << " stays published: " << close.aggregation_error;
    }
  }
  PendingRound pending;
  // In edge mode the aggregate went upstream (DeliverEdgeRound): the next
  // model comes from there.
  pending.new_version = completed && !edge_mode_;
  std::shared_future<std::optional<EvalMetrics>> fed_eval;
  if (completed && config_.strategy().fraction_evaluate() > 0) {
    pending.fed_eval =
        std::make_shared<std::promise<std::optional<EvalMetrics>>>();
    fed_eval = pending.fed_eval->get_future().share();
  }
  // A new version is hashed while its checkpoint is written (Persist).
  std::shared_ptr<PublishedModel> unfinished =
      pending.new_version ? NewPublished(*std::move(close.next), outcome.round)
                          : nullptr;
  pending.model = unfinished != nullptr
                      ? std::shared_ptr<const PublishedModel>(unfinished)
                      : current;
  pending.last = engine_->state() == RoundState::kDone;
  record.bytes_sent = bytes_sent_.exchange(0);
  record.round_seconds = absl::ToDoubleSeconds(clock_->Now() - round_start_);
  metrics_.round_duration.Observe(record.round_seconds);
  // The strategy's state after this round goes into the same checkpoint,
  // with every operator change made before this point.
  operator_changes_ = false;
  int64_t task_lease = 0;
  Checkpoint ckpt = CheckpointSnapshot(pending.model->version, &task_lease);
  // The checkpoint is written, then the model evaluated and the history
  // line appended, while the next round already runs: it starts once the
  // checkpoint is durable (PollPersistence publishes the model then), so a
  // round in history.csv and an announced version are always durable.
  durable_ = false;
  std::shared_ptr<const PublishedModel> model = pending.model;
  pending_ = std::move(pending);
  persisting_ = std::async(std::launch::async, [=, ckpt = std::move(ckpt)] {
    return Persist(record, completed, unfinished, *model, ckpt, fed_eval,
                   task_lease);
  });
  return absl::OkStatus();
}

absl::Status Coordinator::Persist(
    RoundRecord record, bool completed,
    std::shared_ptr<PublishedModel> unfinished, const PublishedModel& model,
    const Checkpoint& ckpt,
    std::shared_future<std::optional<EvalMetrics>> fed_eval,
    int64_t task_lease) {
  const absl::Time checkpoint_start = clock_->Now();
  // Never written: RoundAccumulator::Close keeps such a model out.
  absl::Status saved = CheckFinite(model.model);
  if (!saved.ok()) {
    saved = absl::InternalError(absl::StrCat(
        "model version ", model.version,
        " is not finite and is not checkpointed: ", saved.message()));
  }
  if (saved.ok() && unfinished != nullptr) {
    // Published only once durable: nobody reads it before durable_ is set.
    Sha256Digest digest;
    saved = LogCheckpoint(checkpoints_->Save(ckpt, model.model, &digest),
                          ckpt.model_version);
    if (saved.ok()) FinishPublished(*unfinished, digest);
  } else if (saved.ok()) {
    saved = SaveCheckpoint(ckpt, model);
  }
  if (!saved.ok()) {
    metrics_.checkpoint_failures.Increment();
    FEDGE_LOG(ERROR) << "round " << record.round
                     << ": cannot write the checkpoint: " << saved;
    return saved;
  }
  if (fedbuff_ != nullptr) fedbuff_->Durable(task_lease);
  durable_ = true;  // The Tick thread may announce the new model now.
  const absl::Duration checkpoint_time = clock_->Now() - checkpoint_start;
  checkpoints_->PruneOld();  // After the announcement, not before it.
  metrics_.checkpoint_seconds.Observe(absl::ToDoubleSeconds(checkpoint_time));
  if (evaluator_ != nullptr && completed) {
    const absl::Time eval_start = clock_->Now();
    absl::StatusOr<EvalMetrics> eval = evaluator_->Evaluate(model.model);
    metrics_.evaluation_seconds.Observe(
        absl::ToDoubleSeconds(clock_->Now() - eval_start));
    if (eval.ok()) {
      record.test_loss = eval->loss;
      record.test_accuracy = eval->accuracy;
      metrics_.central_accuracy.Set(eval->accuracy);
      metrics_.central_loss.Set(eval->loss);
    } else {
      metrics_.evaluation_failures.Increment();
      FEDGE_LOG(WARNING) << "round " << record.round
                         << ": evaluation failed, recorded without accuracy: "
                         << eval.status();
    }
  }
  if (fed_eval.valid()) {
    // Fulfilled by the Tick thread when the evaluation closes (all
    // answered, its deadline, or shutdown).
    const std::optional<EvalMetrics> fed = fed_eval.get();
    if (fed.has_value()) {
      record.fed_eval_loss = fed->loss;
      record.fed_eval_accuracy = fed->accuracy;
      metrics_.federated_accuracy.Set(fed->accuracy);
      metrics_.federated_loss.Set(fed->loss);
    }
  }
  absl::Status appended = history_->Append(record);
  if (!appended.ok()) {
    FEDGE_LOG(ERROR) << "round " << record.round
                     << ": cannot append to the history: " << appended;
    return appended;
  }
  {
    absl::MutexLock lock(&mu_);
    records_.emplace_back(record, completed);
    if (record.test_accuracy.has_value()) {
      last_accuracy_ = *record.test_accuracy;
    }
  }
  FEDGE_LOG(INFO) << absl::StrFormat(
      "round %d %s: %d agents, %d failed, %d examples, test accuracy %s, "
      "model v%d sha256 %s, %.3f s (checkpoint %d ms)",
      record.round, completed ? "completed" : "abandoned", record.num_agents,
      record.num_failed, record.num_examples,
      record.test_accuracy.has_value()
          ? absl::StrFormat("%.2f%%", 100 * *record.test_accuracy)
          : "-",
      model.version, ShortHash(model.sha256_hex), record.round_seconds,
      absl::ToInt64Milliseconds(checkpoint_time));
  return absl::OkStatus();
}

}  // namespace fedge
