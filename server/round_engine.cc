#include "server/round_engine.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

absl::Status ValidateOptions(const RoundEngineOptions& o) {
  auto invalid = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(parts...));
  };
  if (o.min_available_agents < 1) {
    return invalid("min_available_agents must be >= 1, got ",
                   o.min_available_agents);
  }
  if (o.min_fit_agents < 1) {
    return invalid("min_fit_agents must be >= 1, got ", o.min_fit_agents);
  }
  if (o.min_fit_agents > o.min_available_agents) {
    return invalid("min_fit_agents (", o.min_fit_agents,
                   ") must be <= min_available_agents (",
                   o.min_available_agents, ")");
  }
  if (o.round_deadline <= absl::ZeroDuration()) {
    return invalid("round_deadline must be > 0, got ",
                   absl::FormatDuration(o.round_deadline));
  }
  if (o.num_rounds < 1) {
    return invalid("num_rounds must be >= 1, got ", o.num_rounds);
  }
  if (o.agent_timeout <= absl::ZeroDuration()) {
    return invalid("agent_timeout must be > 0, got ",
                   absl::FormatDuration(o.agent_timeout));
  }
  return absl::OkStatus();
}

bool IsLegalTransition(RoundState from, RoundState to) {
  switch (from) {
    case RoundState::kWaitingForAgents:
      return to == RoundState::kInProgress || to == RoundState::kDone;
    case RoundState::kInProgress:
      return to == RoundState::kWaitingForAgents || to == RoundState::kDone;
    case RoundState::kDone:
      return false;
  }
  return false;
}

}  // namespace

absl::string_view RoundStateName(RoundState state) {
  switch (state) {
    case RoundState::kWaitingForAgents:
      return "WAITING_FOR_AGENTS";
    case RoundState::kInProgress:
      return "IN_PROGRESS";
    case RoundState::kDone:
      return "DONE";
  }
  return "UNKNOWN";
}

absl::StatusOr<std::unique_ptr<RoundEngine>> RoundEngine::Create(
    RoundEngineOptions options, Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError("clock is null");
  RETURN_IF_ERROR(ValidateOptions(options));
  return std::unique_ptr<RoundEngine>(new RoundEngine(options, clock));
}

RoundEngine::RoundEngine(RoundEngineOptions options, Clock* clock)
    : options_(options), clock_(clock) {}

absl::Status RoundEngine::RestoreProgress(int64_t next_round,
                                          int completed_rounds) {
  if (next_round < 1 || completed_rounds < 0 ||
      completed_rounds >= next_round) {
    return absl::InvalidArgumentError(absl::StrCat(
        "need next_round >= 1 and 0 <= completed_rounds < next_round, got "
        "next_round ",
        next_round, ", completed_rounds ", completed_rounds));
  }
  absl::MutexLock lock(&mu_);
  if (started_any_round_ || state_ != RoundState::kWaitingForAgents) {
    return absl::FailedPreconditionError(
        "RestoreProgress after a round started or the engine finished");
  }
  round_.id = next_round - 1;
  completed_rounds_ = completed_rounds;
  if (completed_rounds_ >= options_.num_rounds) {
    TransitionLocked(RoundState::kDone);
  }
  return absl::OkStatus();
}

absl::Status RoundEngine::AddAgent(const std::string& agent_id) {
  if (agent_id.empty()) return absl::InvalidArgumentError("empty agent id");
  absl::MutexLock lock(&mu_);
  const auto [it, inserted] = agents_.try_emplace(agent_id, clock_->Now());
  if (!inserted) {
    it->second = clock_->Now();
    return absl::AlreadyExistsError(
        absl::StrCat("agent ", agent_id, " already joined"));
  }
  return absl::OkStatus();
}

absl::Status RoundEngine::Heartbeat(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(agent_id);
  if (it == agents_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown agent ", agent_id));
  }
  it->second = clock_->Now();
  return absl::OkStatus();
}

absl::Status RoundEngine::RemoveAgent(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  if (agents_.erase(agent_id) == 0) {
    return absl::NotFoundError(absl::StrCat("unknown agent ", agent_id));
  }
  if (IsPendingLocked(agent_id)) {
    FEDGE_LOG(INFO) << "round " << round_.id << ": agent " << agent_id
                    << " removed";
    FinishParticipantLocked(agent_id, Progress::kFailed, "");
  }
  return absl::OkStatus();
}

std::vector<RoundOutcome> RoundEngine::Tick() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  DropStaleAgentsLocked(now);
  if (state_ == RoundState::kInProgress && now >= round_.deadline) {
    FEDGE_LOG(INFO) << "round " << round_.id << ": deadline reached";
    CloseRoundLocked();
  }
  std::vector<RoundOutcome> outcomes;
  outcomes.swap(finished_);
  if (stop_after_round_ && state_ == RoundState::kWaitingForAgents) {
    TransitionLocked(RoundState::kDone);
  }
  return outcomes;
}

bool RoundEngine::CanStartRound() const {
  absl::MutexLock lock(&mu_);
  return CanStartRoundLocked();
}

bool RoundEngine::HasOutcomeWaiting() const {
  absl::MutexLock lock(&mu_);
  return !finished_.empty();
}

bool RoundEngine::CanStartRoundLocked() const {
  return state_ == RoundState::kWaitingForAgents && finished_.empty() &&
         !stop_after_round_ &&
         static_cast<int>(agents_.size()) >= options_.min_available_agents;
}

absl::StatusOr<int64_t> RoundEngine::StartRound(
    std::vector<std::string> selected) {
  absl::MutexLock lock(&mu_);
  if (!CanStartRoundLocked()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot start a round now (", RoundStateName(state_), ", ",
                     agents_.size(), " of ", options_.min_available_agents,
                     " agents available)"));
  }
  std::sort(selected.begin(), selected.end());
  selected.erase(std::unique(selected.begin(), selected.end()), selected.end());
  if (selected.empty()) {
    return absl::InvalidArgumentError("a round needs at least one agent");
  }
  for (const std::string& id : selected) {
    if (!agents_.contains(id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("agent ", id, " is not in the roster"));
    }
  }
  Round next;
  next.id = round_.id + 1;
  next.started = clock_->Now();
  next.deadline = next.started + options_.round_deadline;
  next.selected = std::move(selected);
  for (const std::string& id : next.selected) next.participants[id];
  next.num_pending = next.selected.size();
  next.outcome.round = next.id;
  previous_round_ = std::move(round_);
  round_ = std::move(next);
  started_any_round_ = true;
  TransitionLocked(RoundState::kInProgress);
  FEDGE_LOG(INFO) << "round " << round_.id
                  << " started: " << round_.selected.size() << " of "
                  << agents_.size() << " agents selected";
  return round_.id;
}

absl::Status RoundEngine::SetNumRounds(int n) {
  if (n < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("rounds must be >= 1, got ", n));
  }
  absl::MutexLock lock(&mu_);
  if (state_ == RoundState::kDone) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the federation is done (", completed_rounds_, " rounds completed)"));
  }
  if (n < completed_rounds_) {
    return absl::FailedPreconditionError(
        absl::StrCat("rounds cannot be ", n, ": ", completed_rounds_,
                     " rounds are already completed"));
  }
  if (state_ == RoundState::kInProgress && n <= completed_rounds_) {
    // The round in progress may complete: it would be one past the end.
    return absl::FailedPreconditionError(absl::StrCat(
        "rounds cannot be ", n, " while round ", round_.id,
        " is in progress: it may complete a round ", completed_rounds_ + 1,
        "; set at least ", completed_rounds_ + 1));
  }
  options_.num_rounds = n;
  if (state_ == RoundState::kWaitingForAgents && completed_rounds_ >= n) {
    TransitionLocked(RoundState::kDone);
  }
  return absl::OkStatus();
}

absl::Status RoundEngine::StopAfterCurrentRound() {
  absl::MutexLock lock(&mu_);
  if (state_ == RoundState::kDone) {
    return absl::FailedPreconditionError("the federation is done");
  }
  stop_after_round_ = true;
  if (state_ == RoundState::kWaitingForAgents && finished_.empty()) {
    TransitionLocked(RoundState::kDone);
  }
  return absl::OkStatus();
}

bool RoundEngine::stopping() const {
  absl::MutexLock lock(&mu_);
  return stop_after_round_;
}

int RoundEngine::num_rounds() const {
  absl::MutexLock lock(&mu_);
  return options_.num_rounds;
}

absl::Status RoundEngine::CloseRoundNow() {
  absl::MutexLock lock(&mu_);
  if (state_ != RoundState::kInProgress) {
    return absl::FailedPreconditionError("no round in progress");
  }
  FEDGE_LOG(INFO) << "round " << round_.id << ": closed early";
  CloseRoundLocked();
  return absl::OkStatus();
}

absl::StatusOr<int64_t> RoundEngine::CompleteAsyncRound() {
  absl::MutexLock lock(&mu_);
  if (state_ != RoundState::kWaitingForAgents) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot complete a round now (", RoundStateName(state_), ")"));
  }
  Round next;
  next.id = round_.id + 1;
  next.started = next.deadline = clock_->Now();
  next.outcome.round = next.id;
  next.outcome.completed = true;
  previous_round_ = std::move(round_);
  round_ = std::move(next);
  started_any_round_ = true;
  ++completed_rounds_;
  if (completed_rounds_ >= options_.num_rounds || stop_after_round_) {
    TransitionLocked(RoundState::kDone);
  }
  return round_.id;
}

absl::StatusOr<int64_t> RoundEngine::AssignedRound(
    const std::string& agent_id) const {
  absl::MutexLock lock(&mu_);
  if (state_ == RoundState::kDone) {
    return absl::FailedPreconditionError("all rounds are done");
  }
  if (!agents_.contains(agent_id)) {
    return absl::NotFoundError(absl::StrCat("unknown agent ", agent_id));
  }
  if (!IsPendingLocked(agent_id)) {
    return absl::NotFoundError(absl::StrCat("no task for agent ", agent_id));
  }
  return round_.id;
}

absl::Status RoundEngine::AcceptResult(const std::string& agent_id,
                                       int64_t round,
                                       const std::string& upload_id) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckResultLocked(agent_id, round, upload_id));
  agents_[agent_id] = clock_->Now();
  FinishParticipantLocked(agent_id, Progress::kReported, upload_id);
  return absl::OkStatus();
}

absl::Status RoundEngine::CheckResult(const std::string& agent_id,
                                      int64_t round,
                                      const std::string& upload_id) const {
  absl::MutexLock lock(&mu_);
  return CheckResultLocked(agent_id, round, upload_id);
}

absl::Status RoundEngine::ReportFailure(const std::string& agent_id,
                                        int64_t round) {
  absl::MutexLock lock(&mu_);
  if (!agents_.contains(agent_id)) {
    return absl::NotFoundError(absl::StrCat("unknown agent ", agent_id));
  }
  RETURN_IF_ERROR(CheckParticipantLocked(agent_id, round));
  switch (round_.participants.at(agent_id).progress) {
    case Progress::kFailed:
      return absl::OkStatus();
    case Progress::kReported:
      return absl::FailedPreconditionError(absl::StrCat(
          "agent ", agent_id, " already reported a result in round ", round));
    case Progress::kPending:
      break;
  }
  FEDGE_LOG(INFO) << "round " << round << ": agent " << agent_id
                  << " reported failure";
  FinishParticipantLocked(agent_id, Progress::kFailed, "");
  return absl::OkStatus();
}

RoundState RoundEngine::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

int64_t RoundEngine::current_round() const {
  absl::MutexLock lock(&mu_);
  return round_.id;
}

int RoundEngine::completed_rounds() const {
  absl::MutexLock lock(&mu_);
  return completed_rounds_;
}

std::vector<std::string> RoundEngine::SelectedAgents() const {
  absl::MutexLock lock(&mu_);
  if (state_ != RoundState::kInProgress) return {};
  return round_.selected;
}

std::vector<std::string> RoundEngine::AvailableAgents() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> ids;
  ids.reserve(agents_.size());
  for (const auto& [id, last_seen] : agents_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

size_t RoundEngine::num_agents() const {
  absl::MutexLock lock(&mu_);
  return agents_.size();
}

bool RoundEngine::HasAgent(const std::string& agent_id) const {
  absl::MutexLock lock(&mu_);
  return agents_.contains(agent_id);
}

absl::Time RoundEngine::round_deadline_time() const {
  absl::MutexLock lock(&mu_);
  if (state_ != RoundState::kInProgress) return absl::InfinitePast();
  return round_.deadline;
}

size_t RoundEngine::num_reported() const {
  absl::MutexLock lock(&mu_);
  if (state_ != RoundState::kInProgress) return 0;
  return round_.outcome.reported.size();
}

EngineSnapshot RoundEngine::Snapshot() const {
  absl::MutexLock lock(&mu_);
  EngineSnapshot s;
  s.state = state_;
  s.current_round = round_.id;
  s.completed_rounds = completed_rounds_;
  s.num_rounds = options_.num_rounds;
  s.stopping = stop_after_round_;
  for (const auto& [id, seen] : agents_) s.agents.emplace_back(id, seen);
  std::sort(s.agents.begin(), s.agents.end());
  if (state_ == RoundState::kInProgress) {
    s.round_started = round_.started;
    s.round_deadline = round_.deadline;
    for (const std::string& id : round_.selected) {
      switch (round_.participants.at(id).progress) {
        case Progress::kPending:
          s.pending.push_back(id);
          break;
        case Progress::kReported:
          s.reported.push_back(id);
          break;
        case Progress::kFailed:
          s.failed.push_back(id);
          break;
      }
    }
  }
  return s;
}

void RoundEngine::TransitionLocked(RoundState to) {
  FEDGE_CHECK(IsLegalTransition(state_, to))
      << "illegal round state transition " << RoundStateName(state_) << " -> "
      << RoundStateName(to);
  state_ = to;
}

void RoundEngine::DropStaleAgentsLocked(absl::Time now) {
  std::vector<std::string> stale;
  for (const auto& [id, last_seen] : agents_) {
    if (now - last_seen >= options_.agent_timeout) stale.push_back(id);
  }
  std::sort(stale.begin(), stale.end());  // Deterministic `failed` order.
  for (const std::string& id : stale) {
    FEDGE_LOG(INFO) << "agent " << id << " timed out";
    agents_.erase(id);
    if (IsPendingLocked(id)) {
      FinishParticipantLocked(id, Progress::kFailed, "");
    }
  }
}

void RoundEngine::FinishParticipantLocked(const std::string& agent_id,
                                          Progress progress,
                                          const std::string& upload_id) {
  Participant& p = round_.participants.at(agent_id);
  FEDGE_CHECK(p.progress == Progress::kPending && progress != p.progress)
      << "agent " << agent_id << " is not pending in round " << round_.id;
  p.progress = progress;
  p.upload_id = upload_id;
  auto& list = progress == Progress::kReported ? round_.outcome.reported
                                               : round_.outcome.failed;
  list.push_back(agent_id);
  if (--round_.num_pending == 0) CloseRoundLocked();
}

void RoundEngine::CloseRoundLocked() {
  for (const std::string& id : round_.selected) {
    Participant& p = round_.participants.at(id);
    if (p.progress != Progress::kPending) continue;
    p.progress = Progress::kFailed;
    round_.outcome.failed.push_back(id);
  }
  round_.num_pending = 0;
  RoundOutcome& outcome = round_.outcome;
  outcome.completed =
      static_cast<int>(outcome.reported.size()) >= options_.min_fit_agents;
  if (outcome.completed) ++completed_rounds_;
  FEDGE_LOG(INFO) << "round " << outcome.round
                  << (outcome.completed ? " completed: " : " abandoned: ")
                  << outcome.reported.size() << " reported, "
                  << outcome.failed.size() << " failed";
  finished_.push_back(outcome);
  TransitionLocked(completed_rounds_ >= options_.num_rounds || stop_after_round_
                       ? RoundState::kDone
                       : RoundState::kWaitingForAgents);
}

absl::Status RoundEngine::CheckResultLocked(
    const std::string& agent_id, int64_t round,
    const std::string& upload_id) const {
  if (IsAcceptedUploadLocked(agent_id, round, upload_id)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "upload ", upload_id, " of agent ", agent_id, " already accepted"));
  }
  if (agent_id.empty() || upload_id.empty()) {
    return absl::InvalidArgumentError("empty agent id or upload id");
  }
  if (!agents_.contains(agent_id)) {
    return absl::NotFoundError(absl::StrCat("unknown agent ", agent_id));
  }
  RETURN_IF_ERROR(CheckParticipantLocked(agent_id, round));
  const Participant& p = round_.participants.at(agent_id);
  if (p.progress == Progress::kReported) {
    return absl::FailedPreconditionError(
        absl::StrCat("agent ", agent_id, " already reported upload ",
                     p.upload_id, " in round ", round));
  }
  if (p.progress == Progress::kFailed) {
    return absl::FailedPreconditionError(
        absl::StrCat("agent ", agent_id, " already failed in round ", round));
  }
  return absl::OkStatus();
}

bool RoundEngine::IsAcceptedUploadLocked(const std::string& agent_id,
                                         int64_t round,
                                         const std::string& upload_id) const {
  for (const Round* r : {&round_, &previous_round_}) {
    if (r->id != round || r->selected.empty()) continue;
    auto it = r->participants.find(agent_id);
    return it != r->participants.end() &&
           it->second.progress == Progress::kReported &&
           it->second.upload_id == upload_id;
  }
  return false;
}

absl::Status RoundEngine::CheckParticipantLocked(const std::string& agent_id,
                                                 int64_t round) const {
  if (state_ != RoundState::kInProgress || round != round_.id) {
    return absl::AbortedError(
        absl::StrCat("round ", round, " is not in progress (current round ",
                     round_.id, ", ", RoundStateName(state_), ")"));
  }
  if (!round_.participants.contains(agent_id)) {
    return absl::FailedPreconditionError(
        absl::StrCat("agent ", agent_id, " is not selected in round ", round));
  }
  return absl::OkStatus();
}

bool RoundEngine::IsPendingLocked(const std::string& agent_id) const {
  if (state_ != RoundState::kInProgress) return false;
  auto it = round_.participants.find(agent_id);
  return it != round_.participants.end() &&
         it->second.progress == Progress::kPending;
}

}  // namespace fedge
