// RoundEngine: the transport-free core of the coordinator. It owns the roster
// of available agents and the lifecycle of training rounds: it decides when a
// round starts, which agents train in it, which results are accepted, and
// when the round closes (DESIGN.md, "One round"). It never touches model
// bytes; the caller validates and aggregates updates and publishes models.
//
// Driven by the gRPC coordinator in production and by the in-process
// simulator in research. Time comes from an injected Clock. Which agents a
// round selects is the strategy's decision (common/strategy.h,
// ConfigureFit); the engine runs the round it is given.
//
// Typical driver: one thread calls Tick() periodically and applies the
// outcomes it returns, then, when CanStartRound(), asks the strategy for a
// selection and calls StartRound(); any number of request threads call
// AddAgent, Heartbeat, AssignedRound, CheckResult, AcceptResult and
// ReportFailure.
//
// Thread-safety: all methods are thread-safe (one internal absl::Mutex).
#ifndef FEDGE_SERVER_ROUND_ENGINE_H_
#define FEDGE_SERVER_ROUND_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace fedge {

struct RoundEngineOptions {
  // A round starts only when at least this many agents are available (>= 1).
  int min_available_agents = 1;
  // Quorum: accepted results needed for a round to complete (>= 1, and
  // <= min_available_agents).
  int min_fit_agents = 1;
  // Time from a round's start to its deadline (> 0).
  absl::Duration round_deadline = absl::Minutes(10);
  // Completed rounds to run (>= 1); abandoned rounds do not count. The engine
  // is kDone afterwards.
  int num_rounds = 1;
  // Liveness: an agent not seen (AddAgent, Heartbeat, AcceptResult) for this
  // long is dropped by Tick() (> 0).
  absl::Duration agent_timeout = absl::Seconds(60);
};

// Phase of the engine. Legal transitions (TransitionLocked() enforces them):
//   kWaitingForAgents -> kInProgress        StartRound(): >=
//                                           min_available_agents agents and
//                                           rounds remain
//   kInProgress       -> kWaitingForAgents  round closed or abandoned, rounds
//                                           remain
//   kInProgress       -> kDone              the last round completed
//   kWaitingForAgents -> kDone              RestoreProgress() with all rounds
//                                           already completed,
//                                           CompleteAsyncRound() of the
//                                           last round, or
//                                           SetNumRounds/StopAfterCurrentRound
//                                           between rounds
//   kInProgress       -> kDone              also: the round closes after
//                                           StopAfterCurrentRound()
// kDone is final.
enum class RoundState { kWaitingForAgents, kInProgress, kDone };

// "WAITING_FOR_AGENTS", "IN_PROGRESS" or "DONE".
absl::string_view RoundStateName(RoundState state);

// What happened to a finished round. Every selected agent is in exactly one
// of `reported` and `failed`.
struct RoundOutcome {
  int64_t round = 0;
  // True if at least min_fit_agents reported; false if abandoned (the global
  // model must stay unchanged).
  bool completed = false;
  // Agents whose results were accepted, in acceptance order.
  std::vector<std::string> reported;
  // Selected agents that reported failure, were removed or dropped (in that
  // order of events), then those still pending at the deadline (by id).
  std::vector<std::string> failed;
};

// Everything the engine knows, at one instant (for status pages).
struct EngineSnapshot {
  RoundState state = RoundState::kWaitingForAgents;
  int64_t current_round = 0;
  int completed_rounds = 0;
  int num_rounds = 0;
  bool stopping = false;  // StopAfterCurrentRound() was called.
  absl::Time round_started = absl::InfinitePast();
  absl::Time round_deadline = absl::InfinitePast();  // When in progress.
  // Agents in the roster with when they were last seen, sorted by id.
  std::vector<std::pair<std::string, absl::Time>> agents;
  // The round in progress: agents pending, reported and failed (sorted).
  std::vector<std::string> pending, reported, failed;
};

class RoundEngine {
 public:
  // Returns INVALID_ARGUMENT naming the first bad option (e.g. "fraction must
  // be in (0, 1], got 0") or a null clock. `clock` must outlive the engine.
  static absl::StatusOr<std::unique_ptr<RoundEngine>> Create(
      RoundEngineOptions options, Clock* clock);

  RoundEngine(const RoundEngine&) = delete;
  RoundEngine& operator=(const RoundEngine&) = delete;

  // Resume support: the next round started gets id `next_round`, and
  // `completed_rounds` count toward num_rounds (the engine is kDone at once
  // if they reach it). Returns INVALID_ARGUMENT unless next_round >= 1 and
  // 0 <= completed_rounds < next_round; FAILED_PRECONDITION once a round has
  // started or the engine is done.
  absl::Status RestoreProgress(int64_t next_round, int completed_rounds);

  // Adds an available agent and marks it seen now. Returns INVALID_ARGUMENT
  // for an empty id; ALREADY_EXISTS if present (it is still marked seen, so
  // the caller may treat this as a re-join). A new agent can be selected from
  // the next round on.
  absl::Status AddAgent(const std::string& agent_id);

  // Marks the agent seen now. Returns NOT_FOUND if unknown (e.g. dropped for
  // inactivity: the agent should join again).
  absl::Status Heartbeat(const std::string& agent_id);

  // Removes the agent. If it is selected in the round in progress and has not
  // reported, it counts as failed (which may close the round). Returns
  // NOT_FOUND if unknown.
  absl::Status RemoveAgent(const std::string& agent_id);

  // Drives time: drops agents not seen within agent_timeout (failed in the
  // round in progress), closes or abandons the round if its deadline passed,
  // then returns the outcomes of the rounds finished since the last Tick (in
  // order; rounds also finish as soon as every selected agent has reported or
  // failed). Never starts a round (StartRound does).
  std::vector<RoundOutcome> Tick();

  // True when StartRound() would start a round now: waiting for agents, at
  // least min_available_agents in the roster, rounds remain, and no outcome
  // is waiting for Tick().
  bool CanStartRound() const;

  // True when a round finished (it closes as soon as its last selected
  // agent reports, on whichever thread that report came in) and Tick() has
  // not yet returned its outcome.
  bool HasOutcomeWaiting() const;

  // Starts the next round with the agents `selected` (each in the roster;
  // duplicates ignored) and returns its id. FAILED_PRECONDITION unless
  // CanStartRound(); INVALID_ARGUMENT for an empty selection or an agent
  // not in the roster (naming it).
  absl::StatusOr<int64_t> StartRound(std::vector<std::string> selected);

  // Changes the number of completed rounds to run. INVALID_ARGUMENT for
  // n < 1; FAILED_PRECONDITION when the engine is done, when n is below
  // the rounds already completed, or when a round is in progress and n
  // would not leave room for it (n equal to the completed rounds ends the
  // run at once when waiting; StopAfterCurrentRound ends it after the
  // round in progress).
  absl::Status SetNumRounds(int n);
  // The run ends when the round in progress closes (completed or not), or
  // at once when none is in progress. FAILED_PRECONDITION when done.
  absl::Status StopAfterCurrentRound();
  // StopAfterCurrentRound() was called.
  bool stopping() const;
  int num_rounds() const;

  // Closes the round in progress now, as its deadline would: completed if
  // at least min_fit_agents reported, else abandoned (for shutdown). Its
  // outcome is returned by the next Tick(). FAILED_PRECONDITION when no
  // round is in progress.
  absl::Status CloseRoundNow();

  // Asynchronous modes (FedBuff), where no round is started and the caller
  // decides when one is complete (a new model version): counts a completed
  // round with the next id and returns that id. The engine is kDone
  // afterwards when it was the last round, or after StopAfterCurrentRound.
  // FAILED_PRECONDITION unless waiting for agents (no round in progress,
  // not done).
  absl::StatusOr<int64_t> CompleteAsyncRound();

  // Returns the round id the agent must train for: it is selected in the
  // round in progress and has neither reported nor failed. Returns NOT_FOUND
  // if not (unknown agent, not selected, already reported, or no round in
  // progress: the caller tells the agent to wait); FAILED_PRECONDITION if the
  // engine is done.
  absl::StatusOr<int64_t> AssignedRound(const std::string& agent_id) const;

  // Records a result the caller has validated, and marks the agent seen.
  // Returns, checked in this order:
  //   ALREADY_EXISTS       (agent, round, upload_id) was already accepted in
  //                        the current or the previous round; nothing changes
  //                        (the caller acknowledges without counting again).
  //   INVALID_ARGUMENT     empty agent or upload id.
  //   NOT_FOUND            unknown agent.
  //   ABORTED              `round` is not the round in progress (stale, late
  //                        or closed): the result must not be counted.
  //   FAILED_PRECONDITION  agent not selected in this round, already reported
  //                        failure, or already reported another upload id.
  //   OK                   accepted, exactly once per triple.
  // When the last pending selected agent reports, the round closes at once;
  // its outcome is returned by the next Tick().
  absl::Status AcceptResult(const std::string& agent_id, int64_t round,
                            const std::string& upload_id);

  // The checks of AcceptResult, without recording anything: lets the caller
  // refuse before receiving or parsing a large upload.
  absl::Status CheckResult(const std::string& agent_id, int64_t round,
                           const std::string& upload_id) const;

  // A selected agent says it cannot train in `round`; it counts as failed
  // (which may close the round). Returns OK, also when repeated; NOT_FOUND
  // for an unknown agent; ABORTED if `round` is not the round in progress;
  // FAILED_PRECONDITION if not selected or it already reported a result.
  absl::Status ReportFailure(const std::string& agent_id, int64_t round);

  // Read-only views for status and operator endpoints.
  RoundState state() const;
  // Id of the round in progress, else of the last round started (0 if none;
  // next_round - 1 after RestoreProgress).
  int64_t current_round() const;
  int completed_rounds() const;
  // Agents selected in the round in progress, sorted; empty if none.
  std::vector<std::string> SelectedAgents() const;
  // All agents in the roster, sorted.
  std::vector<std::string> AvailableAgents() const;
  // Agents in the roster, and whether `agent_id` is one.
  size_t num_agents() const;
  bool HasAgent(const std::string& agent_id) const;
  // Deadline of the round in progress; InfinitePast() if none.
  absl::Time round_deadline_time() const;
  // Results accepted in the round in progress; 0 if none.
  size_t num_reported() const;
  EngineSnapshot Snapshot() const;

 private:
  enum class Progress { kPending, kReported, kFailed };
  struct Participant {
    Progress progress = Progress::kPending;
    std::string upload_id;  // Set when kReported.
  };
  struct Round {
    int64_t id = 0;
    absl::Time started = absl::InfinitePast();
    absl::Time deadline = absl::InfinitePast();
    std::vector<std::string> selected;  // Sorted.
    absl::flat_hash_map<std::string, Participant> participants;
    size_t num_pending = 0;
    RoundOutcome outcome;  // Filled as agents report or fail.
  };

  RoundEngine(RoundEngineOptions options, Clock* clock);

  // Performs `to`, or crashes if the transition is not legal.
  void TransitionLocked(RoundState to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropStaleAgentsLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CanStartRoundLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks a pending participant of the round in progress reported or failed,
  // and closes the round if nobody is pending any more.
  void FinishParticipantLocked(const std::string& agent_id, Progress progress,
                               const std::string& upload_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts pending agents as failed, queues the outcome, leaves kInProgress.
  void CloseRoundLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckResultLocked(const std::string& agent_id, int64_t round,
                                 const std::string& upload_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool IsAcceptedUploadLocked(const std::string& agent_id, int64_t round,
                              const std::string& upload_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // OK if `round` is in progress and `agent_id` is selected in it.
  absl::Status CheckParticipantLocked(const std::string& agent_id,
                                      int64_t round) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True if a round is in progress and `agent_id` is pending in it.
  bool IsPendingLocked(const std::string& agent_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  RoundEngineOptions options_ ABSL_GUARDED_BY(mu_);
  Clock* const clock_;
  bool stop_after_round_ ABSL_GUARDED_BY(mu_) = false;
  RoundState state_ ABSL_GUARDED_BY(mu_) = RoundState::kWaitingForAgents;
  int completed_rounds_ ABSL_GUARDED_BY(mu_) = 0;
  bool started_any_round_ ABSL_GUARDED_BY(mu_) = false;
  // Agent id -> last time seen.
  absl::flat_hash_map<std::string, absl::Time> agents_ ABSL_GUARDED_BY(mu_);
  // The round in progress, or the last one started (id 0 before any).
  Round round_ ABSL_GUARDED_BY(mu_);
  // The round before round_, kept to recognize duplicate uploads.
  Round previous_round_ ABSL_GUARDED_BY(mu_);
  // Outcomes not yet returned by Tick().
  std::vector<RoundOutcome> finished_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedge

#endif  // FEDGE_SERVER_ROUND_ENGINE_H_
