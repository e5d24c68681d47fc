#include "edge_agent/agent.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/dp.h"
#include "common/fl_config.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

absl::Status ValidateOptions(const AgentOptions& o) {
  if (o.agent_id.empty()) return absl::InvalidArgumentError("empty agent_id");
  if (o.initial_backoff <= absl::ZeroDuration() ||
      o.max_backoff < o.initial_backoff) {
    return absl::InvalidArgumentError(
        "backoff: need 0 < initial_backoff <= max_backoff");
  }
  if (o.give_up_after < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("give_up_after must be >= 0");
  }
  if (!(o.compute_slowdown >= 1.0) || !std::isfinite(o.compute_slowdown)) {
    return absl::InvalidArgumentError("compute_slowdown must be >= 1");
  }
  if (!(o.dropout_probability >= 0.0 && o.dropout_probability <= 1.0)) {
    return absl::InvalidArgumentError("dropout_probability must be in [0, 1]");
  }
  if (o.eligibility.needs_readings() && o.device == nullptr) {
    return absl::InvalidArgumentError(
        "the eligibility policy needs device readings: set device");
  }
  if (o.eligibility.check_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("check_interval must be > 0");
  }
  if (o.memory_budget_bytes < 0 || !(o.memory_model_factor >= 1.0) ||
      o.local_data_bytes < 0) {
    return absl::InvalidArgumentError(
        "memory: need memory_budget_bytes >= 0, memory_model_factor >= 1 "
        "and local_data_bytes >= 0");
  }
  return absl::OkStatus();
}

// Optimizer steps `plan` takes on `num_examples` examples.
int64_t PlannedSteps(const v1::TrainPlanProto& plan, int64_t num_examples) {
  const int64_t batch = std::max<int64_t>(1, plan.batch_size());
  int64_t steps =
      std::max(1, plan.epochs()) * ((num_examples + batch - 1) / batch);
  if (plan.max_steps() > 0) steps = std::min(steps, plan.max_steps());
  return steps;
}

std::string MiB(double bytes) {
  return absl::StrFormat("%.1f MiB", bytes / (1 << 20));
}

}  // namespace

const char* AgentStateName(AgentState state) {
  switch (state) {
    case AgentState::kNotJoined:
      return "NOT_JOINED";
    case AgentState::kJoined:
      return "JOINED";
    case AgentState::kDone:
      return "DONE";
  }
  return "?";
}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(
    AgentOptions options, CoordinatorClient* client,
    TrainerFactory trainer_factory, ModelCache* cache, const Clock* clock,
    Sleeper sleep) {
  RETURN_IF_ERROR(ValidateOptions(options));
  if (client == nullptr || !trainer_factory || cache == nullptr ||
      clock == nullptr || !sleep) {
    return absl::InvalidArgumentError("Agent::Create: missing collaborator");
  }
  return std::unique_ptr<Agent>(new Agent(std::move(options), client,
                                          std::move(trainer_factory), cache,
                                          clock, std::move(sleep)));
}

Agent::Agent(AgentOptions options, CoordinatorClient* client,
             TrainerFactory trainer_factory, ModelCache* cache,
             const Clock* clock, Sleeper sleep)
    : options_(std::move(options)),
      client_(client),
      trainer_factory_(std::move(trainer_factory)),
      cache_(cache),
      clock_(clock),
      sleep_(std::move(sleep)),
      rng_(options_.seed),
      backoff_(options_.initial_backoff, options_.max_backoff) {}

void Agent::TransitionTo(AgentState next) {
  const bool legal =
      (state_ == AgentState::kNotJoined && next == AgentState::kJoined) ||
      (state_ == AgentState::kJoined && next == AgentState::kNotJoined) ||
      (state_ != AgentState::kDone && next == AgentState::kDone);
  FEDGE_CHECK(legal) << "illegal agent transition " << AgentStateName(state_)
                     << " -> " << AgentStateName(next);
  state_ = next;
}

absl::Status Agent::Run() {
  FEDGE_CHECK(state_ == AgentState::kNotJoined) << "Run() called twice";
  last_contact_ = clock_->Now();
  client_->SetConnectBudget(GiveUpLeft());
  while (state_ != AgentState::kDone) {
    if (stop_requested_.load()) {
      FEDGE_LOG(INFO) << "stopping";
      LeaveSession();
      break;
    }
    absl::Status s =
        state_ == AgentState::kNotJoined ? TryJoin() : PollAndAct();
    if (!s.ok()) {
      LeaveSession();
      if (state_ != AgentState::kDone) TransitionTo(AgentState::kDone);
      CacheHeldModelIfNewest();
      return s;
    }
  }
  if (state_ != AgentState::kDone) TransitionTo(AgentState::kDone);
  CacheHeldModelIfNewest();
  return absl::OkStatus();
}

void Agent::CacheHeldModelIfNewest() {
  if (held_.has_value() && held_->ref.version > cache_->LatestVersion()) {
    CacheHeldModel();
  }
}

absl::Status Agent::TryJoin() {
  v1::JoinRequest request;
  request.set_agent_id(options_.agent_id);
  request.set_num_examples(options_.num_examples);
  for (const std::string& a : options_.architectures) {
    request.add_architectures(a);
  }
  request.set_agent_version(options_.agent_version);
  request.set_device_class(options_.device_class);
  request.set_examples_per_second(options_.examples_per_second);
  options_.join_credentials.Apply(request);
  absl::StatusOr<v1::JoinResponse> response = client_->Join(request);
  if (!response.ok()) {
    if (IsJoinRefusal(response.status().code())) {
      return Annotate(response.status(), "the coordinator refused Join");
    }
    return BackOff("join", response.status());
  }
  OnContact();
  if (absl::Status kept = options_.join_credentials.Remember(*response);
      !kept.ok()) {
    // Without the key the next Join needs the token again: say so.
    FEDGE_LOG(WARNING) << "could not keep the agent key: " << kept;
  }
  return StartSession(*std::move(response));
}

absl::Status Agent::StartSession(v1::JoinResponse response) {
  if (absl::Status s = cache_->PutSpec(response.model()); !s.ok()) {
    FEDGE_LOG(WARNING) << "could not record the model spec: " << s.message();
  }
  absl::StatusOr<std::unique_ptr<LocalTrainer>> trainer =
      trainer_factory_(response);
  if (!trainer.ok()) {
    client_->Leave(response.session_token()).IgnoreError();  // Best effort.
    return Annotate(trainer.status(), "cannot train the federation's model");
  }
  trainer_ = *std::move(trainer);
  if (response.model().SerializeAsString() !=
      session_.model().SerializeAsString()) {
    held_.reset();  // Another model: its versions are not those held.
  }
  session_ = std::move(response);
  handled_rounds_.clear();
  evaluated_rounds_.clear();
  refresh_failed_version_ = -1;
  ++stats_.joins;
  Observe([](AgentMetrics& m) { m.joins.Increment(); });
  TransitionTo(AgentState::kJoined);
  if (session_.agent_id().empty()) session_.set_agent_id(options_.agent_id);
  FEDGE_LOG(INFO) << "joined as " << session_.agent_id() << ": model "
                  << session_.model().architecture()
                  << (session_.partition_index() >= 0 &&
                              session_.num_partitions() > 0
                          ? absl::StrCat(", partition ",
                                         session_.partition_index(), " of ",
                                         session_.num_partitions())
                          : std::string());
  return absl::OkStatus();
}

void Agent::LeaveSession() {
  if (state_ != AgentState::kJoined) return;
  absl::Status s = client_->Leave(session_.session_token());
  if (!s.ok() && !IsSessionLost(s.code())) {
    FEDGE_LOG(WARNING) << "leave failed: " << s;
  }
  TransitionTo(AgentState::kDone);
}

absl::Status Agent::PollAndAct() {
  v1::PollRequest request;
  request.set_session_token(session_.session_token());
  request.set_cached_model_version(
      std::max(cache_->LatestVersion(),
               held_.has_value() ? held_->ref.version : int64_t{-1}));
  if (const Eligibility& e = CheckConditions(false); !e.eligible()) {
    request.set_paused_reason(e.detail);
  }
  absl::StatusOr<v1::PollResponse> poll = client_->Poll(request);
  if (!poll.ok()) return HandleCallError("poll", poll.status());
  OnContact();
  // Any answer but the kept training's task: its round is over for us.
  DiscardPausedUnless(poll->has_train() ? &poll->train() : nullptr);
  if (!poll->has_train() && !poll->has_evaluate()) RefreshLatestModel(*poll);
  switch (poll->action_case()) {
    case v1::PollResponse::kTrain:
      return HandleTask(poll->train());
    case v1::PollResponse::kEvaluate:
      return HandleEvaluation(poll->evaluate());
    case v1::PollResponse::kWaitRetryAfterMs:
      sleep_(absl::Milliseconds(
          std::max<int64_t>(0, poll->wait_retry_after_ms())));
      return absl::OkStatus();
    case v1::PollResponse::kFinished:
      return OnFinished();
    case v1::PollResponse::ACTION_NOT_SET:
      break;
  }
  sleep_(options_.initial_backoff);  // An empty answer: do not spin.
  return absl::OkStatus();
}

absl::Status Agent::OnFinished() {
  if (!finished_logged_) {
    FEDGE_LOG(INFO) << "the federation finished";
    finished_logged_ = true;
  }
  if (options_.exit_when_finished) {
    LeaveSession();
    return absl::OkStatus();
  }
  const absl::Duration heartbeat =
      absl::Milliseconds(session_.heartbeat_interval_ms());
  sleep_(heartbeat > absl::ZeroDuration() ? heartbeat / 2
                                          : options_.max_backoff);
  return absl::OkStatus();
}

absl::Time Agent::DeadlineIn(int64_t remaining_ms) const {
  // On this device's monotonic clock, from when the task arrived.
  return remaining_ms > 0 ? clock_->Now() + absl::Milliseconds(remaining_ms)
                          : absl::InfiniteFuture();
}

std::unique_ptr<HeartbeatThread> Agent::StartHeartbeat() {
  const absl::Duration interval =
      absl::Milliseconds(session_.heartbeat_interval_ms());
  if (!options_.heartbeat_while_busy || interval <= absl::ZeroDuration()) {
    return nullptr;
  }
  return std::make_unique<HeartbeatThread>(client_, session_.session_token(),
                                           interval);
}

absl::Status Agent::HandleTask(const v1::TrainTask& task) {
  if (handled_rounds_.contains(task.round())) {
    sleep_(options_.initial_backoff);  // Already answered: do not spin.
    return absl::OkStatus();
  }
  task_deadline_ = DeadlineIn(task.deadline_remaining_ms());
  if (DropsOut(task.round())) {
    handled_rounds_.insert(task.round());
    ++stats_.rounds_skipped;
    FEDGE_LOG(INFO) << "round " << task.round() << ": skipped (dropout)";
    return absl::OkStatus();
  }
  const ModelRef ref{task.model_version(),
                     task.model_sha256(),
                     task.model_encoding(),
                     {task.model_signing_key_id(), task.model_signature()}};
  if (absl::Status signature =
          CheckSignature(ref, absl::StrCat("round ", task.round()));
      !signature.ok()) {
    RETURN_IF_ERROR(GiveUp(task, v1::FAILURE_REASON_MODEL_SIGNATURE,
                           std::string(signature.message())));
    // The next round's model is likely signed the same way: do not make
    // the coordinator run (and abandon) rounds as fast as it can.
    sleep_(options_.max_backoff);
    return absl::OkStatus();
  }
  if (absl::Status memory = CheckMemory(task); !memory.ok()) {
    return GiveUp(task, v1::FAILURE_REASON_MEMORY,
                  std::string(memory.message()));
  }
  if (const Eligibility& e = CheckConditions(false); !e.eligible()) {
    return HoldBack(task, e);
  }
  // Stays live while it fetches, trains and uploads.
  std::unique_ptr<HeartbeatThread> heartbeat = StartHeartbeat();
  std::optional<SecureRound> secure;
  if (task.has_secure_aggregation()) {
    absl::StatusOr<SecureRound> joined = JoinSecureRound(task);
    if (!joined.ok()) {
      handled_rounds_.insert(task.round());
      if (IsSessionLost(joined.status().code())) {
        return HandleCallError("secure aggregation", joined.status());
      }
      DropUpdate(absl::StrCat("round ", task.round(), ": secure aggregation: ",
                              joined.status().ToString()));
      return absl::OkStatus();
    }
    secure = *std::move(joined);
  }
  const absl::Time fetch_start = clock_->Now();
  absl::StatusOr<const ModelState*> global = GlobalModel(ref);
  fetch_seconds_ = absl::ToDoubleSeconds(clock_->Now() - fetch_start);
  if (!global.ok()) {
    if (global.status().code() != absl::StatusCode::kNotFound) {
      return HandleCallError("fetch model", global.status());
    }
    handled_rounds_.insert(task.round());
    FEDGE_LOG(WARNING) << "round " << task.round() << ": dropped, "
                       << global.status().message();
    return absl::OkStatus();
  }
  absl::StatusOr<TrainOutput> output = Train(task, **global);
  if (output.ok() && output->interrupted && secure.has_value()) {
    // A session does not wait for a resumed training: its keys are this
    // round's only.
    paused_.reset();
    return GiveUp(task, v1::FAILURE_REASON_SECURE_AGGREGATION,
                  "training interrupted in a secure-aggregation round");
  }
  if (output.ok() && output->interrupted) {
    CacheHeldModel();  // For resuming, should another model be held.
    return OnInterrupted(task, *std::move(output));
  }
  handled_rounds_.insert(task.round());
  if (!output.ok()) {
    DropUpdate(absl::StrCat(
        "round ", task.round(),
        ": training failed, no update: ", output.status().ToString()));
    return absl::OkStatus();
  }
  absl::Status submitted = secure.has_value()
                               ? SubmitSecure(task, *output, *secure)
                               : Submit(task, *output);
  // Cached after the upload, off the round's critical path.
  CacheHeldModelIfDue();
  return submitted;
}

bool Agent::DropsOut(int64_t round) {
  if (dropout_rolled_round_ != round) {  // Decided once per round.
    dropout_rolled_round_ = round;
    skip_round_ = rng_.UniformDouble() < options_.dropout_probability;
  }
  return skip_round_;
}

bool Agent::Holds(const ModelRef& ref) const {
  return held_.has_value() && held_->ref.version == ref.version &&
         held_->ref.sha256_hex == ref.sha256_hex;
}

absl::StatusOr<const ModelState*> Agent::GlobalModel(const ModelRef& ref) {
  const int64_t version = ref.version;
  if (!Holds(ref)) {
    held_.reset();  // One model in memory, also while the next one arrives.
    absl::StatusOr<ModelState> cached = cache_->Get(version, ref.sha256_hex);
    if (cached.ok()) {
      held_ = HeldModel{ref, *std::move(cached), /*cached=*/true};
    } else {
      ASSIGN_OR_RETURN(ModelState model,
                       client_->FetchModel(session_.session_token(), version,
                                           ref.sha256_hex));
      OnContact();
      ++stats_.models_fetched;
      Observe([&](AgentMetrics& m) {
        m.bytes_received.IncrementBy(EncodedSize(model));
      });
      held_ = HeldModel{ref, std::move(model), /*cached=*/false};
    }
  }
  Observe([&](AgentMetrics& m) {
    m.model_version.Set(
        std::max(m.model_version.Value(), static_cast<double>(version)));
  });
  return &held_->model;
}

absl::Status Agent::CheckSignature(const ModelRef& ref,
                                   absl::string_view what) {
  if (options_.model_verifier == nullptr) return absl::OkStatus();
  absl::Status s = options_.model_verifier->Verify(
      ref.version, session_.model(), ref.sha256_hex, ref.signature);
  if (s.ok()) return s;
  ++stats_.models_refused;
  FEDGE_LOG(WARNING) << what << ": refusing model version " << ref.version
                     << " (sha256 " << ref.sha256_hex.substr(0, 16)
                     << "): " << s.message();
  return s;
}

void Agent::CacheHeldModel() {
  if (!held_.has_value() || held_->cached) return;
  last_cached_ = clock_->Now();
  const ModelRef& ref = held_->ref;
  absl::StatusOr<std::string> s = cache_->Put(
      ref.version, held_->model, {ref.encoding, ref.sha256_hex, ref.signature});
  if (!s.ok()) {
    FEDGE_LOG(WARNING) << "could not cache model version " << ref.version
                       << ": " << s.status().message();
    return;
  }
  held_->cached = true;
}

void Agent::CacheHeldModelIfDue() {
  if (clock_->Now() - last_cached_ >= options_.model_cache_interval) {
    CacheHeldModel();
  }
}

absl::StatusOr<ScaffoldClient> Agent::LoadScaffold(const ModelSchema& model) {
  absl::StatusOr<ModelState> saved = cache_->LoadState("scaffold_control");
  if (saved.ok()) {
    absl::StatusOr<ScaffoldClient> client =
        ScaffoldClient::Create(model, *std::move(saved));
    if (client.ok()) return client;
    FEDGE_LOG(WARNING) << "the saved SCAFFOLD control variate does not fit "
                          "this model, starting from zero: "
                       << client.status().message();
  } else if (!absl::IsNotFound(saved.status())) {
    FEDGE_LOG(WARNING) << "cannot read the SCAFFOLD control variate, "
                          "starting from zero: "
                       << saved.status().message();
  }
  return ScaffoldClient::Create(model, ModelState());
}

absl::StatusOr<TrainOutput> Agent::Train(const v1::TrainTask& task,
                                         const ModelState& global) {
  TrainPlan plan = ToTrainPlan(task.plan());
  plan.should_stop = [this] { return ShouldStop(); };
  if (paused_.has_value()) {
    plan.resume_from = &paused_->continuation;
    ++stats_.trainings_resumed;
    FEDGE_LOG(INFO) << "round " << task.round() << ": resuming the training at "
                    << "step " << paused_->continuation.progress.num_steps;
  }
  own_load_.Update(clock_->Now(), 0);  // Idle until now.
  absl::StatusOr<TrainOutput> result;
  if (task.client_algorithm().empty()) {
    result = trainer_->Train(global, plan, {});
  } else if (task.client_algorithm() == "scaffold") {
    result = TrainScaffold(global, plan);
  } else {
    result = absl::UnimplementedError(
        absl::StrCat("this agent does not run the client algorithm '",
                     task.client_algorithm(), "' (upgrade fedge-agent)"));
  }
  own_load_.Update(clock_->Now(), options_.training_threads);
  ASSIGN_OR_RETURN(TrainOutput output, std::move(result));
  if (output.interrupted) return output;
  paused_.reset();
  if (plan.dp_clip_norm > 0 || plan.dp_noise_stddev > 0) {
    // Differential privacy (docs/privacy.md): clipped, and for local DP
    // noised from a fresh secret seed, before anything leaves the device.
    PrivatizeUpdate(output.delta, plan.dp_clip_norm, plan.dp_noise_stddev,
                    SecretSeed());
  }
  ++stats_.rounds_trained;
  Observe([&](AgentMetrics& m) {
    m.rounds_trained.Increment();
    m.train_seconds.IncrementBy(std::max(0.0, output.metrics.seconds));
    m.last_round.Set(static_cast<double>(task.round()));
  });
  last_training_time_ = absl::Seconds(options_.compute_slowdown *
                                      std::max(0.0, output.metrics.seconds));
  if (options_.compute_slowdown > 1.0) {
    sleep_(absl::Seconds((options_.compute_slowdown - 1.0) *
                         std::max(0.0, output.metrics.seconds)));
  }
  return output;
}

absl::StatusOr<TrainOutput> Agent::TrainScaffold(const ModelState& global,
                                                 TrainPlan plan) {
  // The download is the model, then the server's control variate c.
  ModelState model, control;
  RETURN_IF_ERROR(SplitScaffoldDownload(global.Clone(), &model, &control));
  ASSIGN_OR_RETURN(ScaffoldClient client, LoadScaffold(SchemaOf(model)));
  ASSIGN_OR_RETURN(ModelState correction, client.Correction(control));
  plan.gradient_correction = &correction;
  ASSIGN_OR_RETURN(TrainOutput output, trainer_->Train(model, plan, {}));
  if (output.interrupted) return output;
  ASSIGN_OR_RETURN(ModelState dc,
                   client.Finish(output.delta, control,
                                 output.metrics.num_steps, plan.learning_rate));
  // Kept across rounds and restarts.
  if (absl::Status s = cache_->SaveState("scaffold_control", client.control());
      !s.ok()) {
    FEDGE_LOG(WARNING) << "cannot save the SCAFFOLD control variate: " << s;
  }
  for (TensorBuffer& t : dc.mutable_tensors()) output.delta.Add(std::move(t));
  return output;
}

absl::Status Agent::HandleEvaluation(const v1::EvaluateTask& task) {
  if (evaluated_rounds_.contains(task.round())) {
    sleep_(options_.initial_backoff);  // Already answered: do not spin.
    return absl::OkStatus();
  }
  task_deadline_ = DeadlineIn(task.deadline_remaining_ms());
  const ModelRef ref{task.model_version(),
                     task.model_sha256(),
                     task.model_encoding(),
                     {task.model_signing_key_id(), task.model_signature()}};
  if (!CheckSignature(ref, absl::StrCat("round ", task.round(), " evaluation"))
           .ok()) {
    evaluated_rounds_.insert(task.round());
    return absl::OkStatus();
  }
  std::unique_ptr<HeartbeatThread> heartbeat = StartHeartbeat();
  absl::StatusOr<const ModelState*> global = GlobalModel(ref);
  if (!global.ok()) {
    if (global.status().code() != absl::StatusCode::kNotFound) {
      return HandleCallError("fetch model", global.status());
    }
    evaluated_rounds_.insert(task.round());
    return absl::OkStatus();
  }
  CacheHeldModelIfDue();
  evaluated_rounds_.insert(task.round());
  absl::StatusOr<EvalMetrics> metrics =
      trainer_->Evaluate(StripScaffoldTensors((*global)->Clone()));
  if (!metrics.ok()) {
    FEDGE_LOG(WARNING) << "round " << task.round()
                       << ": evaluation failed: " << metrics.status();
    return absl::OkStatus();
  }
  return SubmitEvaluation(task, *metrics);
}

absl::Status Agent::SubmitEvaluation(const v1::EvaluateTask& task,
                                     const EvalMetrics& metrics) {
  v1::SubmitEvaluationRequest request;
  request.set_session_token(session_.session_token());
  request.set_round(task.round());
  request.set_model_version(task.model_version());
  request.set_num_examples(metrics.num_examples);
  request.set_loss(metrics.loss);
  request.set_accuracy(metrics.accuracy);
  while (true) {
    absl::Status s = client_->SubmitEvaluation(request);
    if (s.ok()) {
      OnContact();
      FEDGE_LOG(INFO) << absl::StrFormat(
          "round %d: evaluated model %d on %d local examples: accuracy "
          "%.4f, loss %.4f",
          task.round(), task.model_version(), metrics.num_examples,
          metrics.accuracy, metrics.loss);
      return absl::OkStatus();
    }
    if (IsSessionLost(s.code()) || IsRefusal(s.code()) ||
        stop_requested_.load() || clock_->Now() >= task_deadline_) {
      FEDGE_LOG(WARNING) << "round " << task.round()
                         << ": evaluation not delivered: " << s;
      if (IsSessionLost(s.code())) TransitionTo(AgentState::kNotJoined);
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(BackOff("submit evaluation", s));
  }
}

absl::Status Agent::Submit(const v1::TrainTask& task,
                           const TrainOutput& output) {
  const v1::UpdateMetadata metadata = MakeMetadata(task, output.metrics);
  const TrainMetrics& m = output.metrics;
  std::string trained = absl::StrFormat(
      "round %d: model in %.3f s, trained %d examples in %.3f s, loss %.4g",
      task.round(), fetch_seconds_, m.num_examples, m.seconds, m.loss);
  // A lossy encoding, with top-k's error feedback kept in the state dir
  // (what was not sent is added to the next update). Once per round: every
  // retry sends the same bytes.
  const EncodingOptions encoding = ToTrainPlan(task.plan()).update_encoding;
  std::optional<EncodedModel> encoded;
  if (encoding.kind != UpdateEncoding::kFp32) {
    absl::StatusOr<ModelState> residual = cache_->LoadState("update_residual");
    ModelState left = residual.ok() ? *std::move(residual) : ModelState();
    absl::StatusOr<EncodedModel> e =
        EncodeWithErrorFeedback(output.delta, encoding, &left);
    if (!e.ok()) {
      DropUpdate(absl::StrCat(
          trained, ", cannot encode the update: ", e.status().ToString()));
      return absl::OkStatus();
    }
    encoded = *std::move(e);
    if (encoding.kind == UpdateEncoding::kTopK) {
      absl::Status saved = cache_->SaveState("update_residual", left);
      if (!saved.ok()) {
        FEDGE_LOG(WARNING) << "cannot keep the error-feedback residual: "
                           << saved;
      }
    }
    absl::StrAppend(&trained, ", sent as ", UpdateEncodingName(encoding.kind),
                    " (", EncodedSize(*encoded), " of ",
                    EncodedSize(output.delta), " bytes)");
  }
  const absl::Time submit_start = clock_->Now();
  ASSIGN_OR_RETURN(std::optional<v1::SubmitUpdateResponse> accepted,
                   UploadUpdate(
                       [&] {
                         return client_->SubmitUpdate(
                             metadata, output.delta,
                             encoded.has_value() ? &*encoded : nullptr);
                       },
                       encoded.has_value() ? EncodedSize(*encoded)
                                           : EncodedSize(output.delta),
                       absl::StrCat(trained, ", update dropped: ")));
  if (!accepted.has_value()) return absl::OkStatus();
  FEDGE_LOG(INFO) << trained << ", submitted in "
                  << absl::StrFormat(
                         "%.3f s",
                         absl::ToDoubleSeconds(clock_->Now() - submit_start))
                  << (accepted->duplicate() ? " (duplicate)" : "");
  return absl::OkStatus();
}

absl::StatusOr<std::optional<v1::SubmitUpdateResponse>> Agent::UploadUpdate(
    const std::function<absl::StatusOr<v1::SubmitUpdateResponse>()>& send,
    int64_t bytes, absl::string_view dropped) {
  while (true) {
    absl::StatusOr<v1::SubmitUpdateResponse> response = send();
    if (response.ok()) {
      OnContact();
      ++stats_.updates_submitted;
      Observe([&](AgentMetrics& m) {
        m.updates_accepted.Increment();
        m.bytes_sent.IncrementBy(bytes);
      });
      return std::optional<v1::SubmitUpdateResponse>(*std::move(response));
    }
    const absl::StatusCode code = response.status().code();
    if (IsSessionLost(code) || IsRefusal(code) || stop_requested_.load() ||
        clock_->Now() >= task_deadline_) {
      DropUpdate(absl::StrCat(dropped, response.status().ToString()));
      if (IsSessionLost(code)) TransitionTo(AgentState::kNotJoined);
      return std::optional<v1::SubmitUpdateResponse>();
    }
    RETURN_IF_ERROR(BackOff("submit", response.status()));
  }
}

v1::UpdateMetadata Agent::MakeMetadata(const v1::TrainTask& task,
                                       const TrainMetrics& metrics) {
  v1::UpdateMetadata metadata;
  metadata.set_session_token(session_.session_token());
  metadata.set_round(task.round());
  metadata.set_base_version(task.model_version());
  metadata.set_upload_id(NewUploadId());
  metadata.set_num_examples(metrics.num_examples);
  metadata.set_num_steps(metrics.num_steps);
  metadata.mutable_metrics()->set_loss(metrics.loss);
  metadata.mutable_metrics()->set_accuracy(metrics.accuracy);
  metadata.mutable_metrics()->set_train_seconds(metrics.seconds);
  return metadata;
}

void Agent::DropUpdate(const std::string& message) {
  ++stats_.updates_dropped;
  Observe([](AgentMetrics& m) { m.updates_dropped.Increment(); });
  FEDGE_LOG(WARNING) << message;
}

void Agent::RefreshLatestModel(const v1::PollResponse& poll) {
  const int64_t version = poll.latest_model_version();
  const std::string& sha = poll.latest_model_sha256();
  if (sha.empty() || version < 0) return;  // Nothing announced.
  // Cached versions newer than the coordinator's newest are not its own
  // (its history restarted).
  cache_->DropNewerThan(version);
  if (held_.has_value() && held_->ref.version > version) held_.reset();
  if (!options_.keep_latest_model || cache_->Has(version, sha)) return;
  const ModelRef ref{
      version,
      sha,
      poll.latest_model_encoding(),
      {poll.latest_model_signing_key_id(), poll.latest_model_signature()}};
  if (Holds(ref)) {
    // The model of the last task (verified then): no download; it goes to
    // disk once model_cache_interval has passed since the last write.
    CacheHeldModelIfDue();
    return;
  }
  if (version == refresh_failed_version_ || !eligibility_.eligible()) {
    return;  // (The conditions hold downloads back too: metered networks.)
  }
  if (!CheckSignature(ref, "newest global model").ok()) {
    refresh_failed_version_ = version;  // Refused once, not at every poll.
    return;
  }
  std::unique_ptr<HeartbeatThread> heartbeat = StartHeartbeat();
  absl::StatusOr<const ModelState*> model = GlobalModel(ref);
  if (model.ok()) {
    CacheHeldModel();  // Fetched while idle: kept at once.
    return;
  }
  FEDGE_LOG(WARNING) << "could not fetch the newest global model (version "
                     << version
                     << ") for offline prediction: " << model.status();
  if (!IsUnreachable(model.status().code())) refresh_failed_version_ = version;
}

const Eligibility& Agent::CheckConditions(bool training) {
  const EligibilityPolicy& policy = options_.eligibility;
  const absl::Time now = clock_->Now();
  if (!policy.any() || now - conditions_read_ < policy.check_interval) {
    return eligibility_;
  }
  own_load_.Update(now, training ? options_.training_threads : 0);
  absl::StatusOr<DeviceStatus> readings = DeviceStatus();
  if (policy.needs_readings()) readings = options_.device->Read();
  Eligibility e = EvaluateEligibility(
      policy, readings, LocalMinuteOfDay(clock_->WallNow(), options_.time_zone),
      own_load_.Value(now));
  if (e.detail != eligibility_.detail) {
    FEDGE_LOG(INFO) << "device conditions: "
                    << (e.eligible() ? "met, training allowed"
                                     : e.detail + ", not training");
  }
  eligibility_ = std::move(e);
  conditions_read_ = now;
  return eligibility_;
}

bool Agent::ShouldStop() {
  return stop_requested_.load() || !CheckConditions(true).eligible();
}

absl::Duration Agent::EstimatedTrainingTime(const v1::TrainTask& task) const {
  if (!paused_.has_value()) return last_training_time_;
  const TrainProgress& p = paused_->continuation.progress;
  if (p.num_steps <= 0) return last_training_time_;
  const int64_t planned =
      PlannedSteps(task.plan(), static_cast<int64_t>(p.order.size()));
  const double left = std::max<int64_t>(0, planned - p.num_steps);
  return absl::Seconds(options_.compute_slowdown * p.seconds * left /
                       p.num_steps);
}

absl::Status Agent::HoldBack(const v1::TrainTask& task, const Eligibility& e) {
  if (stop_requested_.load()) return absl::OkStatus();
  absl::Duration pause = options_.eligibility.check_interval;
  if (session_.heartbeat_interval_ms() > 0) {
    pause = std::min(pause,
                     absl::Milliseconds(session_.heartbeat_interval_ms()) / 2);
  }
  // The next check comes after the pause and a poll, which can take much
  // longer than the pause on a loaded device: the margin is the longest
  // gap between this round's checks so far (at first, the pause), so that
  // the round is given up while the report is still in time.
  const absl::Time now = clock_->Now();
  hold_check_gap_ = held_back_round_ == task.round()
                        ? std::max(hold_check_gap_, now - last_hold_check_)
                        : pause;
  last_hold_check_ = now;
  if (now + EstimatedTrainingTime(task) + hold_check_gap_ >= task_deadline_) {
    return GiveUp(task, e.reason, e.detail);
  }
  if (held_back_round_ != task.round()) {
    held_back_round_ = task.round();
    ++stats_.rounds_held_back;
    FEDGE_LOG(INFO) << "round " << task.round() << ": waiting to train ("
                    << e.detail << ")";
  }
  sleep_(pause);
  return absl::OkStatus();
}

absl::Status Agent::OnInterrupted(const v1::TrainTask& task,
                                  TrainOutput output) {
  ++stats_.trainings_interrupted;
  Observe([](AgentMetrics& m) { m.trainings_interrupted.Increment(); });
  const TrainProgress& p = output.continuation.progress;
  FEDGE_LOG(INFO) << "round " << task.round() << ": training stopped at step "
                  << p.num_steps << " of "
                  << PlannedSteps(task.plan(),
                                  static_cast<int64_t>(p.order.size()))
                  << " ("
                  << (stop_requested_.load() ? "stopping" : eligibility_.detail)
                  << "); kept to resume";
  paused_ = PausedTraining{task.round(), task.model_version(),
                           task.plan().seed(), std::move(output.continuation)};
  return HoldBack(task, eligibility_);
}

void Agent::DiscardPausedUnless(const v1::TrainTask* task) {
  if (!paused_.has_value()) return;
  if (task != nullptr && task->round() == paused_->round &&
      task->model_version() == paused_->model_version &&
      task->plan().seed() == paused_->seed) {
    return;
  }
  ++stats_.partials_discarded;
  FEDGE_LOG(INFO) << "round " << paused_->round
                  << " is over for this agent: its interrupted training "
                     "is discarded";
  paused_.reset();
}

absl::Status Agent::CheckMemory(const v1::TrainTask& task) const {
  if (options_.memory_budget_bytes <= 0) return absl::OkStatus();
  const double model = static_cast<double>(task.model_size_bytes());
  const double estimate = model * options_.memory_model_factor +
                          static_cast<double>(options_.local_data_bytes);
  if (estimate <= static_cast<double>(options_.memory_budget_bytes)) {
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "memory: the task needs about ", MiB(estimate), " (model ", MiB(model),
      " x ", options_.memory_model_factor, " + local data ",
      MiB(static_cast<double>(options_.local_data_bytes)),
      "), over the budget of ",
      MiB(static_cast<double>(options_.memory_budget_bytes))));
}

absl::Status Agent::GiveUp(const v1::TrainTask& task, v1::FailureReason reason,
                           const std::string& detail) {
  handled_rounds_.insert(task.round());
  paused_.reset();
  ++stats_.rounds_given_up;
  Observe([](AgentMetrics& m) { m.rounds_given_up.Increment(); });
  FEDGE_LOG(WARNING) << "round " << task.round() << ": giving up (" << detail
                     << ")";
  v1::ReportFailureRequest request;
  request.set_session_token(session_.session_token());
  request.set_round(task.round());
  request.set_reason(reason);
  request.set_detail(detail);
  const absl::Status s = client_->ReportFailure(request);
  if (s.ok()) {
    OnContact();
  } else if (IsSessionLost(s.code())) {
    TransitionTo(AgentState::kNotJoined);
  } else {
    FEDGE_LOG(INFO) << "round " << task.round()
                    << ": the coordinator was not told: " << s;
  }
  return absl::OkStatus();
}

absl::Status Agent::HandleCallError(absl::string_view what,
                                    const absl::Status& error) {
  if (IsSessionLost(error.code())) {
    FEDGE_LOG(INFO) << what << ": session lost (" << error.message()
                    << "), joining again";
    TransitionTo(AgentState::kNotJoined);
    return absl::OkStatus();
  }
  return BackOff(what, error);
}

absl::Status Agent::BackOff(absl::string_view what, const absl::Status& error) {
  ++stats_.call_failures;
  if (!IsUnreachable(error.code())) {
    last_contact_ = clock_->Now();  // It answered, with an error.
  }
  const absl::Duration left = GiveUpLeft();
  if (left <= absl::ZeroDuration()) {
    return absl::UnavailableError(
        absl::StrCat("gave up: no contact with the coordinator for ",
                     absl::FormatDuration(clock_->Now() - last_contact_),
                     " (give_up_after_ms); last error: ", error.ToString()));
  }
  // The last attempt comes when the give-up time is over.
  const absl::Duration delay = std::min(backoff_.Next(rng_), left);
  LogFailure(what, error, delay);
  sleep_(delay);
  client_->SetConnectBudget(GiveUpLeft());
  return absl::OkStatus();
}

absl::Duration Agent::GiveUpLeft() const {
  if (options_.give_up_after <= absl::ZeroDuration()) {
    return absl::InfiniteDuration();
  }
  return options_.give_up_after - (clock_->Now() - last_contact_);
}

void Agent::LogFailure(absl::string_view what, const absl::Status& error,
                       absl::Duration delay) {
  const absl::Time now = clock_->Now();
  std::string failure = absl::StrCat(what, " failed: ", error.ToString());
  if (failure == logged_failure_ &&
      now - failure_logged_at_ < kFailureLogInterval) {
    ++failures_not_logged_;
    return;
  }
  FEDGE_LOG(WARNING)
      << failure << "; retrying in "
      << absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(1)))
      << (failures_not_logged_ > 0
              ? absl::StrCat(" (", failures_not_logged_,
                             " more like it in the last ",
                             absl::FormatDuration(absl::Trunc(
                                 now - failure_logged_at_, absl::Seconds(1))),
                             ")")
              : std::string());
  logged_failure_ = std::move(failure);
  failure_logged_at_ = now;
  failures_not_logged_ = 0;
}

void Agent::OnContact() {
  last_contact_ = clock_->Now();
  backoff_.Reset();
  client_->SetConnectBudget(GiveUpLeft());
  logged_failure_.clear();  // A new streak of failures logs its first.
  failures_not_logged_ = 0;
}

std::string Agent::NewUploadId() {
  const uint64_t high = rng_.NextBits();
  const uint64_t low = rng_.NextBits();
  return absl::StrFormat("%016x%016x", high, low);
}

}  // namespace fedge
