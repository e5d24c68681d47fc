// Coordinator: all state and logic of fedge-coordinator, with no gRPC and no
// LibTorch (TF Serving's ServerCore pattern). The gRPC service adapters
// convert requests, call these methods and convert statuses back; the
// in-process tests call them directly.
//
// It owns the RoundEngine (roster, round lifecycle), the strategy
// (common/strategy.h: selection, plans, aggregation, its checkpointed
// state), the round accumulator and round close it shares with fedge-sim
// (server/round_accumulator.h), the published global model, the upload
// slots that bound how many updates are decoded at once, the checkpoint
// store and the history. Evaluation goes through the LocalTrainer
// interface.
//
// Modes (strategy.mode): "sync" runs rounds (RoundEngine); "fedbuff" runs
// asynchronous buffered aggregation (server/fedbuff_tasks.h): free agents
// get tasks on the newest version up to the concurrency, stale-weighted
// updates are folded as they arrive, and every fedbuff_buffer_size of them
// close a round, which is a new model version. What differs between the
// modes is in coordinator_tasks.cc; the round close, checkpoints, history
// and evaluation are shared. In fedbuff mode a shutdown or restart drops
// the partial buffer and the tasks in flight (their uploads are refused
// with ABORTED; the agents get new tasks).
//
// Threading: every public method is thread-safe. Poll() may park its
// callback; Tick() (called by one driver thread every few milliseconds)
// finishes rounds, publishes models and answers parked polls.
//
// Durability: a new global model is announced (published to polls, tasks
// and the operator) only once the checkpoint that holds it is on disk, so a
// version agents have seen is never lost and versions never go backward
// across restarts. The checkpoint is written, the model evaluated and the
// history line appended in the background; the next round starts as soon
// as the checkpoint is durable, while the evaluation still runs.
//
// Edge mode (config.upstream set, docs/hierarchy.md): the coordinator is
// the downstream federation of an edge aggregator (EdgeDownstream, driven
// by server/edge_aggregator.h from another thread). It starts a round only
// when RunRound() asks for one, from the upstream's model (published under
// the upstream's version) and plan, and a closed round's aggregate goes to
// RunRound() instead of becoming a new version here: the next model comes
// with the next upstream task. The rest (roster, uploads, checkpoints,
// history) is as in sync mode (coordinator_edge.cc).
//
// Shutdown: BeginShutdown() answers every parked call, refuses new work and
// closes the round in progress (completed with what arrived when it has a
// quorum, else abandoned); Flush() then waits for its checkpoint and
// history line. Nothing is left that could keep the gRPC server's
// Shutdown() waiting.
#ifndef FEDGE_SERVER_COORDINATOR_H_
#define FEDGE_SERVER_COORDINATOR_H_

#include <atomic>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/checksum.h"
#include "common/clock.h"
#include "common/history.h"
#include "common/local_trainer.h"
#include "common/metrics.h"
#include "common/model_codec.h"
#include "common/model_signature.h"
#include "common/strategy.h"
#include "common/update_codec.h"
#include "fedge/v1/config.pb.h"
#include "fedge/v1/federation.pb.h"
#include "server/audit_log.h"
#include "server/checkpoint_store.h"
#include "server/coordinator_metrics.h"
#include "server/credential_store.h"
#include "server/edge_downstream.h"
#include "server/fedbuff_tasks.h"
#include "server/round_accumulator.h"
#include "server/round_engine.h"
#include "server/secagg_round.h"
#include "server/status_snapshot.h"
#include "server/upload_guard.h"

namespace fedge {

// One immutable global model version, shared by every stream that sends it.
struct PublishedModel {
  int64_t version = 0;
  ModelState model;
  // What agents download when it differs from `model`: the model followed
  // by the strategy's broadcast tensors (SCAFFOLD's control variate).
  std::optional<ModelState> with_extras;
  // What agents download in a lossy encoding (strategy.download_encoding
  // fp16), when not raw; `encoding` names it ("fp32" when raw).
  std::optional<EncodedModel> wire;
  std::string encoding = "fp32";
  // SHA-256 and size of the encoding of what agents download.
  std::string sha256_hex;
  int64_t size_bytes = 0;
  // SHA-256 of `model`'s canonical encoding (what checkpoints record; the
  // download's when that is `model` raw: hashed once).
  Sha256Digest model_sha256{};
  // The coordinator's signature of (version, spec, sha256_hex); empty when
  // config.model_signing_key_path is not set.
  ModelSignature signature;

  const ModelState& download() const {
    return with_extras.has_value() ? *with_extras : model;
  }
};

struct CoordinatorOptions {
  v1::CoordinatorConfig config;   // Validated by the caller.
  v1::ModelSpecProto model_spec;  // What agents build.
  // Architecture "torchscript": the archive agents fetch (model_spec names
  // its SHA-256 and size).
  std::string archive_path;
  ModelState initial_model;  // Used when no checkpoint exists.
  // Central evaluation of each new model (may be null: no evaluation).
  std::unique_ptr<LocalTrainer> evaluator;
  Clock* clock = nullptr;  // Required; must outlive the coordinator.
};

class Coordinator;

// An update being received: created by BeginUpload from its metadata, fed
// with its bytes, finished by FinishUpload. Holds one upload slot (and one
// model-sized decode buffer) until destroyed.
class Upload {
 public:
  ~Upload();
  Upload(const Upload&) = delete;
  Upload& operator=(const Upload&) = delete;
  const v1::UpdateMetadata& metadata() const { return metadata_; }
  const std::string& agent_id() const { return agent_id_; }
  int64_t bytes_received() const { return received_; }

 private:
  friend class Coordinator;
  Upload(Coordinator* owner, v1::UpdateMetadata metadata, std::string agent_id,
         ModelSchema schema, DecodeLimits limits);
  Coordinator* owner_;
  v1::UpdateMetadata metadata_;
  std::string agent_id_;
  ModelDecoder decoder_;
  // A masked input (secure aggregation: metadata.masked) is kept as bytes.
  std::string masked_;
  UploadCheck check_;
  int64_t received_ = 0;
  uint64_t stream_id_ = 0;  // Its UploadStream's (0: none).
};

class Coordinator : public EdgeDownstream {
 public:
  // Builds the coordinator, resuming from the newest checkpoint in
  // config.state_dir that verifies (corrupt ones are logged and skipped).
  // INVALID_ARGUMENT for bad options; UNAVAILABLE when the state directory
  // or history cannot be written.
  static absl::StatusOr<std::unique_ptr<Coordinator>> Create(
      CoordinatorOptions options);
  ~Coordinator();

  // Registers an agent. `peer_identity` (from a verified client
  // certificate) overrides request.agent_id when set. INVALID_ARGUMENT for
  // an empty id. `source` (the caller's address without its port, "" =
  // unknown) is rate-limited (join_rate_per_source: RESOURCE_EXHAUSTED).
  // Without mutual TLS and with require_join_token the request needs a
  // join token or the agent key (docs/security.md): UNAUTHENTICATED /
  // PERMISSION_DENIED otherwise. RESOURCE_EXHAUSTED for a new id beyond
  // max_agents. Every join and refusal goes to the audit log.
  absl::StatusOr<v1::JoinResponse> Join(const v1::JoinRequest& request,
                                        const std::string& peer_identity,
                                        const std::string& source = "");

  // Under mutual TLS a session belongs to its certificate: PERMISSION_DENIED
  // (logged and audited) when `session_token` is a session of another agent
  // than `peer_identity`. OK without mutual TLS, and for unknown sessions
  // (the call itself answers UNAUTHENTICATED).
  absl::Status CheckCaller(const std::string& session_token,
                           const std::string& peer_identity,
                           absl::string_view call);

  // Join tokens (operators; docs/security.md). RevokeJoinToken also
  // revokes the enrollments made with it and ends those agents' sessions.
  absl::StatusOr<v1::CreateJoinTokenResponse> CreateJoinToken(
      const v1::CreateJoinTokenRequest& request, const std::string& who);
  v1::ListJoinTokensResponse ListJoinTokens() const;
  absl::StatusOr<std::string> RevokeJoinToken(const std::string& token_id,
                                              const std::string& who);

  // Appends an event to the audit log (<state_dir>/audit.log).
  void AuditEvent(
      absl::string_view event,
      std::vector<std::pair<absl::string_view, std::string>> fields);

  // Heartbeat and task hand-out. Calls `done` exactly once: at once when
  // there is a task, the federation finished, or the session is unknown
  // (UNAUTHENTICATED); otherwise when a task appears or poll_wait_ms pass
  // (with a "wait"). `done` may run on the Tick() thread.
  using PollCallback =
      std::function<void(absl::StatusOr<v1::PollResponse> response)>;
  void Poll(const v1::PollRequest& request, PollCallback done);

  // The model version `request.version` names (-1: newest) for streaming.
  // UNAUTHENTICATED for an unknown session; NOT_FOUND when that version is
  // no longer (or not yet) published.
  absl::StatusOr<std::shared_ptr<const PublishedModel>> GetModel(
      const v1::FetchModelRequest& request);

  // The TorchScript archive to stream, for FetchArchive: its path and
  // size. UNAUTHENTICATED for an unknown session; NOT_FOUND when the
  // federation trains no archive or another one than `sha256`;
  // INVALID_ARGUMENT for an offset outside it.
  absl::StatusOr<std::pair<std::string, int64_t>> GetArchive(
      const v1::FetchArchiveRequest& request);

  // Starts receiving an update. Checks session, round, base version, size
  // and upload id before any byte is read: UNAUTHENTICATED (session),
  // ABORTED (round closed or stale base version), ALREADY_EXISTS (a retry of
  // an accepted upload: answer "duplicate" without reading it),
  // FAILED_PRECONDITION (not selected), INVALID_ARGUMENT (bad sizes or
  // examples). Calls `done` exactly once: at once on error or when an
  // upload slot is free, else later, from the thread that frees a slot (the
  // caller must not read the update's bytes before).
  using UploadCallback =
      std::function<void(absl::StatusOr<std::unique_ptr<Upload>> upload)>;
  // The transport's stream of an upload, for the upload limits
  // (server/upload_guard.h): a unique non-zero id, and `cancel`, which ends
  // the stream with its status and frees its slot at once (called from the
  // Tick thread after upload_idle_timeout_ms without a chunk, or when the
  // round closes). With a stream, BeginUpload also refuses an agent's
  // upload beyond max_uploads_per_agent (RESOURCE_EXHAUSTED), and the
  // transport must call EndUploadStream(id) when the stream is over.
  struct UploadStream {
    uint64_t id = 0;  // 0: no stream (in-process callers; no limits).
    std::function<bool(absl::Status status)> cancel;  // As UploadGuard's.
  };
  void BeginUpload(const v1::UpdateMetadata& metadata, UploadCallback done,
                   UploadStream stream);
  void BeginUpload(const v1::UpdateMetadata& metadata, UploadCallback done);
  // The upload stream `id` ended: it no longer counts for its agent, and
  // waits for a slot no more.
  void EndUploadStream(uint64_t id);
  // Watches a new upload stream before its metadata: it is ended (its
  // `cancel`) when no metadata comes within upload_idle_timeout_ms.
  void WatchUploadStream(uint64_t id,
                         std::function<bool(absl::Status status)> cancel);
  // Feeds bytes; INVALID_ARGUMENT / RESOURCE_EXHAUSTED as soon as they are
  // malformed (wrong schema, too long).
  absl::Status FeedUpload(Upload& upload, absl::string_view bytes);
  // Verifies size and SHA-256, validates values and folds the update into
  // the round's sum exactly once. INVALID_ARGUMENT (nothing changed) for a
  // bad update; ABORTED when the round closed meanwhile.
  absl::StatusOr<v1::SubmitUpdateResponse> FinishUpload(
      std::unique_ptr<Upload> upload);

  // Secure aggregation (strategy.secure_aggregation, docs/
  // secure-aggregation.md; coordinator_secagg.cc): one stage message of
  // the round's session (SecAggStepRequest), answered with the agent's
  // next message once the stage closed, or `pending` after poll_wait_ms.
  // Calls `done` exactly once (maybe on the Tick thread). UNAUTHENTICATED
  // for an unknown session; ABORTED when the round or its session is over
  // or the agent is no longer part of it; INVALID_ARGUMENT /
  // FAILED_PRECONDITION for a message the session refuses.
  using SecAggCallback =
      std::function<void(absl::StatusOr<v1::SecAggStepResponse> response)>;
  void SecAggStep(const v1::SecAggStepRequest& request, SecAggCallback done);

  // Removes the agent (its round counts it as failed). UNAUTHENTICATED for
  // an unknown session.
  absl::Status Leave(const v1::LeaveRequest& request);

  // A sign of life of a busy agent. UNAUTHENTICATED for an unknown session
  // or an agent dropped meanwhile (join again).
  absl::Status Heartbeat(const v1::HeartbeatRequest& request);

  // The result of an evaluate task (federated evaluation). UNAUTHENTICATED
  // for an unknown session; ABORTED when that evaluation is over (or the
  // agent was not asked, or already answered); INVALID_ARGUMENT for
  // metrics out of range (examples not in [1, 2^31], a non-finite loss, an
  // accuracy outside [0, 1]).
  absl::Status SubmitEvaluation(const v1::SubmitEvaluationRequest& request);

  // A selected agent gives its round up (device conditions, memory): it
  // counts as failed in the round at once; the reason is logged, counted
  // (fedge_agent_failures_total{reason}) and shown in ListAgents while the
  // round is in progress. OK, also when repeated (counted once);
  // UNAUTHENTICATED for an unknown session or an agent dropped meanwhile;
  // INVALID_ARGUMENT for an unspecified reason; RoundEngine::ReportFailure's
  // ABORTED (not the round in progress) and FAILED_PRECONDITION (not
  // selected, or it already reported a result).
  absl::Status ReportFailure(const v1::ReportFailureRequest& request);

  // Drives time: liveness, deadlines, round completion (aggregate and
  // publish at once; evaluate, checkpoint and history in the background),
  // parked polls. Returns the first error of the round just closed or of
  // the previous round's persistence. Call from one thread only.
  absl::Status Tick();

  // Waits until the last finished round is evaluated, checkpointed and in
  // the history, and publishes its model; returns the first error doing so.
  absl::Status Flush();

  // Stops taking work (see the header comment). Call from the Tick thread;
  // Tick() must not be called afterwards, Flush() should.
  void BeginShutdown();

  // Operator views.
  v1::GetStatusResponse GetStatus() const;
  v1::ListAgentsResponse ListAgents() const;
  v1::ListRoundsResponse ListRounds() const;
  // The live status page's data (server/status_snapshot.h).
  FederationSnapshot Snapshot() const;
  // The Prometheus metrics (server/coordinator_metrics.h).
  MetricsRegistry& metrics_registry() { return registry_; }

  // Operator actions, each logged with `who` asked (an identity from a
  // credential). Pause: no new round starts (the current one finishes).
  // StopAfterRound: the federation ends when the round in progress closes.
  // SetRounds: FAILED_PRECONDITION below the completed rounds or once done.
  // EvictAgent: removes the agent (failed in its round) and refuses its
  // joins until AllowAgent; NOT_FOUND for an id never seen. Evictions and
  // the number of rounds survive a restart (checkpoint).
  absl::Status Pause(const std::string& who);
  absl::Status Resume(const std::string& who);
  absl::Status StopAfterRound(const std::string& who);
  absl::Status SetRounds(int rounds, const std::string& who);
  absl::Status EvictAgent(const std::string& agent_id, const std::string& who);
  absl::Status AllowAgent(const std::string& agent_id, const std::string& who);

  // Edge mode (EdgeDownstream; FAILED_PRECONDITION outside edge mode).
  // RunRound may be called from any thread but the Tick thread; the round
  // starts on a Tick once min_available_agents agents are live and the
  // previous round is durable. A request made while another waits to start
  // replaces it (that one returns ABORTED).
  absl::StatusOr<EdgeRoundResult> RunRound(EdgeRoundRequest request) override;
  void Finish(ModelState final_model, int64_t version) override;

  // True once every round completed.
  bool done() const;
  // True when every agent still in the roster has been told the federation
  // finished twice: its second poll shows it is done with the first answer
  // (an agent fetches the final model, then leaves, which takes it out of
  // the roster). The server may then close its port.
  bool AllAgentsToldFinished() const;
  // True when no finished round waits to be taken by Tick(), to be unmasked
  // (secure aggregation) or to have its model published, and no federated
  // evaluation runs (Tick thread). done() turns true as the last round
  // closes, which may happen on an upload's thread between two Ticks: only
  // done() && Settled() means the last model is the published one.
  bool Settled() const;
  // The newest published model.
  std::shared_ptr<const PublishedModel> latest_model() const;
  // What agents build (JoinResponse.model): the spec of every model
  // version. Immutable.
  const v1::ModelSpecProto& model_spec() const { return spec_; }
  // Bytes counted for history (model bytes streamed to agents).
  void AddBytesSent(int64_t n) {
    bytes_sent_ += n;
    metrics_.bytes_sent.IncrementBy(n);
  }

 private:
  struct Session {
    std::string agent_id;
    int32_t partition_index = -1;
    absl::Time expires = absl::InfiniteFuture();  // session_lifetime_ms.
  };
  struct ParkedPoll {
    std::string agent_id;
    int64_t cached_version;
    absl::Time deadline;
    PollCallback done;
  };
  Coordinator(CoordinatorOptions& options, std::unique_ptr<RoundEngine> engine,
              std::unique_ptr<Strategy> strategy,
              std::unique_ptr<CheckpointStore> checkpoints,
              std::unique_ptr<HistoryWriter> history);
  // A closed round whose model waits for its checkpoint to be durable.
  struct PendingRound {
    std::shared_ptr<const PublishedModel> model;
    bool new_version = false;  // A completed round's new model.
    bool last = false;         // The federation is done after it.
    // Federated evaluation of the new model, to start once it is
    // published (null when off); the history line waits for its result.
    std::shared_ptr<std::promise<std::optional<EvalMetrics>>> fed_eval;
  };
  // --- What differs between the modes (coordinator_tasks.cc). ---
  // The agent's training task, if it has (or now gets) one.
  std::optional<v1::TrainTask> TrainTaskFor(const std::string& agent_id);
  // The task checks of an upload before its bytes are read (the round
  // engine's CheckResult, or FedBuffTasks::Check).
  absl::Status CheckTaskResult(const v1::UpdateMetadata& m,
                               const std::string& agent_id);
  // Records the result exactly once (under accumulate_mu_); in fedbuff
  // mode it weights `result` by its staleness, or refuses it (UNAVAILABLE,
  // not recorded) while a full buffer waits to close.
  absl::Status AcceptTaskResult(const v1::UpdateMetadata& m,
                                const std::string& agent_id, FitResult& result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(accumulate_mu_);
  // The agent gives its task up (ReportFailure).
  absl::Status FailTask(const std::string& agent_id, int64_t round);
  // Tick's part: liveness and deadlines, then closes rounds (sync: those
  // the engine finished, then starts the next; fedbuff: the full buffer).
  absl::Status AdvanceTasks();
  // FedBuff: a task for a free agent while slots are free.
  std::optional<v1::TrainTask> FedBuffTaskFor(const std::string& agent_id);
  // FedBuff: closes the version when the buffer is full.
  absl::Status MaybeCloseVersion();
  // True while the federated evaluation of the last model runs (one past
  // its deadline is closed).
  bool EvaluationRunning();
  // Federated evaluation of one model version: who is asked, what came
  // back, until when; its result fulfils `done`.
  struct EvalRound {
    int64_t round = 0;
    std::shared_ptr<const PublishedModel> model;
    absl::Time deadline;
    absl::flat_hash_set<std::string> pending;
    std::vector<EvalMetrics> results;
    std::shared_ptr<std::promise<std::optional<EvalMetrics>>> done;
  };
  // Starts the evaluation of the published round (Tick thread).
  void StartEvaluation(const PendingRound& round);
  // Closes the evaluation in progress (all answered, deadline, shutdown).
  void CloseEvaluationLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- Edge mode (coordinator_edge.cc). ---
  struct EdgeRound {
    EdgeRoundRequest request;
    std::promise<absl::StatusOr<EdgeRoundResult>> done;
    int64_t engine_round = 0;  // Once started.
  };
  // Starts the requested round (MaybeStartRound's part in edge mode).
  absl::Status MaybeStartEdgeRound();
  // Tick's part: closes the running round at its close_by, fails a request
  // that could not start by then, and finishes after Finish().
  void AdvanceEdge();
  // A closed round's aggregate (minus `base`) to its RunRound.
  void DeliverEdgeRound(const RoundOutcome& outcome, const RoundClose& close,
                        const ModelState& base);
  // Fails the requested and the running round (shutdown).
  void FailEdgeRounds(const absl::Status& status);
  // Makes `model` the only published version (the upstream's).
  void ReplaceModel(ModelState model, int64_t version);

  absl::Status Restore(ModelState initial_model);
  // --- Differential privacy (coordinator_privacy.cc). ---
  // The privacy ledger from a checkpoint's extra state; FAILED_PRECONDITION
  // when the run is private but the checkpoint's rounds were not.
  absl::Status RestorePrivacy(const v1::CoordinatorCheckpointExtra& extra,
                              int completed_rounds);
  // True (and the federation ends, logged with the figures) when `round`
  // over `num_available` agents would exceed strategy.dp.max_epsilon.
  bool StopAtPrivacyBudget(int64_t round, size_t num_available);
  // The ledger's figures for the status views and /metrics (unset: the run
  // is not private).
  std::optional<PrivacyStatus> PrivacySnapshot() const;
  void UpdatePrivacyMetrics();
  // The model as agents get it: with the strategy's broadcast tensors, in
  // the download encoding, hashed and signed. NewPublished, then
  // FinishPublished with the model's digest.
  std::shared_ptr<PublishedModel> MakePublished(ModelState model,
                                                int64_t version) const;
  // The first part: version, model and extras, nothing hashed.
  std::shared_ptr<PublishedModel> NewPublished(ModelState model,
                                               int64_t version) const;
  // The rest, given ModelDigest(published.model): the download's encoding,
  // hash and size, and signature.
  void FinishPublished(PublishedModel& published,
                       const Sha256Digest& model_sha256) const;
  // Signs `published` (FinishPublished's last step) when a key is set.
  void SignPublished(PublishedModel& published) const;
  // Starts a round when the engine can: the strategy picks the agents and
  // their plans.
  absl::Status MaybeStartRound();
  void Publish(std::shared_ptr<const PublishedModel> model);
  absl::Status FinishRound(const RoundOutcome& outcome);
  // The common part of a round close: publish after the checkpoint,
  // evaluation, history (`current`: the model the round started from).
  absl::Status PersistRound(const RoundOutcome& outcome, RoundClose close,
                            std::shared_ptr<const PublishedModel> current,
                            absl::Duration aggregation_time);
  // Publishes the pending round's model once its checkpoint is durable;
  // returns the background work's error once it failed.
  absl::Status PollPersistence();
  // Between rounds, writes a checkpoint of the published model when an
  // operator changed what checkpoints hold (pause, total rounds, evictions)
  // since the last one; during a round its close's checkpoint takes it.
  absl::Status SaveOperatorChanges();
  // The background work of one round: checkpoint (then `durable_` is set),
  // evaluation, history line. With `unfinished`, `model` is a new version
  // from NewPublished: its digest is computed while the checkpoint is
  // written, then FinishPublished completes it, before `durable_`.
  absl::Status Persist(RoundRecord record, bool completed,
                       std::shared_ptr<PublishedModel> unfinished,
                       const PublishedModel& model, const Checkpoint& ckpt,
                       std::shared_future<std::optional<EvalMetrics>> fed_eval,
                       int64_t task_lease);
  // `task_lease`: the FedBuff task-number lease it records (0 in sync).
  Checkpoint CheckpointSnapshot(int64_t model_version,
                                int64_t* task_lease = nullptr) const;
  // Writes a checkpoint of a published model, then deletes the ones beyond
  // keep_checkpoints (Persist deletes them only after the announcement).
  absl::Status SaveCheckpoint(const Checkpoint& ckpt,
                              const PublishedModel& model);
  // Logs a checkpoint CheckpointStore::Save wrote, or returns its error.
  static absl::Status LogCheckpoint(absl::StatusOr<std::string> path,
                                    int64_t model_version);
  // Answer for a poll now, or nullopt when it should wait.
  std::optional<absl::StatusOr<v1::PollResponse>> TryAnswerPoll(
      const std::string& agent_id, int64_t cached_version);
  void AnswerParkedPolls(bool expire_all);
  absl::StatusOr<Session> FindSession(const std::string& token) const;
  // Lists a refusal on the status page and logs it; returns `status`.
  absl::Status ListRefusal(const std::string& agent_id, absl::string_view what,
                           absl::string_view reason, absl::Status status);
  // A refused update: counted in fedge_updates_total{result, reason},
  // audited, and listed (ListRefusal); returns `status`.
  absl::Status Refuse(const std::string& agent_id, absl::string_view result,
                      absl::string_view reason, absl::Status status);
  // Logs and counts an operator action.
  void Audit(absl::string_view action, const std::string& who,
             const std::string& detail);
  absl::Status CheckUploadMetadata(const v1::UpdateMetadata& m,
                                   const std::string& agent_id);
  // The examples `agent_id` declared at join (0: none, or unknown).
  int64_t DeclaredExamples(const std::string& agent_id) const;
  // The newest checkpoint that verifies and whose model is finite: when
  // the newest is not finite, older ones are read. What is passed over goes
  // to `skipped` ("<path>: <reason>"). As CheckpointStore::LoadNewest.
  absl::StatusOr<std::optional<Checkpoint>> LoadNewestFinite(
      std::vector<std::string>* skipped);
  // Why agents do not train (ListAgents' status_reason): the paused reason
  // of each poll, and their failure reports.
  void NotePausedReason(const std::string& agent_id, absl::string_view reason);
  // Records a failure report; false when this round's was already recorded.
  bool NoteFailure(const std::string& agent_id, int64_t round,
                   absl::string_view reason);
  std::string StatusReasonLocked(const std::string& agent_id,
                                 int64_t current_round) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Folds a decoded update (the delta, then the strategy's extras) into
  // the round, exactly once.
  absl::StatusOr<v1::SubmitUpdateResponse> Accumulate(const Upload& upload,
                                                      ModelState& update);
  v1::TrainTask MakeTask(int64_t round, const std::string& agent_id,
                         const PublishedModel& model,
                         absl::Time deadline) const;
  // A published version still served (the newest, and those FedBuff tasks
  // in flight train from); null when gone.
  std::shared_ptr<const PublishedModel> FindVersion(int64_t version) const;
  // The declared AgentInfo of each agent in the roster, sorted by id.
  std::vector<AgentInfo> AvailableAgentInfos() const;
  int32_t AssignPartition(const std::string& agent_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Opens the credential journal and the audit log (Create).
  absl::Status OpenAccess();
  // Join's checks before anything changes: rate, credentials, capacity.
  // Sets `how` to how the agent proved its id and `agent_key` when it was
  // enrolled now.
  absl::Status AdmitJoin(const v1::JoinRequest& request,
                         const std::string& agent_id, bool certified,
                         const std::string& source, std::string* how,
                         std::string* agent_key);
  bool TakeJoinRateToken(const std::string& source)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends `agent_id`'s session (revocation, eviction, leave).
  void EndSessionLocked(const std::string& agent_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops expired sessions, sessions of agents no longer in the roster,
  // what those agents declared, and idle join-rate buckets (Tick, every
  // few seconds).
  void PruneSessions();

  // state_dir/LOCK, held while this coordinator lives (declared first so
  // that it is released last): a second coordinator on the same state_dir
  // is refused instead of writing the same checkpoints and history.
  std::unique_ptr<FileLock> state_lock_;
  const v1::CoordinatorConfig config_;
  const v1::ModelSpecProto spec_;
  // Signs published models (config.model_signing_key_path); unset: none.
  std::optional<ModelSigner> signer_;
  const std::string archive_path_;
  Clock* const clock_;
  std::unique_ptr<LocalTrainer> evaluator_;
  ModelSchema schema_;
  // An update: the model's tensors, then the strategy's extras.
  ModelSchema update_schema_;
  int64_t update_size_ = 0;  // Encoded size of every update.
  // How agents download the model (strategy.download_encoding, validated).
  UpdateEncoding download_encoding_ = UpdateEncoding::kFp32;
  std::unique_ptr<RoundEngine> engine_;
  std::unique_ptr<Strategy> strategy_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  std::unique_ptr<HistoryWriter> history_;
  // FedBuff's tasks in flight; null in sync mode.
  const std::unique_ptr<FedBuffTasks> fedbuff_;
  const bool edge_mode_;  // config.upstream.address is set.

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Session> sessions_ ABSL_GUARDED_BY(mu_);
  // Each agent's one live session: a new Join revokes the previous token.
  absl::flat_hash_map<std::string, std::string> session_of_agent_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int32_t> partitions_ ABSL_GUARDED_BY(mu_);
  // What each agent declared at its last join.
  absl::flat_hash_map<std::string, AgentInfo> agents_ ABSL_GUARDED_BY(mu_);
  // The plans of the round in progress, by agent.
  absl::flat_hash_map<std::string, TrainPlan> plans_ ABSL_GUARDED_BY(mu_);
  int64_t num_available_ ABSL_GUARDED_BY(mu_) = 0;  // At the round's start.
  std::optional<EvalRound> eval_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const PublishedModel> latest_ ABSL_GUARDED_BY(mu_);
  // Published versions still served, by version (latest_ among them).
  std::map<int64_t, std::shared_ptr<const PublishedModel>> versions_
      ABSL_GUARDED_BY(mu_);
  std::deque<ParkedPoll> parked_ ABSL_GUARDED_BY(mu_);
  // Every round's record (those before a restart read back from
  // history.csv), and whether it made a new model.
  std::vector<std::pair<RoundRecord, bool>> records_ ABSL_GUARDED_BY(mu_);
  // The newest central test accuracy; unset until a model is evaluated.
  std::optional<double> last_accuracy_ ABSL_GUARDED_BY(mu_);
  // Recent refusals, newest last (for the status page).
  std::deque<RefusalStatus> refusals_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> evicted_ ABSL_GUARDED_BY(mu_);
  // How many polls of each agent were told the federation finished.
  absl::flat_hash_map<std::string, int> told_finished_ ABSL_GUARDED_BY(mu_);
  // Rounds whose aggregate included each agent's update.
  absl::flat_hash_map<std::string, int64_t> contributed_ ABSL_GUARDED_BY(mu_);
  // What agents said about not training: their polls' paused reason, and
  // the round they last gave up with why. Only agents that said something.
  struct StatusReason {
    std::string paused;
    int64_t failed_round = -1;
    std::string failure;
  };
  absl::flat_hash_map<std::string, StatusReason> status_reasons_
      ABSL_GUARDED_BY(mu_);
  // Join tokens and enrollments; the audit log; the joins' token buckets
  // per source address.
  std::unique_ptr<CredentialStore> credentials_;
  std::unique_ptr<AuditLog> audit_log_;
  struct RateBucket {
    double tokens = 0;
    absl::Time last;
  };
  absl::flat_hash_map<std::string, RateBucket> join_buckets_
      ABSL_GUARDED_BY(mu_);
  absl::Time last_prune_;  // Tick thread only.

  // --- Secure aggregation over the network (coordinator_secagg.cc). ---
  // The session of the round in progress (or whose inputs are being
  // unmasked), from the round's start until it is folded or abandoned.
  struct SecAggState {
    int64_t round = 0;
    std::shared_ptr<SecAggRound> session;  // Null when it could not start.
    // Why the session failed (the round is abandoned); OK while it runs.
    absl::Status failure;
    absl::Time stage_deadline;
    // The engine's outcome, once the masked inputs are in: the round
    // closes when the unmasking is over.
    std::optional<RoundOutcome> outcome;
    int64_t bytes = 0;  // Masked inputs received.
  };
  struct SecAggWaiter {
    std::string agent_id;
    int64_t round = 0;
    v1::SecAggStage stage = v1::SECAGG_STAGE_UNSPECIFIED;
    absl::Time deadline;
    SecAggCallback done;
  };
  // Starts the session of a round that just started (MaybeStartRound).
  void StartSecAgg(int64_t round, const std::vector<std::string>& selected);
  // The session of `round` while it runs; null otherwise.
  std::shared_ptr<SecAggRound> SecAggSessionOf(int64_t round) const;
  // Secure aggregation is on and `round`'s session is not created yet: the
  // Tick that started the round (engine first) has not reached
  // StartSecAgg. A poll meanwhile must wait, not get a task without it.
  bool SecAggStarting(int64_t round) const;
  // The agent's part of the session, for its task.
  std::optional<v1::SecAggTask> SecAggTaskFor(
      int64_t round, const std::string& agent_id) const;
  // Tick's part: closes the key stages when every awaited agent answered
  // or their deadline passed, finishes the unmasking, answers waiters.
  absl::Status AdvanceSecAgg();
  // True when the open stage has every awaited agent's message (agents that
  // left the roster are not awaited) or its deadline passed (logged).
  bool SecAggStageDue(const SecAggRound& session, int64_t round,
                      absl::Time deadline) const;
  // Closes stage 0 or 1; agents left out of it fail in the engine at once.
  // A session that cannot go on fails (FailSecAgg).
  void CloseSecAggKeyStage(SecAggRound& session, int64_t round);
  // The engine closed a secure round: its masked inputs are closed and the
  // unmasking starts (FinishRound comes when it ends), or the round is
  // abandoned. False when `outcome` is not a secure round.
  absl::StatusOr<bool> CloseSecAggInputs(RoundOutcome outcome);
  // Fails the session (the round is abandoned): the agents it waits for
  // count as failed, waiters get ABORTED.
  void FailSecAgg(const absl::Status& why);
  // Ends the session: folds the sum (or abandons the round) and closes
  // the round.
  absl::Status FinishSecAgg();
  // The answer for a waiter now, or nullopt while its stage is open.
  std::optional<absl::StatusOr<v1::SecAggStepResponse>> TryAnswerSecAgg(
      const SecAggWaiter& w) const;
  void AnswerSecAggWaiters(bool expire_all);
  // The masked input of a secure round (FinishUpload).
  absl::StatusOr<v1::SubmitUpdateResponse> AcceptMaskedInput(
      const Upload& upload);
  mutable absl::Mutex secagg_mu_;
  std::optional<SecAggState> secagg_ ABSL_GUARDED_BY(secagg_mu_);
  std::deque<SecAggWaiter> secagg_waiters_ ABSL_GUARDED_BY(secagg_mu_);
  std::atomic<bool> paused_{false};
  // An operator set the number of rounds (fedge set-rounds), now or before
  // a restart: checkpoints keep it, and it wins over the config's rounds.
  std::atomic<bool> rounds_set_by_operator_{false};
  // Differential privacy: the run stopped before a round that would have
  // exceeded strategy.dp.max_epsilon (accumulator_.privacy() is the ledger).
  std::atomic<bool> privacy_budget_exhausted_{false};
  absl::Time started_wall_;
  MetricsRegistry registry_;
  CoordinatorMetrics metrics_;

  // Serializes accepting an update (check, the engine's exactly-once
  // record, folding) against closing the round, so an accepted update is
  // never missed by its round's aggregate. Not held while bytes stream.
  absl::Mutex accumulate_mu_ ABSL_ACQUIRED_AFTER(mu_);
  RoundAccumulator accumulator_;

  // Upload slots: each decodes one update into its own model-sized buffer.
  // A waiter is started with its Upload, or failed (at shutdown).
  struct SlotWaiter {
    std::function<void()> start;
    std::function<void(absl::Status)> fail;
    uint64_t stream_id = 0;
  };
  // Ends the upload streams past upload_idle_timeout_ms or of a closed
  // round (Tick thread; at most every kUploadSweepPeriod).
  void SweepUploads();
  // Removes stream `id`'s slot waiter (the stream ended); false when none.
  bool DropSlotWaiter(uint64_t id);
  UploadGuard upload_guard_{
      config_.max_uploads_per_agent(),
      absl::Milliseconds(config_.upload_idle_timeout_ms())};
  absl::Time next_upload_sweep_ = absl::InfinitePast();  // Tick thread.
  void ReleaseSlot();
  // The buffers of a decoded update, for the next upload to decode into
  // (at most one set per slot is kept: the memory the slots use anyway, no
  // fresh pages per update); an empty state when none is spare.
  void KeepSpareBuffers(ModelState buffers);
  ModelState TakeSpareBuffers();
  absl::Mutex slots_mu_;
  int free_slots_ ABSL_GUARDED_BY(slots_mu_);
  std::deque<SlotWaiter> slot_waiters_ ABSL_GUARDED_BY(slots_mu_);
  std::vector<ModelState> spare_buffers_ ABSL_GUARDED_BY(slots_mu_);
  friend class Upload;

  std::atomic<int64_t> bytes_sent_{0};
  std::atomic<bool> finished_{false};
  std::atomic<bool> shutting_down_{false};
  // Background work of the last closed round (Tick thread only), and
  // whether its checkpoint is durable yet.
  std::future<absl::Status> persisting_;
  std::atomic<bool> durable_{false};
  // An operator paused or resumed, changed the rounds or the evicted
  // agents since the last checkpoint snapshot (SaveOperatorChanges).
  std::atomic<bool> operator_changes_{false};
  std::optional<PendingRound> pending_;  // Tick thread only.
  // Edge mode: the round RunRound asked for, until a Tick starts it; the
  // one running (Tick thread only); the final model of Finish().
  std::unique_ptr<EdgeRound> edge_requested_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<EdgeRound> edge_running_;
  struct EdgeFinish {
    ModelState model;
    int64_t version = 0;
  };
  std::optional<EdgeFinish> edge_finish_ ABSL_GUARDED_BY(mu_);
  int64_t started_round_ = 0;  // Tick thread only.
  absl::Time round_start_;     // Tick thread only.
};

}  // namespace fedge

#endif  // FEDGE_SERVER_COORDINATOR_H_
