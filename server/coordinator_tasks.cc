// Coordinator: what differs between the modes, and nothing else. In "sync"
// mode the RoundEngine runs rounds: the strategy selects agents when a
// round starts, a selected agent's task is the round, the engine accepts
// results exactly once and closes the round. In "fedbuff" mode
// (server/fedbuff_tasks.h) a free agent gets a task of its own on the
// newest version while slots are free, its result is weighted by its
// staleness, and a full buffer closes the round (a new model version).
// Both close rounds through the same accumulator, checkpoint, history and
// evaluation (coordinator_rounds.cc).
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/coordinator.h"

namespace fedge {

std::optional<v1::TrainTask> Coordinator::TrainTaskFor(
    const std::string& agent_id) {
  if (fedbuff_ != nullptr) return FedBuffTaskFor(agent_id);
  absl::StatusOr<int64_t> round = engine_->AssignedRound(agent_id);
  if (!round.ok()) return std::nullopt;
  // A poll on another thread between the engine's StartRound and
  // StartSecAgg: a task without the session would be trained and uploaded
  // in the clear (and refused). It waits for the next Tick's answer.
  if (SecAggStarting(*round)) return std::nullopt;
  return MakeTask(*round, agent_id, *latest_model(),
                  engine_->round_deadline_time());
}

absl::Status Coordinator::CheckTaskResult(const v1::UpdateMetadata& m,
                                          const std::string& agent_id) {
  if (fedbuff_ != nullptr) {
    if (engine_->state() == RoundState::kDone) {
      return absl::AbortedError("the federation is done");
    }
    RETURN_IF_ERROR(fedbuff_
                        ->Check(agent_id, m.round(), m.upload_id(),
                                m.base_version(), latest_model()->version)
                        .status());
    if (!engine_->HasAgent(agent_id)) {
      return absl::NotFoundError(absl::StrCat("unknown agent ", agent_id));
    }
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(engine_->CheckResult(agent_id, m.round(), m.upload_id()));
  const int64_t version = latest_model()->version;
  if (m.base_version() != version) {
    return absl::AbortedError(
        absl::StrCat("update was trained from model version ", m.base_version(),
                     " but round ", m.round(), " uses version ", version));
  }
  return absl::OkStatus();
}

absl::Status Coordinator::AcceptTaskResult(const v1::UpdateMetadata& m,
                                           const std::string& agent_id,
                                           FitResult& result) {
  if (fedbuff_ == nullptr) {
    return engine_->AcceptResult(agent_id, m.round(), m.upload_id());
  }
  if (accumulator_.num_updates() >= fedbuff_->options().buffer_size) {
    // The buffer is full and its version closes at the next tick: this
    // update belongs to the next version. Not recorded: the agent retries
    // (UNAVAILABLE) and is then weighted by its staleness.
    return absl::UnavailableError(absl::StrCat(
        "the buffer of fedbuff_buffer_size = ", fedbuff_->options().buffer_size,
        " updates is full and its version is closing: retry"));
  }
  ASSIGN_OR_RETURN(const int64_t staleness,
                   fedbuff_->Accept(agent_id, m.round(), m.upload_id(),
                                    m.base_version(), latest_model()->version));
  engine_->Heartbeat(agent_id).IgnoreError();
  result.num_examples *= StalenessWeight(staleness);
  return absl::OkStatus();
}

absl::Status Coordinator::FailTask(const std::string& agent_id, int64_t round) {
  if (fedbuff_ == nullptr) return engine_->ReportFailure(agent_id, round);
  RETURN_IF_ERROR(engine_->Heartbeat(agent_id));  // NOT_FOUND: dropped.
  return fedbuff_->Fail(agent_id, round);
}

absl::Status Coordinator::AdvanceTasks() {
  if (fedbuff_ == nullptr) {
    RETURN_IF_ERROR(AdvanceSecAgg());
    for (const RoundOutcome& outcome : engine_->Tick()) {
      // A secure round closes once its sum is unmasked (AdvanceSecAgg).
      ASSIGN_OR_RETURN(const bool secure, CloseSecAggInputs(outcome));
      if (!secure) RETURN_IF_ERROR(FinishRound(outcome));
    }
    return MaybeStartRound();
  }
  engine_->Tick();  // Liveness only: no round is ever in progress.
  fedbuff_->Expire(clock_->Now(), [this](const std::string& agent_id) {
    return engine_->HasAgent(agent_id);
  });
  EvaluationRunning();  // Closes one past its deadline; training goes on.
  return MaybeCloseVersion();
}

std::optional<v1::TrainTask> Coordinator::FedBuffTaskFor(
    const std::string& agent_id) {
  if (engine_->state() == RoundState::kDone) return std::nullopt;
  std::optional<FedBuffTasks::Task> task = fedbuff_->Find(agent_id);
  if (!task.has_value()) {
    const int num_available = static_cast<int>(engine_->num_agents());
    if (shutting_down_ || paused_ ||
        num_available < config_.strategy().min_available_agents()) {
      return std::nullopt;
    }
    AgentInfo info;
    absl::MutexLock lock(&mu_);  // Publish() cannot erase latest_ meanwhile.
    auto it = agents_.find(agent_id);
    if (it == agents_.end()) return std::nullopt;
    info = it->second;
    absl::StatusOr<FedBuffTasks::Task> started =
        fedbuff_->Start(agent_id, latest_->version,
                        Concurrency(fedbuff_->options(), num_available),
                        clock_->Now() + fedbuff_->options().task_deadline);
    if (!started.ok()) return std::nullopt;
    task = *started;
    // The plan, with its seed, as the simulator makes it: the task number
    // stands for the round.
    const std::vector<FitInstruction> plan =
        strategy_->ConfigureFit(task->number, absl::MakeConstSpan(&info, 1));
    FEDGE_CHECK(plan.size() == 1) << "no plan for agent " << agent_id;
    plans_[agent_id] = plan[0].plan;
  }
  std::shared_ptr<const PublishedModel> model = FindVersion(task->base_version);
  if (model == nullptr) {  // Gone (cannot happen while the task is in flight).
    fedbuff_->Fail(agent_id, task->number).IgnoreError();
    return std::nullopt;
  }
  return MakeTask(task->number, agent_id, *model, task->deadline);
}

absl::Status Coordinator::MaybeCloseVersion() {
  if (accumulator_.num_updates() < fedbuff_->options().buffer_size) {
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(Flush());  // The previous version is published first.
  std::shared_ptr<const PublishedModel> current = latest_model();
  const int64_t num_available = static_cast<int64_t>(engine_->num_agents());
  {
    absl::MutexLock lock(&mu_);
    num_available_ = num_available;
  }
  RoundOutcome outcome;
  RoundClose close;
  const absl::Time aggregation_start = clock_->Now();
  {
    // Who reported and what was folded are taken together.
    absl::MutexLock lock(&accumulate_mu_);
    absl::StatusOr<int64_t> round = engine_->CompleteAsyncRound();
    if (!round.ok()) {  // Stopped by an operator meanwhile.
      FEDGE_LOG(INFO) << "version not closed: " << round.status();
      return absl::OkStatus();
    }
    outcome = fedbuff_->TakeOutcome();
    outcome.round = *round;
    outcome.completed = true;
    close = accumulator_.Close(outcome, current->model, num_available);
  }
  const absl::Duration aggregation_time = clock_->Now() - aggregation_start;
  RETURN_IF_ERROR(PersistRound(outcome, std::move(close), std::move(current),
                               aggregation_time));
  round_start_ = clock_->Now();  // The next version's time starts now.
  return absl::OkStatus();
}

}  // namespace fedge
