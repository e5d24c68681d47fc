// FedBuffTasks: the training tasks of asynchronous buffered aggregation
// (FedBuff, Nguyen et al. 2022) in fedge-coordinator, where a round of the
// history is a model version. Any free agent may get a task on the newest
// version while fewer than `concurrency` are in flight; each task has a
// number of its own that stands for the round in TrainTask and
// UpdateMetadata, so results are accepted exactly once per (agent, task).
// An accepted result says how stale it is (versions published since its
// base version); the caller weights it and folds it into the round
// accumulator, and closes a version every `buffer_size` updates.
//
// Task numbers never repeat, not even across restarts: they are leased.
// Reserve() gives the number a checkpoint records (every number handed out
// before the next checkpoint is below it); Durable() says that checkpoint
// is on disk; a restarted coordinator continues from the recorded number.
// Numbers are handed out only below the lease of the newest durable
// checkpoint (kTaskLease per checkpoint: in practice never reached).
//
// The transport-free core (no gRPC, no model bytes, no clock: times are
// passed in). Thread-safe (one internal absl::Mutex).
#ifndef FEDGE_SERVER_FEDBUFF_TASKS_H_
#define FEDGE_SERVER_FEDBUFF_TASKS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "fedge/v1/config.pb.h"
#include "server/round_engine.h"

namespace fedge {

struct FedBuffOptions {
  int buffer_size = 10;    // Updates per new model version (K, >= 1).
  int max_staleness = 20;  // Results staler than this are refused (>= 0).
  // Tasks in flight at most (>= 1 once resolved); 0: the sync selection
  // size (Concurrency()).
  int concurrency = 0;
  int selection_count = 0;        // The sync selection: a count, or
  double selection_fraction = 1;  // a fraction of the agents available.
  absl::Duration task_deadline = absl::Minutes(10);  // From hand-out.
};

// The options of strategy.mode "fedbuff" (validated config).
FedBuffOptions ToFedBuffOptions(const v1::StrategyConfig& strategy);

// An update `staleness` versions old counts 1 / sqrt(1 + staleness) times
// its examples (the simulator and the coordinator both use this).
double StalenessWeight(int64_t staleness);

// Tasks in flight at most with `num_available` agents: `concurrency`, or
// the sync selection size (count, or fraction x available, at least 1).
int Concurrency(const FedBuffOptions& options, int num_available);

class FedBuffTasks {
 public:
  // Task numbers one checkpoint leases.
  static constexpr int64_t kTaskLease = int64_t{1} << 20;

  struct Task {
    int64_t number = 0;  // Stands for the round.
    std::string agent_id;
    int64_t base_version = 0;  // The model version it trains from.
    absl::Time deadline;       // Its slot is freed then.
  };

  // Task numbers start at 1; none is handed out before Durable().
  explicit FedBuffTasks(FedBuffOptions options);
  FedBuffTasks(const FedBuffTasks&) = delete;
  FedBuffTasks& operator=(const FedBuffTasks&) = delete;

  const FedBuffOptions& options() const { return options_; }

  // The agent's task in flight, if any.
  std::optional<Task> Find(const std::string& agent_id) const;

  // Starts a task for `agent_id` on `base_version`, due at `deadline`.
  // RESOURCE_EXHAUSTED when `limit` tasks are in flight or the lease is
  // used up (wait); FAILED_PRECONDITION when the agent has one in flight.
  absl::StatusOr<Task> Start(const std::string& agent_id, int64_t base_version,
                             int limit, absl::Time deadline);

  // The checks of Accept, without accepting. Returns the task, or, in this
  // order: ALREADY_EXISTS (this upload was accepted: a retry), ABORTED (the
  // task is not in flight: finished, expired or from before a restart),
  // INVALID_ARGUMENT (base_version is not the task's), ABORTED naming
  // fedbuff_max_staleness (staler than it; `current_version` is the newest
  // version): such a task can never succeed and ends, failed, at once.
  absl::StatusOr<Task> Check(const std::string& agent_id, int64_t task,
                             const std::string& upload_id, int64_t base_version,
                             int64_t current_version);

  // Accepts the result (the checks of Check first): the task ends, the
  // agent counts as reported in the version being built. Returns the
  // result's staleness.
  absl::StatusOr<int64_t> Accept(const std::string& agent_id, int64_t task,
                                 const std::string& upload_id,
                                 int64_t base_version, int64_t current_version);

  // Ends the agent's task `task` as failed (it gave up, or its update was
  // refused as too stale). ABORTED when that task is not in flight.
  absl::Status Fail(const std::string& agent_id, int64_t task);

  // Ends, as failed, the tasks past their deadline at `now` and those of
  // agents for which `in_roster` is false (dropped, left, evicted).
  void Expire(absl::Time now,
              absl::FunctionRef<bool(const std::string&)> in_roster);

  // Who reported and who failed since the last call (the version being
  // built); the round id is the caller's.
  RoundOutcome TakeOutcome();

  int num_in_flight() const;
  // The oldest base version of a task in flight (nullopt: none).
  std::optional<int64_t> oldest_base_version() const;

  // The number a checkpoint taken now records. Durable(`lease`): that
  // checkpoint is on disk; numbers below `lease` may be handed out.
  int64_t Reserve() const;
  void Durable(int64_t lease);
  // A restart: numbers continue from what the checkpoint recorded.
  void Resume(int64_t next_task);

 private:
  absl::StatusOr<Task> CheckLocked(const std::string& agent_id, int64_t task,
                                   const std::string& upload_id,
                                   int64_t base_version,
                                   int64_t current_version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailLocked(const std::string& agent_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const FedBuffOptions options_;
  mutable absl::Mutex mu_;
  int64_t next_task_ ABSL_GUARDED_BY(mu_);
  int64_t lease_ ABSL_GUARDED_BY(mu_);  // Numbers below it may be used.
  absl::flat_hash_map<std::string, Task> in_flight_ ABSL_GUARDED_BY(mu_);
  // Each agent's last accepted (task, upload id), to recognize retries.
  absl::flat_hash_map<std::string, std::pair<int64_t, std::string>> accepted_
      ABSL_GUARDED_BY(mu_);
  RoundOutcome outcome_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedge

#endif  // FEDGE_SERVER_FEDBUFF_TASKS_H_
