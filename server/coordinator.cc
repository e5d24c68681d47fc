#include "server/coordinator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/fl_config.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "common/update_limits.h"
#include "server/engine_config.h"

namespace fedge {
namespace {

constexpr int64_t kMaxExamplesPerUpdate = int64_t{1} << 40;
// How often the upload limits are checked (idle streams, closed rounds).
constexpr absl::Duration kUploadSweepPeriod = absl::Milliseconds(50);

// "power" for FAILURE_REASON_POWER; "unknown" for a value this build does
// not know (a newer agent's).
std::string FailureReasonLabel(v1::FailureReason reason) {
  if (!v1::FailureReason_IsValid(reason)) return "unknown";
  absl::string_view name = v1::FailureReason_Name(reason);
  absl::ConsumePrefix(&name, "FAILURE_REASON_");
  return absl::AsciiStrToLower(name);
}

// The signature of the newest model, with its announcement in a poll.
void AnnounceSignature(const PublishedModel& model, v1::PollResponse& r) {
  r.set_latest_model_signature(model.signature.signature);
  r.set_latest_model_signing_key_id(model.signature.key_id);
}

// The signer of config.model_signing_key_path (nullopt when unset: models
// are published unsigned). INVALID_ARGUMENT naming the field when the key
// does not load.
absl::StatusOr<std::optional<ModelSigner>> LoadSigner(
    const v1::CoordinatorConfig& c) {
  if (c.model_signing_key_path().empty()) {
    FEDGE_LOG(WARNING) << "model_signing_key_path is not set: global models "
                          "are published unsigned";
    return std::nullopt;
  }
  absl::StatusOr<ModelSigner> signer =
      ModelSigner::Load(c.model_signing_key_path());
  if (!signer.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config field 'model_signing_key_path': ", signer.status().message()));
  }
  FEDGE_LOG(INFO) << "signing global models with key id " << signer->key_id()
                  << " (" << c.model_signing_key_path() << ")";
  return std::optional<ModelSigner>(*std::move(signer));
}

v1::PollResponse WaitResponse(int64_t retry_after_ms) {
  v1::PollResponse r;
  r.set_wait_retry_after_ms(retry_after_ms);
  return r;
}

}  // namespace

Upload::Upload(Coordinator* owner, v1::UpdateMetadata metadata,
               std::string agent_id, ModelSchema schema, DecodeLimits limits)
    : owner_(owner),
      metadata_(std::move(metadata)),
      agent_id_(std::move(agent_id)),
      decoder_(limits, std::move(schema)),
      check_(metadata_.sha256(), metadata_.xxh3_128()) {
  if (metadata_.masked()) {
    // Its size was checked against the session's before (BeginUpload).
    masked_.reserve(static_cast<size_t>(metadata_.total_size_bytes()));
  } else {
    decoder_.Recycle(owner_->TakeSpareBuffers());
  }
}

Upload::~Upload() { owner_->ReleaseSlot(); }

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(
    CoordinatorOptions options) {
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("Coordinator needs a clock");
  }
  if (options.initial_model.size() == 0) {
    return absl::InvalidArgumentError("Coordinator needs an initial model");
  }
  RETURN_IF_ERROR(Annotate(CheckFinite(options.initial_model),
                           "the initial model is not finite"));
  const v1::CoordinatorConfig& c = options.config;
  ASSIGN_OR_RETURN(std::optional<ModelSigner> signer, LoadSigner(c));
  if (c.strategy().mode() == "fedbuff") {
    // Among its checks: the strategies FedBuff works with (one home for
    // the coordinator and fedge-sim).
    RETURN_IF_ERROR(ValidateStrategyConfig(c.strategy(), "strategy."));
  }
  ASSIGN_OR_RETURN(
      std::unique_ptr<Strategy> strategy,
      CreateStrategy(ToStrategyOptions(c.strategy(), c.train(), c.seed()),
                     options.initial_model));
  // An edge aggregator runs rounds for as long as its upstream does.
  const bool edge = !c.upstream().address().empty();
  RoundEngineOptions engine_options = ToRoundEngineOptions(
      c.strategy(), edge ? std::numeric_limits<int>::max() : c.rounds());
  engine_options.agent_timeout = absl::Milliseconds(c.agent_timeout_ms());
  ASSIGN_OR_RETURN(auto engine,
                   RoundEngine::Create(engine_options, options.clock));
  RETURN_IF_ERROR(MakeDirs(c.state_dir()));
  // Held for the coordinator's life: one coordinator per state_dir.
  ASSIGN_OR_RETURN(std::unique_ptr<FileLock> lock,
                   FileLock::Acquire(c.state_dir() + "/LOCK",
                                     "another fedge-coordinator uses this "
                                     "state_dir: give each coordinator its "
                                     "own --state_dir"));
  ASSIGN_OR_RETURN(auto checkpoints,
                   CheckpointStore::Create(
                       {c.state_dir() + "/checkpoints", c.keep_checkpoints()}));
  ASSIGN_OR_RETURN(auto history, HistoryWriter::Open(
                                     c.state_dir() + "/history.csv", true,
                                     false, c.strategy().dp().mode() != "off"));
  std::unique_ptr<Coordinator> coordinator(
      new Coordinator(options, std::move(engine), std::move(strategy),
                      std::move(checkpoints), std::move(history)));
  coordinator->state_lock_ = std::move(lock);
  coordinator->signer_ = std::move(signer);
  RETURN_IF_ERROR(coordinator->OpenAccess());
  RETURN_IF_ERROR(coordinator->Restore(std::move(options.initial_model)));
  return coordinator;
}

namespace {

// Zeros shaped like `schema`, for sizes.
ModelState ZerosOf(const ModelSchema& schema) {
  ModelState out;
  for (const TensorSpec& t : schema) {
    absl::StatusOr<TensorBuffer> z =
        TensorBuffer::Zeros(t.name, t.dtype, t.shape);
    FEDGE_CHECK(z.ok()) << z.status();
    out.Add(*std::move(z));
  }
  return out;
}

ModelSchema Concat(ModelSchema a, const ModelSchema& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

Coordinator::Coordinator(CoordinatorOptions& options,
                         std::unique_ptr<RoundEngine> engine,
                         std::unique_ptr<Strategy> strategy,
                         std::unique_ptr<CheckpointStore> checkpoints,
                         std::unique_ptr<HistoryWriter> history)
    : config_(options.config),
      spec_(options.model_spec),
      archive_path_(options.archive_path),
      clock_(options.clock),
      evaluator_(std::move(options.evaluator)),
      schema_(SchemaOf(options.initial_model)),
      update_schema_(Concat(schema_, strategy->ExtrasSchema(schema_))),
      update_size_(EncodedSize(ZerosOf(update_schema_))),
      download_encoding_(
          ParseDownloadEncoding(options.config.strategy().download_encoding())
              .value_or(UpdateEncoding::kFp32)),
      engine_(std::move(engine)),
      strategy_(std::move(strategy)),
      checkpoints_(std::move(checkpoints)),
      history_(std::move(history)),
      fedbuff_(options.config.strategy().mode() == "fedbuff"
                   ? std::make_unique<FedBuffTasks>(
                         ToFedBuffOptions(options.config.strategy()))
                   : nullptr),
      edge_mode_(!options.config.upstream().address().empty()),
      started_wall_(options.clock->WallNow()),
      metrics_(registry_),
      accumulator_(strategy_.get(),
                   ToUpdateLimits(options.config.strategy().update_limits())),
      free_slots_(options.config.max_concurrent_uploads()),
      round_start_(options.clock->Now()) {
  RegisterBuildInfo(&registry_);
}

Coordinator::~Coordinator() {
  Flush().IgnoreError();
  AnswerParkedPolls(/*expire_all=*/true);
}

absl::Status Coordinator::Restore(ModelState initial_model) {
  std::vector<std::string> skipped;
  ASSIGN_OR_RETURN(std::optional<Checkpoint> ckpt, LoadNewestFinite(&skipped));
  // The rounds before a restart, for the operator's views.
  absl::StatusOr<std::vector<RoundRecord>> past =
      HistoryWriter::Read(config_.state_dir() + "/history.csv");
  if (past.ok()) {
    absl::MutexLock lock(&mu_);
    for (RoundRecord& r : *past) {
      const bool completed =
          r.num_agents >= config_.strategy().min_fit_agents();
      if (r.test_accuracy.has_value()) last_accuracy_ = *r.test_accuracy;
      // The gauges of the newest evaluations, as before the restart.
      if (r.test_accuracy.has_value() && r.test_loss.has_value()) {
        metrics_.central_accuracy.Set(*r.test_accuracy);
        metrics_.central_loss.Set(*r.test_loss);
      }
      if (r.fed_eval_accuracy.has_value() && r.fed_eval_loss.has_value()) {
        metrics_.federated_accuracy.Set(*r.fed_eval_accuracy);
        metrics_.federated_loss.Set(*r.fed_eval_loss);
      }
      records_.emplace_back(std::move(r), completed);
    }
  }
  for (const std::string& s : skipped) {
    FEDGE_LOG(WARNING) << "skipped checkpoint: " << s;
  }
  if (!ckpt.has_value() && !skipped.empty()) {
    // Starting over would put a new round 1 after the old history: only
    // an operator should decide that.
    return absl::DataLossError(absl::StrCat(
        "none of the ", skipped.size(), " checkpoint(s) in ",
        config_.state_dir(), "/checkpoints verifies (", skipped.front(),
        "); restore one from a backup, or move the state_dir away to start "
        "a new run"));
  }
  if (!ckpt.has_value()) {
    std::shared_ptr<PublishedModel> initial =
        MakePublished(std::move(initial_model), 0);
    int64_t lease = 0;
    RETURN_IF_ERROR(SaveCheckpoint(CheckpointSnapshot(0, &lease), *initial));
    if (fedbuff_ != nullptr) fedbuff_->Durable(lease);
    Publish(std::move(initial));  // Durable first.
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(CheckSchema(schema_, ckpt->model));
  v1::CoordinatorCheckpointExtra extra;
  if (!extra.ParseFromString(ckpt->extra)) {
    return absl::DataLossError("checkpoint extra state does not parse");
  }
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [agent, index] : extra.partitions()) {
      partitions_[agent] = index;
    }
    for (const auto& [agent, rounds] : extra.rounds_contributed()) {
      contributed_[agent] = rounds;
    }
  }
  const std::string written_by =
      extra.has_strategy_name() ? extra.strategy_name() : "fedavg";
  if (written_by != strategy_->name()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the checkpoint in ", config_.state_dir(),
                     "/checkpoints was written by strategy '", written_by,
                     "'; resume it with strategy.name=", written_by,
                     " or start a new run in another state_dir"));
  }
  RETURN_IF_ERROR(
      Annotate(strategy_->RestoreState(extra.strategy_state(), schema_),
               "restoring the strategy's state from the checkpoint"));
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& id : extra.evicted_agents()) evicted_.insert(id);
  }
  RETURN_IF_ERROR(RestorePrivacy(extra, ckpt->completed_rounds));
  if (extra.paused()) {
    paused_ = true;
    metrics_.paused.Set(1);
    FEDGE_LOG(WARNING) << "paused by an operator before the restart: no "
                          "round starts until `fedge resume`";
  }
  // An operator's rounds (`fedge set-rounds`) and stop (`fedge stop`) are
  // checkpointed and win over the config while its rounds are the ones they
  // were made with. A restart with another --rounds is a new decision: the
  // config's rounds count, and a stopped or finished federation goes on.
  const bool operator_rounds_apply =
      !extra.has_config_rounds() || extra.config_rounds() == config_.rounds();
  if (!operator_rounds_apply) {
    FEDGE_LOG(WARNING) << "rounds: " << config_.rounds()
                       << " (the config's; it said " << extra.config_rounds()
                       << " when an operator last "
                       << (extra.stopped() ? "stopped the federation"
                                           : "set the rounds")
                       << ", which no longer applies)";
  } else if (extra.has_total_rounds()) {
    rounds_set_by_operator_ = true;
    if (extra.total_rounds() != config_.rounds()) {
      FEDGE_LOG(WARNING) << "rounds: " << extra.total_rounds()
                         << " (set by an operator with fedge set-rounds before "
                            "the restart; the config says "
                         << config_.rounds()
                         << "; fedge set-rounds N, or a restart with another "
                            "--rounds, changes it)";
      RETURN_IF_ERROR(engine_->SetNumRounds(extra.total_rounds()));
    }
  }
  if (ckpt->completed_rounds > 0 || ckpt->next_round > 1) {
    RETURN_IF_ERROR(
        engine_->RestoreProgress(ckpt->next_round, ckpt->completed_rounds));
  }
  if (operator_rounds_apply && extra.stopped() &&
      engine_->state() != RoundState::kDone) {
    FEDGE_LOG(WARNING) << "stopped by an operator before the restart (fedge "
                          "stop): no round starts; restart with another "
                          "--rounds to go on";
    RETURN_IF_ERROR(engine_->StopAfterCurrentRound());
  }
  Publish(MakePublished(std::move(ckpt->model), ckpt->model_version));
  if (fedbuff_ != nullptr) {
    // Task numbers continue after every one the last run could have used;
    // this run's lease is on disk before any is handed out.
    fedbuff_->Resume(extra.next_task());
    int64_t lease = 0;
    RETURN_IF_ERROR(SaveCheckpoint(
        CheckpointSnapshot(ckpt->model_version, &lease), *latest_model()));
    fedbuff_->Durable(lease);
  }
  FEDGE_LOG(INFO) << "resumed from checkpoint: model version "
                  << ckpt->model_version << " sha256 "
                  << latest_model()->sha256_hex << ", next round "
                  << ckpt->next_round << ", " << ckpt->completed_rounds
                  << " rounds completed";
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Checkpoint>> Coordinator::LoadNewestFinite(
    std::vector<std::string>* skipped) {
  ASSIGN_OR_RETURN(std::optional<Checkpoint> newest,
                   checkpoints_->LoadNewest(skipped));
  if (!newest.has_value()) return newest;
  absl::Status finite = CheckFinite(newest->model);
  if (finite.ok()) return newest;
  // A model that is not finite (written by an older fedge, or by hand) is
  // never resumed from: the next older checkpoint that verifies and is.
  const int64_t bad_version = newest->model_version;
  bool past_newest = false;  // Newer files: LoadNewest reported them.
  const std::vector<std::string> paths = checkpoints_->ListCheckpoints();
  for (auto it = paths.rbegin(); it != paths.rend(); ++it) {  // Newest first.
    const std::string& path = *it;
    absl::StatusOr<Checkpoint> c = CheckpointStore::ReadFile(path);
    if (absl::IsUnavailable(c.status())) return c.status();
    if (c.ok() && c->model_version > bad_version) continue;
    if (c.ok() && c->model_version == bad_version) past_newest = true;
    if (!past_newest) continue;
    absl::Status usable = c.ok() ? CheckFinite(c->model) : c.status();
    if (usable.ok()) return std::optional<Checkpoint>(*std::move(c));
    skipped->push_back(absl::StrCat(
        path, c.ok() ? ": the model is not finite: " : ": ", usable.message()));
  }
  return absl::DataLossError(absl::StrCat(
      "no checkpoint in ", config_.state_dir(),
      "/checkpoints holds a finite model (the newest, version ", bad_version,
      ": ", finite.message(), "); move the directory away to start a new run"));
}

std::shared_ptr<PublishedModel> Coordinator::MakePublished(
    ModelState model, int64_t version) const {
  std::shared_ptr<PublishedModel> published =
      NewPublished(std::move(model), version);
  FinishPublished(*published, ModelDigest(published->model));
  return published;
}

std::shared_ptr<PublishedModel> Coordinator::NewPublished(
    ModelState model, int64_t version) const {
  auto published = std::make_shared<PublishedModel>();
  published->version = version;
  if (const ModelState* extras = strategy_->BroadcastExtras()) {
    ModelState download = model.Clone();
    for (const TensorBuffer& t : extras->tensors()) download.Add(t.Clone());
    published->with_extras = std::move(download);
  }
  published->model = std::move(model);
  return published;
}

void Coordinator::FinishPublished(PublishedModel& published,
                                  const Sha256Digest& model_sha256) const {
  // Each model is hashed once: the checkpoint records this digest.
  published.model_sha256 = model_sha256;
  if (download_encoding_ != UpdateEncoding::kFp32) {
    EncodingOptions options;
    options.kind = download_encoding_;
    absl::StatusOr<EncodedModel> wire =
        EncodeForWire(published.download(), options);
    // Aggregates are checked finite: a lossy encoding of them cannot fail.
    FEDGE_CHECK(wire.ok()) << wire.status();
    published.wire = *std::move(wire);
    published.encoding = UpdateEncodingName(download_encoding_);
    published.sha256_hex = ToHex(ModelDigest(*published.wire));
    published.size_bytes = EncodedSize(*published.wire);
  } else {
    published.sha256_hex = published.with_extras.has_value()
                               ? ToHex(ModelDigest(*published.with_extras))
                               : ToHex(published.model_sha256);
    published.size_bytes = EncodedSize(published.download());
  }
  SignPublished(published);
}

void Coordinator::SignPublished(PublishedModel& published) const {
  if (!signer_.has_value()) return;
  absl::StatusOr<ModelSignature> signature =
      signer_->Sign(published.version, spec_, published.sha256_hex);
  // The hash is ours and the key loaded: only OpenSSL itself can fail.
  FEDGE_CHECK(signature.ok()) << signature.status();
  published.signature = *std::move(signature);
}

void Coordinator::Publish(std::shared_ptr<const PublishedModel> model) {
  absl::MutexLock lock(&mu_);
  int64_t keep_from = model->version;
  if (fedbuff_ != nullptr) {
    // Tasks start under mu_: none can start on a version erased here.
    keep_from = std::min(keep_from,
                         fedbuff_->oldest_base_version().value_or(keep_from));
  }
  versions_[model->version] = model;
  versions_.erase(versions_.begin(), versions_.lower_bound(keep_from));
  metrics_.model_version.Set(static_cast<double>(model->version));
  latest_ = std::move(model);
}

std::shared_ptr<const PublishedModel> Coordinator::FindVersion(
    int64_t version) const {
  absl::MutexLock lock(&mu_);
  auto it = versions_.find(version);
  return it == versions_.end() ? nullptr : it->second;
}

std::shared_ptr<const PublishedModel> Coordinator::latest_model() const {
  absl::MutexLock lock(&mu_);
  return latest_;
}

int32_t Coordinator::AssignPartition(const std::string& agent_id) {
  const v1::SimulationModeConfig& sim = config_.simulation();
  if (!sim.enabled()) return -1;
  auto it = partitions_.find(agent_id);
  if (it != partitions_.end()) return it->second;
  const int32_t index =
      static_cast<int32_t>(partitions_.size()) % sim.num_partitions();
  partitions_[agent_id] = index;
  return index;
}

absl::StatusOr<v1::JoinResponse> Coordinator::Join(
    const v1::JoinRequest& request, const std::string& peer_identity,
    const std::string& source) {
  auto refused = [&](const std::string& agent, absl::Status status) {
    AuditEvent("join_refused",
               {{"agent", agent},
                {"peer", source},
                {"code", absl::StatusCodeToString(status.code())},
                {"reason", std::string(status.message())}});
    return status;
  };
  // Under mutual TLS the certificate is the identity: one without a usable
  // CN is refused, never replaced by the id the request claims.
  if (config_.tls().require_client_cert() && peer_identity.empty()) {
    return refused(
        "", absl::UnauthenticatedError(
                "the client certificate has no common name (CN): under mutual "
                "TLS the certificate's CN is the agent's id"));
  }
  const std::string agent_id =
      peer_identity.empty() ? request.agent_id() : peer_identity;
  if (absl::Status valid = ValidateAgentId(agent_id); !valid.ok()) {
    if (!peer_identity.empty()) {
      return refused("", absl::UnauthenticatedError(absl::StrCat(
                             "the client certificate's CN is not a usable "
                             "agent id: ",
                             valid.message())));
    }
    return refused("", valid);
  }
  bool evicted;
  {
    absl::MutexLock lock(&mu_);
    evicted = evicted_.contains(agent_id);
  }
  if (evicted) {
    // Not an update: listed on the page, audited as a refused join.
    return refused(
        agent_id, ListRefusal(agent_id, "join", "evicted",
                              absl::PermissionDeniedError(absl::StrCat(
                                  "agent ", agent_id,
                                  " was evicted by an operator (fedge allow ID "
                                  "lets it back)"))));
  }
  std::string how, agent_key;
  if (absl::Status admitted = AdmitJoin(
          request, agent_id, !peer_identity.empty(), source, &how, &agent_key);
      !admitted.ok()) {
    return refused(agent_id, admitted);
  }
  absl::Status added = engine_->AddAgent(agent_id);
  if (!added.ok() && !absl::IsAlreadyExists(added)) return added;
  metrics_.agents_joined.Increment();
  v1::JoinResponse response;
  response.set_session_token(SecureRandomHex(16));
  response.set_agent_id(agent_id);
  response.set_agent_key(agent_key);
  response.set_heartbeat_interval_ms(config_.heartbeat_interval_ms());
  *response.mutable_model() = spec_;
  const v1::SimulationModeConfig& sim = config_.simulation();
  absl::MutexLock lock(&mu_);
  const int32_t partition = AssignPartition(agent_id);
  response.set_partition_index(partition);
  if (partition >= 0) {
    response.set_num_partitions(sim.num_partitions());
    response.set_partition_method(sim.partition().method());
    response.set_partition_seed(sim.partition().seed());
    response.set_dirichlet_alpha(sim.partition().dirichlet_alpha());
    response.set_shards_per_agent(sim.partition().shards_per_agent());
  }
  // One live session per agent: joining again revokes the earlier token
  // (a copied or stale one stops working).
  EndSessionLocked(agent_id);
  session_of_agent_[agent_id] = response.session_token();
  Session& session = sessions_[response.session_token()];
  session.agent_id = agent_id;
  session.partition_index = partition;
  if (config_.session_lifetime_ms() > 0) {
    session.expires =
        clock_->Now() + absl::Milliseconds(config_.session_lifetime_ms());
  }
  AgentInfo& info = agents_[agent_id];
  info.id = agent_id;
  info.num_examples = std::max<int64_t>(0, request.num_examples());
  info.device_class = request.device_class();
  info.examples_per_second = std::isfinite(request.examples_per_second()) &&
                                     request.examples_per_second() > 0
                                 ? request.examples_per_second()
                                 : 0;
  FEDGE_LOG(INFO) << "agent " << agent_id << " joined"
                  << (added.ok() ? "" : " again")
                  << (partition >= 0
                          ? absl::StrCat(" (partition ", partition, ")")
                          : "");
  AuditEvent("join", {{"agent", agent_id}, {"peer", source}, {"by", how}});
  return response;
}

absl::StatusOr<Coordinator::Session> Coordinator::FindSession(
    const std::string& token) const {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(token);
  if (it == sessions_.end()) {
    return absl::UnauthenticatedError("unknown session: join again");
  }
  if (clock_->Now() >= it->second.expires) {
    return absl::UnauthenticatedError(
        "the session expired (session_lifetime_ms): join again");
  }
  return it->second;
}

v1::TrainTask Coordinator::MakeTask(int64_t round, const std::string& agent_id,
                                    const PublishedModel& model,
                                    absl::Time deadline) const {
  v1::TrainTask task;
  task.set_round(round);
  task.set_model_version(model.version);
  task.set_model_sha256(model.sha256_hex);
  task.set_model_size_bytes(model.size_bytes);
  task.set_model_encoding(model.encoding);
  task.set_model_signature(model.signature.signature);
  task.set_model_signing_key_id(model.signature.key_id);
  {
    absl::MutexLock lock(&mu_);
    auto it = plans_.find(agent_id);
    if (it != plans_.end()) *task.mutable_plan() = ToTrainPlanProto(it->second);
  }
  task.set_client_algorithm(std::string(strategy_->client_algorithm()));
  if (std::optional<v1::SecAggTask> secure = SecAggTaskFor(round, agent_id)) {
    *task.mutable_secure_aggregation() = *std::move(secure);
  }
  const absl::Duration left = deadline - clock_->Now();
  task.set_deadline_remaining_ms(
      std::max<int64_t>(0, absl::ToInt64Milliseconds(left)));
  task.set_deadline_unix_ms(absl::ToUnixMillis(clock_->WallNow() + left));
  return task;
}

std::optional<absl::StatusOr<v1::PollResponse>> Coordinator::TryAnswerPoll(
    const std::string& agent_id, int64_t cached_version) {
  v1::PollResponse response;
  std::shared_ptr<const PublishedModel> model = latest_model();
  response.set_latest_model_version(model->version);
  response.set_latest_model_sha256(model->sha256_hex);
  response.set_latest_model_encoding(model->encoding);
  AnnounceSignature(*model, response);
  if (std::optional<v1::TrainTask> train = TrainTaskFor(agent_id)) {
    *response.mutable_train() = *std::move(train);
    return response;
  }
  {
    absl::MutexLock lock(&mu_);
    if (eval_.has_value() && eval_->pending.contains(agent_id)) {
      v1::EvaluateTask* task = response.mutable_evaluate();
      task->set_round(eval_->round);
      task->set_model_version(eval_->model->version);
      task->set_model_sha256(eval_->model->sha256_hex);
      task->set_model_size_bytes(eval_->model->size_bytes);
      task->set_model_encoding(eval_->model->encoding);
      task->set_model_signature(eval_->model->signature.signature);
      task->set_model_signing_key_id(eval_->model->signature.key_id);
      task->set_deadline_remaining_ms(std::max<int64_t>(
          1, absl::ToInt64Milliseconds(eval_->deadline - clock_->Now())));
      return response;
    }
  }
  if (engine_->state() == RoundState::kDone) {
    // Only once the last model is published, so agents leave with it.
    if (!finished_) return std::nullopt;
    response.set_finished(true);
    absl::MutexLock lock(&mu_);
    ++told_finished_[agent_id];
    return response;
  }
  return std::nullopt;
}

void Coordinator::Poll(const v1::PollRequest& request, PollCallback done) {
  if (shutting_down_) {
    return done(absl::UnavailableError("the coordinator is shutting down"));
  }
  absl::StatusOr<Session> session = FindSession(request.session_token());
  if (!session.ok()) return done(session.status());
  if (!engine_->Heartbeat(session->agent_id).ok()) {
    return done(absl::UnauthenticatedError(
        "agent was dropped for inactivity: join again"));
  }
  NotePausedReason(session->agent_id, request.paused_reason());
  auto answer =
      TryAnswerPoll(session->agent_id, request.cached_model_version());
  if (answer.has_value()) return done(*std::move(answer));
  if (request.no_wait()) {
    v1::PollResponse wait = WaitResponse(config_.heartbeat_interval_ms() / 2);
    std::shared_ptr<const PublishedModel> model = latest_model();
    wait.set_latest_model_version(model->version);
    wait.set_latest_model_sha256(model->sha256_hex);
    wait.set_latest_model_encoding(model->encoding);
    AnnounceSignature(*model, wait);
    return done(wait);
  }
  {
    absl::MutexLock lock(&mu_);
    if (!shutting_down_) {  // Else BeginShutdown() already drained parked_.
      parked_.push_back(
          {session->agent_id, request.cached_model_version(),
           clock_->Now() + absl::Milliseconds(config_.poll_wait_ms()),
           std::move(done)});
      return;
    }
  }
  done(absl::UnavailableError("the coordinator is shutting down"));
}

void Coordinator::AnswerParkedPolls(bool expire_all) {
  std::deque<ParkedPoll> parked;
  {
    absl::MutexLock lock(&mu_);
    parked.swap(parked_);
  }
  const absl::Time now = clock_->Now();
  std::deque<ParkedPoll> still_waiting;
  for (ParkedPoll& p : parked) {
    auto answer =
        expire_all ? std::nullopt : TryAnswerPoll(p.agent_id, p.cached_version);
    if (answer.has_value()) {
      p.done(*std::move(answer));
    } else if (expire_all || now >= p.deadline) {
      v1::PollResponse wait = WaitResponse(0);  // Poll again at once.
      std::shared_ptr<const PublishedModel> model = latest_model();
      wait.set_latest_model_version(model->version);
      wait.set_latest_model_sha256(model->sha256_hex);
      wait.set_latest_model_encoding(model->encoding);
      AnnounceSignature(*model, wait);
      p.done(wait);
    } else {
      still_waiting.push_back(std::move(p));
    }
  }
  absl::MutexLock lock(&mu_);
  for (ParkedPoll& p : still_waiting) parked_.push_back(std::move(p));
}

absl::StatusOr<std::shared_ptr<const PublishedModel>> Coordinator::GetModel(
    const v1::FetchModelRequest& request) {
  ASSIGN_OR_RETURN(Session session, FindSession(request.session_token()));
  engine_->Heartbeat(session.agent_id).IgnoreError();
  std::shared_ptr<const PublishedModel> model =
      request.version() == -1 ? latest_model() : FindVersion(request.version());
  if (model == nullptr) {
    model = latest_model();
    return absl::NotFoundError(absl::StrCat("model version ", request.version(),
                                            " is not published; the newest is ",
                                            model->version));
  }
  if (request.offset() < 0 || request.offset() > model->size_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("offset ", request.offset(), " is outside the model (",
                     model->size_bytes, " bytes)"));
  }
  return model;
}

absl::StatusOr<std::pair<std::string, int64_t>> Coordinator::GetArchive(
    const v1::FetchArchiveRequest& request) {
  ASSIGN_OR_RETURN(Session session, FindSession(request.session_token()));
  engine_->Heartbeat(session.agent_id).IgnoreError();
  if (archive_path_.empty() || request.sha256() != spec_.torchscript_sha256()) {
    return absl::NotFoundError(
        absl::StrCat("this federation has no archive ", request.sha256()));
  }
  const int64_t size = spec_.torchscript_size_bytes();
  if (request.offset() < 0 || request.offset() > size) {
    return absl::InvalidArgumentError(absl::StrCat("offset ", request.offset(),
                                                   " is outside the archive (",
                                                   size, " bytes)"));
  }
  return std::make_pair(archive_path_, size);
}

absl::Status Coordinator::CheckUploadMetadata(const v1::UpdateMetadata& m,
                                              const std::string& agent) {
  // First: a retry of an update already counted (ALREADY_EXISTS below) is
  // still read and checked.
  RETURN_IF_ERROR(UploadCheck::Validate(m.sha256(), m.xxh3_128()));
  RETURN_IF_ERROR(CheckTaskResult(m, agent));
  if (std::shared_ptr<SecAggRound> secure = SecAggSessionOf(m.round());
      secure != nullptr || m.masked()) {
    if (secure == nullptr || !m.masked()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", m.round(),
          secure != nullptr
              ? " uses secure aggregation: upload the masked input "
                "(UpdateMetadata.masked), never the update itself"
              : " does not use secure aggregation: a masked input is "
                "refused"));
    }
    const int64_t size = secure->MaskedInputBytes();
    if (m.total_size_bytes() != size || size > config_.max_update_bytes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "masked input of ", m.total_size_bytes(), " bytes; the session's is ",
          size, " bytes (max_update_bytes ", config_.max_update_bytes(), ")"));
    }
    return absl::OkStatus();
  }
  if (m.num_examples() <= 0 || m.num_examples() > kMaxExamplesPerUpdate) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_examples must be in [1, ", kMaxExamplesPerUpdate,
                     "], got ", m.num_examples()));
  }
  // Raw fp32 is the largest encoding of an update (a lossy one that would
  // not be smaller is sent raw).
  if (m.total_size_bytes() <= 0 || m.total_size_bytes() > update_size_ ||
      m.total_size_bytes() > config_.max_update_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "update size ", m.total_size_bytes(), " bytes is outside (0, ",
        std::min(update_size_, config_.max_update_bytes()),
        "]: the model's raw size is ", update_size_,
        " bytes and max_update_bytes ", config_.max_update_bytes()));
  }
  // The poisoning limits that need no bytes: refused before any is read
  // (the accumulator checks them again with the norm).
  TrainMetrics metrics;
  metrics.num_steps = m.num_steps();
  metrics.loss = m.metrics().loss();
  metrics.accuracy = m.metrics().accuracy();
  metrics.seconds = m.metrics().train_seconds();
  return CheckUpdateClaims(accumulator_.limits(), DeclaredExamples(agent),
                           static_cast<double>(m.num_examples()), metrics);
}

int64_t Coordinator::DeclaredExamples(const std::string& agent_id) const {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(agent_id);
  return it == agents_.end() ? 0 : it->second.num_examples;
}

void Coordinator::BeginUpload(const v1::UpdateMetadata& metadata,
                              UploadCallback done) {
  BeginUpload(metadata, std::move(done), UploadStream());
}

void Coordinator::BeginUpload(const v1::UpdateMetadata& metadata,
                              UploadCallback done, UploadStream stream) {
  if (shutting_down_) {
    return done(absl::UnavailableError("the coordinator is shutting down"));
  }
  absl::StatusOr<Session> session = FindSession(metadata.session_token());
  if (!session.ok()) {
    return done(Refuse("?", "unauthenticated", "session", session.status()));
  }
  engine_->Heartbeat(session->agent_id).IgnoreError();
  absl::Status ok = CheckUploadMetadata(metadata, session->agent_id);
  if (absl::IsAlreadyExists(ok)) metrics_.Update("duplicate", "retry");
  if (!ok.ok() && !absl::IsAlreadyExists(ok)) {
    const absl::StatusCode code = ok.code();
    const std::string limit = UpdateLimitReason(ok);
    ok = Refuse(session->agent_id,
                code == absl::StatusCode::kAborted           ? "stale"
                : code == absl::StatusCode::kInvalidArgument ? "invalid"
                : code == absl::StatusCode::kUnauthenticated ? "unauthenticated"
                                                             : "refused",
                code == absl::StatusCode::kAborted ? "round closed"
                : !limit.empty()                   ? limit
                                                   : "metadata",
                ok);
  }
  if (!ok.ok()) return done(ok);
  const uint64_t stream_id = stream.id;
  if (stream_id != 0 && !absl::IsAlreadyExists(ok)) {
    absl::Status opened = upload_guard_.Open(
        stream_id, session->agent_id, metadata, std::move(stream.cancel));
    if (!opened.ok()) {
      return done(Refuse(session->agent_id, "refused", "max_uploads_per_agent",
                         opened));
    }
  }
  auto shared_done = std::make_shared<UploadCallback>(std::move(done));
  SlotWaiter waiter;
  waiter.stream_id = stream_id;
  waiter.start = [this, metadata, agent = session->agent_id, shared_done,
                  stream_id]() {
    DecodeLimits limits;
    limits.max_total_bytes = update_size_;
    limits.max_decoded_bytes = update_size_;
    auto upload = std::unique_ptr<Upload>(
        new Upload(this, metadata, agent, update_schema_, limits));
    upload->stream_id_ = stream_id;
    if (stream_id != 0) upload_guard_.SlotGranted(stream_id, clock_->Now());
    (*shared_done)(std::move(upload));
  };
  waiter.fail = [shared_done](absl::Status s) { (*shared_done)(s); };
  {
    absl::MutexLock lock(&slots_mu_);
    if (free_slots_ == 0) {
      slot_waiters_.push_back(std::move(waiter));
      return;
    }
    --free_slots_;
  }
  waiter.start();
}

void Coordinator::KeepSpareBuffers(ModelState buffers) {
  absl::MutexLock lock(&slots_mu_);
  if (static_cast<int>(spare_buffers_.size()) <
      config_.max_concurrent_uploads()) {
    spare_buffers_.push_back(std::move(buffers));
  }
}

ModelState Coordinator::TakeSpareBuffers() {
  absl::MutexLock lock(&slots_mu_);
  if (spare_buffers_.empty()) return ModelState();
  ModelState spare = std::move(spare_buffers_.back());
  spare_buffers_.pop_back();
  return spare;
}

void Coordinator::ReleaseSlot() {
  SlotWaiter next;
  {
    absl::MutexLock lock(&slots_mu_);
    if (slot_waiters_.empty()) {
      ++free_slots_;
      return;
    }
    next = std::move(slot_waiters_.front());
    slot_waiters_.pop_front();
  }
  next.start();  // The slot passes straight to the next waiting upload.
}

void Coordinator::WatchUploadStream(
    uint64_t id, std::function<bool(absl::Status status)> cancel) {
  upload_guard_.Watch(id, clock_->Now(), std::move(cancel));
}

void Coordinator::EndUploadStream(uint64_t id) {
  upload_guard_.Close(id);
  DropSlotWaiter(id);
}

bool Coordinator::DropSlotWaiter(uint64_t id) {
  SlotWaiter dropped;  // Destroyed after the lock.
  absl::MutexLock lock(&slots_mu_);
  for (auto it = slot_waiters_.begin(); it != slot_waiters_.end(); ++it) {
    if (it->stream_id == id) {
      dropped = std::move(*it);
      slot_waiters_.erase(it);
      return true;
    }
  }
  return false;
}

void Coordinator::SweepUploads() {
  const absl::Time now = clock_->Now();
  if (now < next_upload_sweep_ || upload_guard_.size() == 0) return;
  next_upload_sweep_ = now + kUploadSweepPeriod;
  // Rounds: one look at the engine for every stream (no lock per stream;
  // thousands may wait for a slot). FedBuff's tasks are checked one by one
  // (at most its concurrency in flight).
  const RoundState state = engine_->state();
  const int64_t round = engine_->current_round();
  std::vector<UploadGuard::Ended> ended =
      upload_guard_.Sweep(now, [this, state, round](const v1::UpdateMetadata& m,
                                                    const std::string& agent) {
        if (fedbuff_ != nullptr) return CheckTaskResult(m, agent);
        if (state == RoundState::kInProgress && m.round() == round) {
          return absl::OkStatus();
        }
        return absl::AbortedError(absl::StrCat(
            "round ", m.round(), " is not in progress; current round ", round,
            state == RoundState::kInProgress ? "" : " (not in progress)"));
      });
  for (UploadGuard::Ended& e : ended) {
    if (!e.held_slot) DropSlotWaiter(e.id);
    if (e.cancel && e.cancel(e.status)) {
      Refuse(e.agent_id.empty() ? "?" : e.agent_id, "cancelled", e.reason,
             e.status)
          .IgnoreError();
    }
  }
}

absl::Status Coordinator::FeedUpload(Upload& upload, absl::string_view bytes) {
  if (upload.stream_id_ != 0) {
    upload_guard_.Touch(upload.stream_id_, clock_->Now());
  }
  upload.received_ += static_cast<int64_t>(bytes.size());
  if (upload.received_ > upload.metadata_.total_size_bytes()) {
    return Refuse(upload.agent_id_, "invalid", "size",
                  absl::InvalidArgumentError(absl::StrCat(
                      "update is longer than the announced ",
                      upload.metadata_.total_size_bytes(), " bytes")));
  }
  upload.check_.Update(bytes);
  if (upload.metadata_.masked()) {
    upload.masked_.append(bytes.data(), bytes.size());
    return absl::OkStatus();
  }
  absl::Status fed = upload.decoder_.Feed(bytes);
  if (!fed.ok()) return Refuse(upload.agent_id_, "invalid", "malformed", fed);
  return fed;
}

absl::StatusOr<v1::SubmitUpdateResponse> Coordinator::FinishUpload(
    std::unique_ptr<Upload> upload) {
  const v1::UpdateMetadata& m = upload->metadata_;
  if (upload->received_ != m.total_size_bytes()) {
    return Refuse(upload->agent_id_, "invalid", "truncated",
                  absl::InvalidArgumentError(absl::StrCat(
                      "update truncated: ", upload->received_, " of ",
                      m.total_size_bytes(), " bytes arrived")));
  }
  if (absl::Status checked = upload->check_.Verify(); !checked.ok()) {
    return Refuse(upload->agent_id_, "invalid", upload->check_.name(),
                  checked);
  }
  if (m.masked()) return AcceptMaskedInput(*upload);
  absl::StatusOr<ModelState> update = upload->decoder_.Finish();
  if (!update.ok()) {
    return Refuse(upload->agent_id_, "invalid", "malformed", update.status());
  }
  absl::StatusOr<v1::SubmitUpdateResponse> response =
      Accumulate(*upload, *update);
  KeepSpareBuffers(*std::move(update));
  return response;
}

absl::StatusOr<v1::SubmitUpdateResponse> Coordinator::Accumulate(
    const Upload& upload, ModelState& update) {
  const v1::UpdateMetadata& m = upload.metadata_;
  // The update holds the delta, then the strategy's extras.
  ModelState delta, extras;
  for (size_t i = 0; i < update.size(); ++i) {
    (i < schema_.size() ? delta : extras)
        .Add(std::move(update.mutable_tensor(i)));
  }
  FitResult result;
  result.agent_id = upload.agent_id_;
  result.num_examples = static_cast<double>(m.num_examples());
  result.num_steps = m.num_steps();
  result.metrics.num_examples = m.num_examples();
  result.metrics.num_steps = m.num_steps();
  result.metrics.loss = m.metrics().loss();
  result.metrics.accuracy = m.metrics().accuracy();
  result.metrics.seconds = m.metrics().train_seconds();
  result.declared_examples = DeclaredExamples(upload.agent_id_);
  result.delta = &delta;
  result.extras = extras.size() > 0 ? &extras : nullptr;
  // The buffers go back to `update`, to be decoded into again.
  absl::Cleanup give_back = [&] {
    size_t i = 0;
    for (TensorBuffer& t : delta.mutable_tensors()) {
      update.mutable_tensor(i++) = std::move(t);
    }
    for (TensorBuffer& t : extras.mutable_tensors()) {
      update.mutable_tensor(i++) = std::move(t);
    }
  };
  // The limits first, on the upload's own buffers (a clip scales them in
  // place), outside the round's lock.
  absl::StatusOr<double> clip = accumulator_.ApplyLimits(result);
  if (!clip.ok()) {
    return Refuse(upload.agent_id_, "invalid", UpdateLimitReason(clip.status()),
                  clip.status());
  }
  absl::MutexLock lock(&accumulate_mu_);
  absl::Status checked = accumulator_.Check(result);
  if (!checked.ok()) {
    return Refuse(upload.agent_id_,
                  absl::IsResourceExhausted(checked) ? "refused" : "invalid",
                  absl::IsResourceExhausted(checked) ? "limit" : "values",
                  checked);
  }
  v1::SubmitUpdateResponse response;
  absl::Status accepted = AcceptTaskResult(m, upload.agent_id_, result);
  if (absl::IsAlreadyExists(accepted)) {
    metrics_.Update("duplicate", "retry");
    response.set_duplicate(true);
    return response;
  }
  if (!accepted.ok()) {
    return Refuse(
        upload.agent_id_, absl::IsAborted(accepted) ? "stale" : "refused",
        absl::IsUnavailable(accepted) ? "buffer_full" : "round", accepted);
  }
  // Checked under the same lock: folded without checking again.
  accumulator_.AddChecked(result, upload.received_);
  if (*clip != 1.0) {
    FEDGE_LOG(INFO) << "update from " << upload.agent_id_
                    << " clipped to strategy.update_limits.update_norm_bound "
                       "(scaled by "
                    << *clip << ")";
  }
  metrics_.Update("accepted", *clip != 1.0 ? "clipped" : "");
  metrics_.bytes_received.IncrementBy(upload.received_);
  return response;
}

absl::Status Coordinator::Leave(const v1::LeaveRequest& request) {
  ASSIGN_OR_RETURN(Session session, FindSession(request.session_token()));
  {
    absl::MutexLock lock(&mu_);
    EndSessionLocked(session.agent_id);
  }
  absl::Status removed = engine_->RemoveAgent(session.agent_id);
  FEDGE_LOG(INFO) << "agent " << session.agent_id << " left";
  return absl::IsNotFound(removed) ? absl::OkStatus() : removed;
}

absl::Status Coordinator::Heartbeat(const v1::HeartbeatRequest& request) {
  ASSIGN_OR_RETURN(Session session, FindSession(request.session_token()));
  if (!engine_->Heartbeat(session.agent_id).ok()) {
    return absl::UnauthenticatedError(
        "agent was dropped for inactivity: join again");
  }
  return absl::OkStatus();
}

absl::Status Coordinator::ReportFailure(
    const v1::ReportFailureRequest& request) {
  ASSIGN_OR_RETURN(Session session, FindSession(request.session_token()));
  if (request.reason() == v1::FAILURE_REASON_UNSPECIFIED) {
    return absl::InvalidArgumentError("ReportFailure needs a reason");
  }
  absl::Status failed = FailTask(session.agent_id, request.round());
  if (absl::IsNotFound(failed)) {
    return absl::UnauthenticatedError(
        "agent was dropped for inactivity: join again");
  }
  RETURN_IF_ERROR(failed);
  const std::string reason = FailureReasonLabel(request.reason());
  if (NoteFailure(session.agent_id, request.round(),
                  request.detail().empty() ? reason : request.detail())) {
    metrics_.agent_failures.WithLabels({reason}).Increment();
  }
  return absl::OkStatus();
}

void Coordinator::BeginShutdown() {
  if (shutting_down_.exchange(true)) return;
  {
    // Parks after this point answer at once (Poll checks under mu_).
    absl::MutexLock lock(&mu_);
  }
  AnswerParkedPolls(/*expire_all=*/true);
  {
    absl::MutexLock lock(&secagg_mu_);  // SecAggStep parks no more.
  }
  AnswerSecAggWaiters(/*expire_all=*/true);
  {
    absl::MutexLock lock(&mu_);
    CloseEvaluationLocked();
  }
  std::deque<SlotWaiter> waiters;
  {
    absl::MutexLock lock(&slots_mu_);
    waiters.swap(slot_waiters_);
  }
  for (SlotWaiter& w : waiters) {
    w.fail(absl::UnavailableError("the coordinator is shutting down"));
  }
  if (engine_->CloseRoundNow().ok()) {
    for (const RoundOutcome& outcome : engine_->Tick()) {
      absl::StatusOr<bool> secure = CloseSecAggInputs(outcome);
      absl::Status s =
          secure.ok() && !*secure ? FinishRound(outcome) : secure.status();
      if (!s.ok()) FEDGE_LOG(ERROR) << "closing the last round: " << s;
    }
  }
  // A secure round whose inputs are being unmasked is abandoned: its
  // agents will not answer any more.
  if (absl::Status s = FinishSecAgg(); !s.ok()) {
    FEDGE_LOG(ERROR) << "closing the last round: " << s;
  }
  FailEdgeRounds(
      absl::UnavailableError("the edge aggregator is shutting down"));
}

std::vector<AgentInfo> Coordinator::AvailableAgentInfos() const {
  const std::vector<std::string> ids = engine_->AvailableAgents();
  std::vector<AgentInfo> infos;
  infos.reserve(ids.size());
  absl::MutexLock lock(&mu_);
  for (const std::string& id : ids) {
    auto it = agents_.find(id);
    AgentInfo unknown;
    unknown.id = id;
    infos.push_back(it != agents_.end() ? it->second : unknown);
  }
  return infos;
}

bool Coordinator::EvaluationRunning() {
  absl::MutexLock lock(&mu_);
  if (!eval_.has_value()) return false;
  if (clock_->Now() < eval_->deadline) return true;
  CloseEvaluationLocked();
  return false;
}

absl::Status Coordinator::MaybeStartRound() {
  // Federated evaluation of the last model runs first.
  if (EvaluationRunning() || pending_.has_value() || shutting_down_ ||
      paused_ || !engine_->CanStartRound()) {
    return absl::OkStatus();
  }
  {
    absl::MutexLock lock(&secagg_mu_);
    if (secagg_.has_value()) return absl::OkStatus();  // Still unmasking.
  }
  if (edge_mode_) return MaybeStartEdgeRound();
  const std::vector<AgentInfo> available = AvailableAgentInfos();
  const int64_t round = engine_->current_round() + 1;
  if (StopAtPrivacyBudget(round, available.size())) return absl::OkStatus();
  std::vector<FitInstruction> instructions =
      strategy_->ConfigureFit(round, available);
  std::vector<std::string> selected;
  {
    absl::MutexLock lock(&mu_);
    plans_.clear();
    for (FitInstruction& f : instructions) {
      selected.push_back(f.agent_id);
      plans_[f.agent_id] = f.plan;
    }
    num_available_ = static_cast<int64_t>(available.size());
  }
  absl::StatusOr<int64_t> started = engine_->StartRound(selected);
  // The roster may have changed meanwhile (an agent dropped): the next tick
  // tries again.
  if (!started.ok()) {
    FEDGE_LOG(WARNING) << "round " << round
                       << " not started: " << started.status();
    return absl::OkStatus();
  }
  StartSecAgg(*started, selected);
  return absl::OkStatus();
}

absl::Status Coordinator::Tick() {
  RETURN_IF_ERROR(PollPersistence());
  RETURN_IF_ERROR(SaveOperatorChanges());
  if (edge_mode_) AdvanceEdge();
  RETURN_IF_ERROR(AdvanceTasks());
  SweepUploads();
  // However the federation ended (its last round; an operator's stop or
  // set-rounds, or the privacy budget, between rounds; a resumed federation
  // that was already complete), agents are told so once its last model is
  // published and nothing else is pending.
  if (!finished_ && done() && Settled()) finished_ = true;
  const EngineSnapshot e = engine_->Snapshot();
  metrics_.agents_live.Set(static_cast<double>(e.agents.size()));
  metrics_.agents_selected.Set(static_cast<double>(
      e.pending.size() + e.reported.size() + e.failed.size() +
      (fedbuff_ != nullptr ? fedbuff_->num_in_flight() : 0)));
  metrics_.current_round.Set(static_cast<double>(e.current_round));
  if (engine_->state() == RoundState::kInProgress &&
      engine_->current_round() != started_round_) {
    started_round_ = engine_->current_round();
    round_start_ = clock_->Now();
  }
  AnswerParkedPolls(/*expire_all=*/false);
  PruneSessions();
  return absl::OkStatus();
}

bool Coordinator::done() const { return engine_->state() == RoundState::kDone; }

bool Coordinator::AllAgentsToldFinished() const {
  const std::vector<std::string> roster = engine_->AvailableAgents();
  absl::MutexLock lock(&mu_);
  for (const std::string& id : roster) {
    auto it = told_finished_.find(id);
    if (it == told_finished_.end() || it->second < 2) return false;
  }
  return true;
}

}  // namespace fedge
