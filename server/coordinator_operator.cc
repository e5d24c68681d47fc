// Coordinator: what operators see (status, agents, rounds, the status
// page's snapshot) and what they do (pause, resume, stop, rounds, evict,
// allow), each action logged with who asked. The rest of the class is in
// coordinator.cc and coordinator_rounds.cc.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/fl_config.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/coordinator.h"

namespace fedge {
namespace {

// What an operator can do where set-rounds is refused.
constexpr char kRestartToGoOn[] =
    "; to train more rounds, restart the coordinator on its state_dir with a "
    "larger --rounds";
constexpr char kStopEndsAfterThisRound[] =
    " (fedge stop ends the federation after the round in progress)";

constexpr size_t kMaxRefusalsKept = 50;

}  // namespace

absl::Status Coordinator::ListRefusal(const std::string& agent_id,
                                      absl::string_view what,
                                      absl::string_view reason,
                                      absl::Status status) {
  RefusalStatus r;
  r.unix_ms = absl::ToUnixMillis(clock_->WallNow());
  r.agent_id = Printable(agent_id, 64);
  r.reason = Printable(absl::StrCat(reason, ": ", status.message()));
  FEDGE_LOG(INFO) << "refused " << what << " from " << r.agent_id << ": "
                  << r.reason;
  absl::MutexLock lock(&mu_);
  refusals_.push_back(std::move(r));
  while (refusals_.size() > kMaxRefusalsKept) refusals_.pop_front();
  return status;
}

absl::Status Coordinator::Refuse(const std::string& agent_id,
                                 absl::string_view result,
                                 absl::string_view reason,
                                 absl::Status status) {
  metrics_.Update(result, reason);
  AuditEvent("refused", {{"agent", agent_id},
                         {"what", std::string(result)},
                         {"reason", std::string(reason)},
                         {"message", std::string(status.message())}});
  return ListRefusal(agent_id, result, reason, std::move(status));
}

void Coordinator::NotePausedReason(const std::string& agent_id,
                                   absl::string_view reason) {
  absl::MutexLock lock(&mu_);
  auto it = status_reasons_.find(agent_id);
  if (reason.empty()) {
    if (it == status_reasons_.end()) return;  // The common case.
    it->second.paused.clear();
    if (it->second.failure.empty()) status_reasons_.erase(it);
    return;
  }
  std::string printable = Printable(reason);
  if (it == status_reasons_.end() || it->second.paused != printable) {
    FEDGE_LOG(INFO) << "agent " << Printable(agent_id, 64)
                    << " holds back: " << printable;
  }
  status_reasons_[agent_id].paused = std::move(printable);
}

bool Coordinator::NoteFailure(const std::string& agent_id, int64_t round,
                              absl::string_view reason) {
  absl::MutexLock lock(&mu_);
  StatusReason& s = status_reasons_[agent_id];
  if (s.failed_round == round) return false;
  s.failed_round = round;
  s.failure = Printable(reason);
  FEDGE_LOG(INFO) << "agent " << Printable(agent_id, 64) << " gave up round "
                  << round << ": " << s.failure;
  return true;
}

std::string Coordinator::StatusReasonLocked(const std::string& agent_id,
                                            int64_t current_round) const {
  auto it = status_reasons_.find(agent_id);
  if (it == status_reasons_.end()) return "";
  const StatusReason& s = it->second;
  if (!s.paused.empty()) return absl::StrCat("paused: ", s.paused);
  if (s.failed_round == current_round && !s.failure.empty()) {
    return absl::StrCat("gave up round ", s.failed_round, ": ", s.failure);
  }
  return "";
}

void Coordinator::Audit(absl::string_view action, const std::string& who,
                        const std::string& detail) {
  metrics_.operator_actions.WithLabels({std::string(action)}).Increment();
  FEDGE_LOG(INFO) << "operator action " << action << " by " << Printable(who)
                  << (detail.empty() ? "" : ": ") << Printable(detail);
  AuditEvent("operator",
             {{"action", std::string(action)}, {"by", who}, {"detail", detail}});
}

absl::Status Coordinator::Pause(const std::string& who) {
  paused_ = true;
  operator_changes_ = true;
  metrics_.paused.Set(1);
  Audit("pause", who, "no new round starts until resumed");
  return absl::OkStatus();
}

absl::Status Coordinator::Resume(const std::string& who) {
  paused_ = false;
  operator_changes_ = true;
  metrics_.paused.Set(0);
  Audit("resume", who, "");
  return absl::OkStatus();
}

absl::Status Coordinator::StopAfterRound(const std::string& who) {
  absl::Status stopped = engine_->StopAfterCurrentRound();
  if (!stopped.ok()) return Annotate(stopped, "cannot stop");
  operator_changes_ = true;
  Audit("stop", who, "the federation ends after the round in progress");
  return absl::OkStatus();
}

absl::Status Coordinator::SetRounds(int rounds, const std::string& who) {
  if (absl::Status set = engine_->SetNumRounds(rounds); !set.ok()) {
    if (!absl::IsFailedPrecondition(set)) return set;
    // Say what the operator can do instead.
    const char* instead = "";
    if (done()) {
      instead = kRestartToGoOn;
    } else if (engine_->state() == RoundState::kInProgress) {
      instead = kStopEndsAfterThisRound;
    }
    return absl::FailedPreconditionError(absl::StrCat(set.message(), instead));
  }
  rounds_set_by_operator_ = true;
  operator_changes_ = true;
  Audit("set_rounds", who, absl::StrCat("rounds = ", rounds));
  return absl::OkStatus();
}

absl::Status Coordinator::EvictAgent(const std::string& agent_id,
                                     const std::string& who) {
  {
    absl::MutexLock lock(&mu_);
    // An id that never joined may be evicted ahead of its first join, if
    // it could be one.
    if (!agents_.contains(agent_id) && !partitions_.contains(agent_id)) {
      if (absl::Status id = ValidateAgentId(agent_id); !id.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'", Printable(agent_id, 64),
            "' is not an agent id (none has joined): ", id.message()));
      }
    }
    evicted_.insert(agent_id);
    EndSessionLocked(agent_id);
  }
  operator_changes_ = true;
  engine_->RemoveAgent(agent_id).IgnoreError();  // Gone already is fine.
  Audit("evict", who, agent_id);
  return absl::OkStatus();
}

absl::Status Coordinator::AllowAgent(const std::string& agent_id,
                                     const std::string& who) {
  {
    absl::MutexLock lock(&mu_);
    if (evicted_.erase(agent_id) == 0) {
      return absl::NotFoundError(
          absl::StrCat("agent '", Printable(agent_id, 64), "' is not evicted"));
    }
  }
  operator_changes_ = true;
  Audit("allow", who, agent_id);
  return absl::OkStatus();
}

v1::GetStatusResponse Coordinator::GetStatus() const {
  const EngineSnapshot e = engine_->Snapshot();
  v1::GetStatusResponse s;
  s.set_state(std::string(RoundStateName(e.state)));
  s.set_current_round(e.current_round);
  s.set_completed_rounds(e.completed_rounds);
  s.set_total_rounds(e.num_rounds);
  std::shared_ptr<const PublishedModel> model = latest_model();
  s.set_model_version(model->version);
  s.set_model_sha256(model->sha256_hex);
  s.set_num_agents(static_cast<int32_t>(e.agents.size()));
  s.set_num_selected(static_cast<int32_t>(e.pending.size() + e.reported.size() +
                                          e.failed.size()));
  s.set_num_reported(static_cast<int32_t>(e.reported.size()));
  s.set_paused(paused_);
  s.set_stopping(e.stopping);
  s.set_strategy(std::string(strategy_->name()));
  s.set_privacy_mode(config_.strategy().dp().mode());
  if (const std::optional<PrivacyStatus> p = PrivacySnapshot()) {
    s.set_privacy_epsilon(p->epsilon);
    s.set_privacy_delta(p->delta);
    s.set_privacy_max_epsilon(p->max_epsilon);
    s.set_privacy_budget_exhausted(p->budget_exhausted);
  }
  {
    absl::MutexLock lock(&secagg_mu_);
    if (secagg_.has_value()) {
      if (!secagg_->failure.ok() || secagg_->session == nullptr) {
        s.set_secure_aggregation_stage("failed");
      } else {
        s.set_secure_aggregation_stage(
            secagg::ServerStateName(secagg_->session->state()));
        s.set_secure_aggregation_awaited(
            static_cast<int32_t>(secagg_->session->Awaited().size()));
      }
    }
  }
  absl::MutexLock lock(&mu_);
  if (last_accuracy_.has_value()) s.set_last_test_accuracy(*last_accuracy_);
  return s;
}

v1::ListAgentsResponse Coordinator::ListAgents() const {
  const FederationSnapshot snap = Snapshot();
  const EngineSnapshot e = engine_->Snapshot();
  v1::ListAgentsResponse r;
  absl::MutexLock lock(&mu_);
  for (const AgentStatus& a : snap.agents) {
    v1::AgentInfo* info = r.add_agents();
    info->set_agent_id(a.id);
    auto it = partitions_.find(a.id);
    info->set_partition_index(it == partitions_.end() ? -1 : it->second);
    info->set_selected(
        a.state == "training" || a.state == "reported" ||
        (a.state == "failed" &&
         std::binary_search(e.failed.begin(), e.failed.end(), a.id)));
    info->set_device_class(a.device_class);
    info->set_state(a.state);
    info->set_rounds_contributed(a.rounds_contributed);
    if (a.last_seen_ms_ago.has_value()) {  // Else 0: not in the roster.
      info->set_last_seen_unix_ms(snap.federation.now_unix_ms -
                                  *a.last_seen_ms_ago);
    }
    info->set_status_reason(StatusReasonLocked(a.id, e.current_round));
  }
  return r;
}

v1::ListRoundsResponse Coordinator::ListRounds() const {
  v1::ListRoundsResponse r;
  absl::MutexLock lock(&mu_);
  for (const auto& [record, completed] : records_) {
    v1::RoundInfo* info = r.add_rounds();
    info->set_round(record.round);
    info->set_completed(completed);
    info->set_num_agents(record.num_agents);
    info->set_num_examples(record.num_examples);
    if (record.test_accuracy.has_value()) {
      info->set_test_accuracy(*record.test_accuracy);
    }
    info->set_round_seconds(record.round_seconds);
  }
  return r;
}

FederationSnapshot Coordinator::Snapshot() const {
  const EngineSnapshot e = engine_->Snapshot();
  const absl::Time now = clock_->Now();
  std::shared_ptr<const PublishedModel> model = latest_model();
  FederationSnapshot s;
  FederationStatus& f = s.federation;
  f.state = std::string(RoundStateName(e.state));
  f.paused = paused_;
  f.current_round = e.current_round;
  f.completed_rounds = e.completed_rounds;
  f.total_rounds = e.num_rounds;
  f.model_version = model->version;
  f.model_sha256 = model->sha256_hex;
  f.strategy = std::string(strategy_->name());
  f.started_unix_ms = absl::ToUnixMillis(started_wall_);
  f.now_unix_ms = absl::ToUnixMillis(clock_->WallNow());
  f.privacy = PrivacySnapshot();
  if (e.state == RoundState::kInProgress) {
    CurrentRoundStatus c;
    c.round = e.current_round;
    c.selected = static_cast<int>(e.pending.size() + e.reported.size() +
                                  e.failed.size());
    c.reported = static_cast<int>(e.reported.size());
    c.failed = static_cast<int>(e.failed.size());
    c.deadline_remaining_ms =
        std::max<int64_t>(0, absl::ToInt64Milliseconds(e.round_deadline - now));
    c.elapsed_ms = absl::ToInt64Milliseconds(now - e.round_started);
    s.current_round = c;
  }
  auto in = [](const std::vector<std::string>& v, const std::string& id) {
    return std::binary_search(v.begin(), v.end(), id);
  };
  absl::MutexLock lock(&mu_);
  for (const auto& [id, seen] : e.agents) {
    AgentStatus a;
    a.id = Printable(id, 64);
    auto info = agents_.find(id);
    if (info != agents_.end()) a.device_class = info->second.device_class;
    a.state = in(e.pending, id)    ? "training"
              : in(e.reported, id) ? "reported"
              : in(e.failed, id)   ? "failed"
                                   : "idle";
    a.last_seen_ms_ago =
        std::max<int64_t>(0, absl::ToInt64Milliseconds(now - seen));
    auto c = contributed_.find(id);
    a.rounds_contributed = c == contributed_.end() ? 0 : c->second;
    s.agents.push_back(std::move(a));
  }
  for (const std::string& id : evicted_) {
    AgentStatus a;
    a.id = Printable(id, 64);
    a.state = "evicted";
    auto c = contributed_.find(id);
    a.rounds_contributed = c == contributed_.end() ? 0 : c->second;
    s.agents.push_back(std::move(a));
  }
  for (const auto& [record, completed] : records_) {
    RoundStatus r;
    r.round = record.round;
    r.completed = completed;
    r.num_agents = record.num_agents;
    r.num_failed = record.num_failed;
    r.num_examples = record.num_examples;
    r.train_loss = record.train_loss;
    r.train_accuracy = record.train_accuracy;
    r.test_loss = record.test_loss;
    r.test_accuracy = record.test_accuracy;
    r.fed_eval_loss = record.fed_eval_loss;
    r.fed_eval_accuracy = record.fed_eval_accuracy;
    r.bytes_received = record.bytes_received.value_or(0);
    r.bytes_sent = record.bytes_sent.value_or(0);
    r.round_seconds = record.round_seconds;
    s.rounds.push_back(std::move(r));
  }
  s.refusals.assign(refusals_.begin(), refusals_.end());
  return s;
}

}  // namespace fedge
