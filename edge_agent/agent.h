// Agent: the loop that runs on a device. It joins the federation, polls for
// tasks, trains on local data and submits updates, through two interfaces:
// CoordinatorClient (the transport) and LocalTrainer (the ML framework), so
// it includes neither gRPC nor LibTorch and is tested with fakes.
//
//   Join (retry with backoff) -> loop:
//     Poll -> train task: the model (held, cached or FetchModel), Train,
//                         SubmitUpdate (same upload id on retries),
//                         with heartbeats from a thread of its own meanwhile
//          -> evaluate:   the model on the local held-out data,
//                         SubmitEvaluation (federated evaluation)
//          -> wait:       sleep retry_after
//          -> finished:   Leave, return OK (exit_when_finished)
//   and keeps the newest global model in the cache for offline prediction.
//
// Models: each global model version is downloaded at most once. The agent
// holds the last model it used (fetched or read from the cache, verified)
// in memory, one model at most (it is let go before another one is read
// or fetched); a task, an evaluation or the newest-model refresh on the
// held version uses it as it is. A model fetched for a task or evaluation
// goes to the cache at most every model_cache_interval (later, from an
// idle poll announcing it, when the interval had not passed); one fetched
// while idle, or held when training is interrupted, at once; the held one
// when Run() returns, if it is newer than every cached one.
//
// Device conditions (AgentOptions::eligibility, device_conditions.h): the
// agent trains only while they hold. They are read before a task starts
// and every check_interval while it trains. A task that arrives while they
// fail is held back: the agent polls again every check_interval (at least
// twice per heartbeat interval), each poll saying why it holds back
// (PollRequest.paused_reason), and starts once they hold again. When one
// fails in the middle of training, the trainer stops at the next batch
// and the agent keeps the partial state in memory, keyed by round, model
// version and plan seed; while the poll keeps handing out the same task
// (the round is open and the agent still in it) it resumes from that state
// once the conditions return, so the update it finally submits, under one
// upload id, is the one an uninterrupted training gives and is counted
// once. A poll with anything else means the round closed: the partial
// state is discarded. When too little time is left before the round's
// deadline to finish (estimated from the progress so far, or the last
// training's time), the agent gives the round up: ReportFailure with the
// failed condition. A task whose memory estimate exceeds the budget is
// given up the same way (FAILURE_REASON_MEMORY).
//
// Model signing (AgentOptions::model_verifier, docs/model-signing.md):
// with pinned keys, the agent checks the signature of every global model
// it is told about (task, evaluation, newest version) against the
// announced version, the session's model spec and SHA-256 before it
// fetches, trains, evaluates or caches it; the bytes are then held to that
// SHA-256 (FetchModel, ModelCache). A model that fails is refused with a
// log line naming its version and why: a train task is given up
// (ReportFailure, FAILURE_REASON_MODEL_SIGNATURE) and the agent pauses
// for max_backoff before it polls again, an evaluation is skipped, the
// newest version not fetched. The signature is cached with the model
// for offline prediction.
//
// Errors are handled by what the call's status code says
// (coordinator_client.h): UNAVAILABLE-like errors back off exponentially
// with jitter and retry (giving up after give_up_after without contact:
// each call may wait only what is left of it to reach the coordinator,
// CoordinatorClient::SetConnectBudget, and the last retry comes when it is
// over); each failure's reason is logged (the first, a new reason, else
// one line every 30 s);
// a lost session joins again; a refused update (ABORTED, INVALID_ARGUMENT,
// NOT_FOUND) is dropped and the loop carries on. Time and randomness are
// injected: the Clock, the Sleeper and AgentOptions::seed.
//
// Session state machine (AgentState), legal transitions:
//   kNotJoined -> kJoined     Join succeeded
//   kJoined    -> kNotJoined  the session was lost (join again)
//   kJoined    -> kDone       finished, stopped or failed (after Leave)
//   kNotJoined -> kDone       stopped, gave up or Join refused
//
// Thread-safety: Run() is called once, from one thread; Stop() may be called
// from any thread. stats() only from Run()'s thread or after it returned.
#ifndef FEDGE_EDGE_AGENT_AGENT_H_
#define FEDGE_EDGE_AGENT_AGENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/fl_config.h"
#include "common/local_trainer.h"
#include "common/model_signature.h"
#include "common/random.h"
#include "common/scaffold.h"
#include "common/secagg/client.h"
#include "edge_agent/agent_metrics.h"
#include "edge_agent/backoff.h"
#include "edge_agent/coordinator_client.h"
#include "edge_agent/device_conditions.h"
#include "edge_agent/heartbeat.h"
#include "edge_agent/join_credentials.h"
#include "edge_agent/model_cache.h"
#include "edge_agent/sleeper.h"
#include "fedge/v1/federation.pb.h"

namespace fedge {

struct AgentOptions {
  // Self-chosen id sent with Join (required; the coordinator may assign
  // another, e.g. from the client certificate).
  std::string agent_id;
  // Software version reported at Join.
  std::string agent_version = "fedge-agent";
  // Local training examples reported at Join.
  int64_t num_examples = 0;
  // Zoo architectures this agent can train.
  std::vector<std::string> architectures;
  // Declared at Join for strategies that plan by device: its class and the
  // examples per second it trains (0 = unknown).
  std::string device_class;
  double examples_per_second = 0;
  // Backoff after a failed call: the bound starts at initial_backoff and
  // doubles up to max_backoff; each delay is drawn uniformly from
  // [bound / 2, bound]. A successful call resets the bound.
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(5);
  // Run() returns UNAVAILABLE once the coordinator has been unreachable
  // this long (zero = never give up).
  absl::Duration give_up_after = absl::ZeroDuration();
  // Device profile: training takes compute_slowdown (>= 1) times longer
  // (the difference is slept); a task is skipped silently with probability
  // dropout_probability (in [0, 1]).
  double compute_slowdown = 1.0;
  double dropout_probability = 0.0;
  // Leave and return when the coordinator says the federation finished
  // (otherwise keep polling, e.g. to follow the final model).
  bool exit_when_finished = true;
  // Fetch each newer global model the coordinator announces, so that
  // offline prediction uses the newest one.
  bool keep_latest_model = true;
  // A model the agent trained or evaluated is written to its cache at
  // most this often (flash wear, energy), after a task or at an idle poll
  // (it is held in memory meanwhile, never downloaded again); models it
  // fetches while idle (keep_latest_model), those of interrupted training
  // and the one held when Run() returns are always written. Zero: after
  // every task.
  absl::Duration model_cache_interval = absl::Seconds(60);
  // Send heartbeats from a thread of its own while busy (fetching,
  // training, uploading), every JoinResponse.heartbeat_interval_ms, so a
  // slow device is not dropped for not polling.
  bool heartbeat_while_busy = true;
  // Seed of backoff jitter, dropout and upload ids.
  uint64_t seed = 1;
  // The join token / agent key Join presents (coordinators with
  // require_join_token); the agent key a Join returns is kept.
  JoinCredentials join_credentials;
  // Device conditions to train under (see the header comment); the
  // default requires none. `device` supplies the readings when the policy
  // needs_readings() (required then; not owned, must outlive the agent);
  // the time window is in `time_zone`, on the clock's WallNow().
  EligibilityPolicy eligibility;
  DeviceConditions* device = nullptr;
  absl::TimeZone time_zone = absl::LocalTimeZone();
  // LibTorch threads a training keeps busy: its share of the load average.
  int training_threads = 1;
  // Memory budget for a task, in bytes (0 = none): a task whose estimate,
  // TrainTask.model_size_bytes x memory_model_factor + local_data_bytes,
  // exceeds it is given up with FAILURE_REASON_MEMORY.
  int64_t memory_budget_bytes = 0;
  double memory_model_factor = 6;
  int64_t local_data_bytes = 0;
  // Prometheus metrics to keep (agent_metrics.h); null: none. Not owned,
  // must outlive the agent.
  AgentMetrics* metrics = nullptr;
  // The coordinator's pinned model-signing keys (see the header comment);
  // null: models are not verified. Not owned, must outlive the agent.
  const ModelVerifier* model_verifier = nullptr;
};

// Builds the trainer for the session: the model the coordinator names and
// the local data (the whole set, the configured partition, or the partition
// handed out in simulation mode). Its errors end Run().
using TrainerFactory =
    std::function<absl::StatusOr<std::unique_ptr<LocalTrainer>>(
        const v1::JoinResponse&)>;

// Counters of one Run().
struct AgentStats {
  int64_t joins = 0;                  // Successful Joins.
  int64_t rounds_trained = 0;         // Local trainings completed.
  int64_t updates_submitted = 0;      // Updates acknowledged (once each).
  int64_t updates_dropped = 0;        // Trained but not acknowledged.
  int64_t rounds_skipped = 0;         // Skipped by dropout_probability.
  int64_t models_fetched = 0;         // Successful FetchModel calls.
  int64_t call_failures = 0;          // Calls that failed and were retried.
  int64_t trainings_interrupted = 0;  // Stopped by a failed condition.
  int64_t trainings_resumed = 0;      // Continued from a kept state.
  int64_t partials_discarded = 0;     // Kept states whose round closed.
  int64_t rounds_held_back = 0;  // Rounds whose task waited for conditions.
  int64_t rounds_given_up = 0;   // Rounds given up (ReportFailure).
  int64_t models_refused = 0;    // Signature checks failed.
};

enum class AgentState { kNotJoined, kJoined, kDone };

class Agent {
 public:
  // `client`, `cache` and `clock` must outlive the agent.
  // INVALID_ARGUMENT for a missing collaborator or bad options (empty
  // agent_id, non-positive backoff, max_backoff < initial_backoff, negative
  // give_up_after, compute_slowdown < 1, dropout outside [0, 1], a policy
  // that needs readings without a device, a non-positive check_interval,
  // a negative memory budget or a memory_model_factor < 1).
  static absl::StatusOr<std::unique_ptr<Agent>> Create(
      AgentOptions options, CoordinatorClient* client,
      TrainerFactory trainer_factory, ModelCache* cache, const Clock* clock,
      Sleeper sleep);

  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Runs the loop until the federation finishes (with exit_when_finished)
  // or Stop() is called, leaving the federation first; then returns OK.
  // UNAVAILABLE after give_up_after without reaching the coordinator;
  // Join's PERMISSION_DENIED / INVALID_ARGUMENT / UNAUTHENTICATED (refused);
  // the trainer factory's errors (e.g. local data that does not fit the
  // model).
  absl::Status Run();

  // Asks Run() to leave and return after the current step (a training in
  // progress stops at its next batch). Thread-safe.
  void Stop() { stop_requested_.store(true); }

  const AgentStats& stats() const { return stats_; }
  AgentState state() const { return state_; }

 private:
  Agent(AgentOptions options, CoordinatorClient* client,
        TrainerFactory trainer_factory, ModelCache* cache, const Clock* clock,
        Sleeper sleep);

  // Performs a transition listed above; an illegal one is a bug (crash).
  void TransitionTo(AgentState next);
  // Runs `update` on the metrics, when the agent keeps them.
  template <typename F>
  void Observe(F update) {
    if (options_.metrics != nullptr) update(*options_.metrics);
  }

  // Loop steps. A non-OK status ends Run() with it.
  absl::Status TryJoin();
  absl::Status StartSession(v1::JoinResponse response);
  absl::Status PollAndAct();
  absl::Status OnFinished();
  void LeaveSession();

  // Train tasks.
  absl::Status HandleTask(const v1::TrainTask& task);
  // A heartbeat thread for the busy step ahead (null when disabled).
  // The deadline of a task the coordinator gave `remaining_ms` (0: none).
  absl::Time DeadlineIn(int64_t remaining_ms) const;
  std::unique_ptr<HeartbeatThread> StartHeartbeat();
  // Federated evaluation: the model on the local held-out data.
  absl::Status HandleEvaluation(const v1::EvaluateTask& task);
  absl::Status SubmitEvaluation(const v1::EvaluateTask& task,
                                const EvalMetrics& metrics);
  // SCAFFOLD: the agent's control variate from its state directory (zeros
  // the first time, or when it belongs to another model).
  absl::StatusOr<ScaffoldClient> LoadScaffold(const ModelSchema& model);
  // Whether the simulated device skips `round` (dropout_probability).
  bool DropsOut(int64_t round);
  // A global model as the coordinator announces it: version, SHA-256 and
  // size of its download encoding ("" or "fp32", "fp16").
  struct ModelRef {
    int64_t version = -1;
    std::string sha256_hex;
    std::string encoding;
    ModelSignature signature;
  };
  // OK when no key is pinned or `ref`'s signature verifies; otherwise
  // counts and logs the refusal (naming `what`) and returns why.
  absl::Status CheckSignature(const ModelRef& ref, absl::string_view what);
  // Whether the held model is the one `ref` names (version and SHA-256).
  bool Holds(const ModelRef& ref) const;
  // The model `ref` names, held from then on: the held one, else read from
  // the cache, else fetched (not written to the cache: CacheHeldModel*).
  // The pointer is valid until the next call. FetchModel's errors.
  absl::StatusOr<const ModelState*> GlobalModel(const ModelRef& ref);
  // Writes the held model to the cache unless it is there, as it was
  // downloaded (its verified hash is not computed again).
  void CacheHeldModel();
  // CacheHeldModel when model_cache_interval has passed since the last
  // write.
  void CacheHeldModelIfDue();
  // CacheHeldModel when the held version is newer than every cached one.
  void CacheHeldModelIfNewest();
  absl::StatusOr<TrainOutput> Train(const v1::TrainTask& task,
                                    const ModelState& global);
  // SCAFFOLD's local training: with the control variates' correction.
  absl::StatusOr<TrainOutput> TrainScaffold(const ModelState& global,
                                            TrainPlan plan);
  absl::Status Submit(const v1::TrainTask& task, const TrainOutput& output);

  // Secure aggregation (agent_secagg.cc; docs/secure-aggregation.md): this
  // agent's part of a round's session.
  struct SecureRound {
    SecAggAssignment assignment;
    std::unique_ptr<secagg::SecAggClient> client;
    std::string shares;  // Stage 1's answer: the shares addressed to it.
  };
  // Stages 0 and 1: keys advertised, shares exchanged. ABORTED when the
  // session went on without this agent or is over.
  absl::StatusOr<SecureRound> JoinSecureRound(const v1::TrainTask& task);
  // One stage message and the coordinator's answer: asks again while it is
  // pending, retries (with the same message) while the coordinator is
  // unreachable, until `until` (DEADLINE_EXCEEDED) or Stop() (CANCELLED).
  absl::StatusOr<std::string> SecAggExchange(int64_t round,
                                             v1::SecAggStage stage,
                                             const std::string& message,
                                             absl::Time until);
  // Stages 2 and 3: the limits, then the masked update uploaded, then the
  // answer to the unmasking request. `output`'s delta is scaled in place.
  absl::Status SubmitSecure(const v1::TrainTask& task, TrainOutput& output,
                            SecureRound& secure);
  v1::UpdateMetadata MakeMetadata(const v1::TrainTask& task,
                                  const TrainMetrics& metrics);
  // Uploads an update with `send` until the coordinator accepts it, backing
  // off while it is unreachable. Accepted: counted (`bytes` sent) and the
  // response returned. Dropped on a lost session (which is then left), a
  // refusal, Stop() or the task's deadline: logged as `dropped` followed by
  // the reason, and nullopt returned. An error only when backing off fails.
  absl::StatusOr<std::optional<v1::SubmitUpdateResponse>> UploadUpdate(
      const std::function<absl::StatusOr<v1::SubmitUpdateResponse>()>& send,
      int64_t bytes, absl::string_view dropped);
  void DropUpdate(const std::string& message);
  void RefreshLatestModel(const v1::PollResponse& poll);

  // Device conditions. The verdict, read again once check_interval passed
  // since the last reading; `training` says whether the agent trained
  // since then (its share of the load average).
  const Eligibility& CheckConditions(bool training);
  // The trainer's stop hook: Stop() or a failed condition.
  bool ShouldStop();
  // Waits for the conditions (the next poll hands the task out again) or
  // gives the round up when too little time is left.
  absl::Status HoldBack(const v1::TrainTask& task, const Eligibility& e);
  // Keeps an interrupted training's state to resume.
  absl::Status OnInterrupted(const v1::TrainTask& task, TrainOutput output);
  // Drops the kept state unless `task` continues it.
  void DiscardPausedUnless(const v1::TrainTask* task);
  // How long the rest of `task`'s training should take (0 if unknown).
  absl::Duration EstimatedTrainingTime(const v1::TrainTask& task) const;
  // RESOURCE_EXHAUSTED (with the estimate) when `task` exceeds the budget.
  absl::Status CheckMemory(const v1::TrainTask& task) const;
  // Gives the round up: ReportFailure (best effort: the round's deadline
  // settles it when the call fails).
  absl::Status GiveUp(const v1::TrainTask& task, v1::FailureReason reason,
                      const std::string& detail);

  // Error handling.
  absl::Status HandleCallError(absl::string_view what,
                               const absl::Status& error);
  absl::Status BackOff(absl::string_view what, const absl::Status& error);
  // A call succeeded: records the contact, resets the backoff and the
  // client's connect budget.
  void OnContact();
  // What is left of give_up_after since the last contact (InfiniteDuration
  // when the agent never gives up).
  absl::Duration GiveUpLeft() const;
  // Logs a failed call that will be retried after `delay`: the first of a
  // streak, one whose reason differs from the last logged, else one every
  // kFailureLogInterval (counting those not logged).
  void LogFailure(absl::string_view what, const absl::Status& error,
                  absl::Duration delay);
  std::string NewUploadId();

  AgentOptions options_;
  CoordinatorClient* client_;
  TrainerFactory trainer_factory_;
  ModelCache* cache_;
  const Clock* clock_;
  Sleeper sleep_;
  DeterministicRng rng_;
  std::atomic<bool> stop_requested_{false};

  AgentState state_ = AgentState::kNotJoined;
  v1::JoinResponse session_;
  std::unique_ptr<LocalTrainer> trainer_;
  // Rounds of this session already trained, skipped or dropped, and
  // evaluated.
  absl::flat_hash_set<int64_t> handled_rounds_;
  absl::flat_hash_set<int64_t> evaluated_rounds_;
  // Round whose dropout was decided, and the decision.
  int64_t dropout_rolled_round_ = -1;
  bool skip_round_ = false;
  double fetch_seconds_ = 0;  // Of the current task's model (for logs).
  // When the current task's round closes (on clock_).
  absl::Time task_deadline_ = absl::InfiniteFuture();
  // Newest model version whose best-effort fetch failed for good.
  int64_t refresh_failed_version_ = -1;
  absl::Time last_cached_ = absl::InfinitePast();  // Last CacheHeldModel.
  // The last global model the agent used (see the header comment), and
  // whether the cache has it.
  struct HeldModel {
    ModelRef ref;
    ModelState model;
    bool cached = false;
  };
  std::optional<HeldModel> held_;
  bool finished_logged_ = false;

  // An interrupted training kept to resume, and what it trains.
  struct PausedTraining {
    int64_t round = 0;
    int64_t model_version = 0;
    uint64_t seed = 0;
    TrainContinuation continuation;
  };
  std::optional<PausedTraining> paused_;
  // The last verdict on the device conditions and when it was read.
  Eligibility eligibility_;
  absl::Time conditions_read_ = absl::InfinitePast();
  OwnLoadAverage own_load_;
  // Rounds whose holding back was counted.
  int64_t held_back_round_ = -1;
  // While a round is held back: when its conditions were last checked, and
  // the longest time between two checks (the pause plus a poll).
  absl::Time last_hold_check_ = absl::InfinitePast();
  absl::Duration hold_check_gap_ = absl::ZeroDuration();
  // Training time of the last completed training (0 = none yet).
  absl::Duration last_training_time_ = absl::ZeroDuration();

  Backoff backoff_;
  absl::Time last_contact_;
  // LogFailure's last line ("" after a contact), when, and the failures
  // like it since.
  static constexpr absl::Duration kFailureLogInterval = absl::Seconds(30);
  std::string logged_failure_;
  absl::Time failure_logged_at_;
  int64_t failures_not_logged_ = 0;
  AgentStats stats_;
};

// "NOT_JOINED", "JOINED", "DONE".
const char* AgentStateName(AgentState state);

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_AGENT_H_
