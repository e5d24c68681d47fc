#include "server/fedbuff_tasks.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge {

FedBuffOptions ToFedBuffOptions(const v1::StrategyConfig& s) {
  FedBuffOptions o;
  o.buffer_size = s.fedbuff_buffer_size();
  o.max_staleness = s.fedbuff_max_staleness();
  o.concurrency = s.fedbuff_concurrency();
  o.selection_count = s.count();
  o.selection_fraction = s.fraction();
  o.task_deadline = absl::Milliseconds(s.round_deadline_ms());
  return o;
}

double StalenessWeight(int64_t staleness) {
  return 1.0 / std::sqrt(1.0 + static_cast<double>(staleness));
}

int Concurrency(const FedBuffOptions& o, int num_available) {
  if (o.concurrency > 0) return o.concurrency;
  if (o.selection_count > 0) return o.selection_count;
  return std::max(
      1, static_cast<int>(std::lround(o.selection_fraction * num_available)));
}

FedBuffTasks::FedBuffTasks(FedBuffOptions options)
    : options_(options), next_task_(1), lease_(1) {}

std::optional<FedBuffTasks::Task> FedBuffTasks::Find(
    const std::string& agent_id) const {
  absl::MutexLock lock(&mu_);
  auto it = in_flight_.find(agent_id);
  if (it == in_flight_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<FedBuffTasks::Task> FedBuffTasks::Start(
    const std::string& agent_id, int64_t base_version, int limit,
    absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (in_flight_.contains(agent_id)) {
    return absl::FailedPreconditionError(
        absl::StrCat("agent ", agent_id, " has a task in flight"));
  }
  if (static_cast<int>(in_flight_.size()) >= limit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        in_flight_.size(), " tasks in flight (concurrency ", limit, ")"));
  }
  if (next_task_ >= lease_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "task numbers below ", lease_, " are used until a checkpoint"));
  }
  Task task{next_task_++, agent_id, base_version, deadline};
  in_flight_[agent_id] = task;
  return task;
}

absl::StatusOr<FedBuffTasks::Task> FedBuffTasks::Check(
    const std::string& agent_id, int64_t task, const std::string& upload_id,
    int64_t base_version, int64_t current_version) {
  absl::MutexLock lock(&mu_);
  return CheckLocked(agent_id, task, upload_id, base_version, current_version);
}

absl::StatusOr<FedBuffTasks::Task> FedBuffTasks::CheckLocked(
    const std::string& agent_id, int64_t task, const std::string& upload_id,
    int64_t base_version, int64_t current_version) {
  auto done = accepted_.find(agent_id);
  if (done != accepted_.end() && done->second.first == task &&
      done->second.second == upload_id) {
    return absl::AlreadyExistsError(absl::StrCat(
        "upload ", upload_id, " of agent ", agent_id, " already accepted"));
  }
  auto it = in_flight_.find(agent_id);
  if (it == in_flight_.end() || it->second.number != task) {
    return absl::AbortedError(absl::StrCat(
        "task ", task, " of agent ", agent_id,
        " is not in flight (finished, expired, or from before a restart)"));
  }
  if (base_version != it->second.base_version) {
    return absl::InvalidArgumentError(absl::StrCat(
        "update was trained from model version ", base_version, " but task ",
        task, " uses version ", it->second.base_version));
  }
  const int64_t staleness = current_version - base_version;
  if (staleness > options_.max_staleness) {
    FailLocked(agent_id);
    return absl::AbortedError(
        absl::StrCat("update of task ", task, " is ", staleness,
                     " versions stale (trained from version ", base_version,
                     ", the newest is ", current_version,
                     "); fedbuff_max_staleness is ", options_.max_staleness));
  }
  return it->second;
}

absl::StatusOr<int64_t> FedBuffTasks::Accept(const std::string& agent_id,
                                             int64_t task,
                                             const std::string& upload_id,
                                             int64_t base_version,
                                             int64_t current_version) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(
      CheckLocked(agent_id, task, upload_id, base_version, current_version)
          .status());
  in_flight_.erase(agent_id);
  accepted_[agent_id] = {task, upload_id};
  outcome_.reported.push_back(agent_id);
  return current_version - base_version;
}

absl::Status FedBuffTasks::Fail(const std::string& agent_id, int64_t task) {
  absl::MutexLock lock(&mu_);
  auto it = in_flight_.find(agent_id);
  if (it == in_flight_.end() || it->second.number != task) {
    return absl::AbortedError(absl::StrCat("task ", task, " of agent ",
                                           agent_id, " is not in flight"));
  }
  FailLocked(agent_id);
  return absl::OkStatus();
}

void FedBuffTasks::Expire(
    absl::Time now, absl::FunctionRef<bool(const std::string&)> in_roster) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> ended;
  for (const auto& [agent, task] : in_flight_) {
    if (now >= task.deadline || !in_roster(agent)) ended.push_back(agent);
  }
  std::sort(ended.begin(), ended.end());  // Deterministic `failed` order.
  for (const std::string& agent : ended) {
    FEDGE_LOG(INFO) << "task " << in_flight_.at(agent).number << " of agent "
                    << agent << " ended unanswered";
    FailLocked(agent);
  }
}

void FedBuffTasks::FailLocked(const std::string& agent_id) {
  in_flight_.erase(agent_id);
  outcome_.failed.push_back(agent_id);
}

RoundOutcome FedBuffTasks::TakeOutcome() {
  absl::MutexLock lock(&mu_);
  RoundOutcome out = std::move(outcome_);
  outcome_ = RoundOutcome();
  return out;
}

int FedBuffTasks::num_in_flight() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(in_flight_.size());
}

std::optional<int64_t> FedBuffTasks::oldest_base_version() const {
  absl::MutexLock lock(&mu_);
  std::optional<int64_t> oldest;
  for (const auto& [agent, task] : in_flight_) {
    if (!oldest.has_value() || task.base_version < *oldest) {
      oldest = task.base_version;
    }
  }
  return oldest;
}

int64_t FedBuffTasks::Reserve() const {
  absl::MutexLock lock(&mu_);
  return next_task_ + kTaskLease;
}

void FedBuffTasks::Durable(int64_t lease) {
  absl::MutexLock lock(&mu_);
  lease_ = std::max(lease_, lease);
}

void FedBuffTasks::Resume(int64_t next_task) {
  absl::MutexLock lock(&mu_);
  next_task_ = std::max(next_task_, next_task);
  lease_ = std::max(lease_, next_task_);
}

}  // namespace fedge
