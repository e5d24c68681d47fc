#include "server/edge_aggregator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fl_config.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "edge_agent/heartbeat.h"

namespace fedge {

EdgeAggregatorOptions ToEdgeAggregatorOptions(
    const v1::CoordinatorConfig& config) {
  const v1::UpstreamConfig& u = config.upstream();
  EdgeAggregatorOptions o;
  o.agent_id = u.agent_id();
  o.architectures = {config.model().architecture()};
  o.initial_backoff = absl::Milliseconds(u.initial_backoff_ms());
  o.max_backoff = absl::Milliseconds(u.max_backoff_ms());
  o.upload_margin = absl::Milliseconds(u.upload_margin_ms());
  o.seed = MixSeed(
      {config.seed(), StableHash64(u.agent_id().data(), u.agent_id().size())});
  return o;
}

absl::StatusOr<std::unique_ptr<EdgeAggregator>> EdgeAggregator::Create(
    EdgeAggregatorOptions options, CoordinatorClient* upstream,
    EdgeDownstream* downstream, const Clock* clock, Sleeper sleep) {
  if (upstream == nullptr || downstream == nullptr || clock == nullptr ||
      !sleep) {
    return absl::InvalidArgumentError("EdgeAggregator needs its collaborators");
  }
  if (options.agent_id.empty()) {
    return absl::InvalidArgumentError("EdgeAggregator needs an agent_id");
  }
  if (options.initial_backoff <= absl::ZeroDuration() ||
      options.max_backoff < options.initial_backoff ||
      options.upload_margin < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "EdgeAggregator: backoff must be positive with max >= initial, and "
        "upload_margin >= 0");
  }
  return std::unique_ptr<EdgeAggregator>(new EdgeAggregator(
      std::move(options), upstream, downstream, clock, std::move(sleep)));
}

EdgeAggregator::EdgeAggregator(EdgeAggregatorOptions options,
                               CoordinatorClient* upstream,
                               EdgeDownstream* downstream, const Clock* clock,
                               Sleeper sleep)
    : options_(std::move(options)),
      upstream_(upstream),
      downstream_(downstream),
      clock_(clock),
      sleep_(std::move(sleep)),
      rng_(options_.seed),
      backoff_(options_.initial_backoff, options_.max_backoff) {}

absl::Status EdgeAggregator::Run() {
  while (!stop_.load()) {
    if (!joined_) {
      RETURN_IF_ERROR(Join());
      continue;
    }
    absl::Status s = PollAndAct();
    if (absl::IsCancelled(s)) break;  // Finished.
    RETURN_IF_ERROR(s);
  }
  if (joined_) {
    upstream_->Leave(session_.session_token()).IgnoreError();
    joined_ = false;
  }
  return absl::OkStatus();
}

absl::Status EdgeAggregator::Join() {
  v1::JoinRequest request;
  request.set_agent_id(options_.agent_id);
  request.set_num_examples(options_.num_examples);
  request.set_agent_version(options_.version);
  request.set_device_class("edge_aggregator");
  for (const std::string& a : options_.architectures) {
    request.add_architectures(a);
  }
  options_.join_credentials.Apply(request);
  absl::StatusOr<v1::JoinResponse> response = upstream_->Join(request);
  if (!response.ok()) {
    if (IsJoinRefusal(response.status().code())) {
      return Annotate(response.status(), "the upstream refused to join");
    }
    BackOff("join upstream", response.status());
    return absl::OkStatus();
  }
  OnContact();
  if (absl::Status kept = options_.join_credentials.Remember(*response);
      !kept.ok()) {
    FEDGE_LOG(WARNING) << "could not keep the upstream agent key: " << kept;
  }
  session_ = *std::move(response);
  joined_ = true;
  handled_rounds_.clear();
  ++stats_.joins;
  FEDGE_LOG(INFO) << "joined the upstream as " << session_.agent_id();
  return absl::OkStatus();
}

absl::Status EdgeAggregator::PollAndAct() {
  v1::PollRequest request;
  request.set_session_token(session_.session_token());
  request.set_cached_model_version(-1);
  absl::StatusOr<v1::PollResponse> poll = upstream_->Poll(request);
  if (!poll.ok()) {
    HandleCallError("poll upstream", poll.status());
    return absl::OkStatus();
  }
  OnContact();
  switch (poll->action_case()) {
    case v1::PollResponse::kTrain:
      return HandleTask(poll->train());
    case v1::PollResponse::kFinished:
      RETURN_IF_ERROR(OnFinished(*poll));
      return absl::CancelledError("finished");
    case v1::PollResponse::kEvaluate:
      if (!evaluate_logged_) {
        evaluate_logged_ = true;
        FEDGE_LOG(WARNING) << "the upstream asks for federated evaluation, "
                              "which an edge aggregator does not answer "
                              "(set strategy.fraction_evaluate=0 upstream)";
      }
      sleep_(options_.initial_backoff);
      return absl::OkStatus();
    case v1::PollResponse::kWaitRetryAfterMs:
      sleep_(absl::Milliseconds(poll->wait_retry_after_ms()));
      return absl::OkStatus();
    case v1::PollResponse::ACTION_NOT_SET:
      sleep_(options_.initial_backoff);
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status EdgeAggregator::HandleTask(const v1::TrainTask& task) {
  if (handled_rounds_.contains(task.round())) {
    sleep_(options_.initial_backoff);  // Already answered: do not spin.
    return absl::OkStatus();
  }
  const absl::Time start = clock_->Now();
  const absl::Duration left = absl::Milliseconds(task.deadline_remaining_ms());
  const absl::Time deadline =
      task.deadline_remaining_ms() > 0 ? start + left : absl::InfiniteFuture();
  if (!task.client_algorithm().empty()) {
    handled_rounds_.insert(task.round());
    FEDGE_LOG(ERROR) << "upstream round " << task.round()
                     << ": the upstream's strategy needs client algorithm '"
                     << task.client_algorithm()
                     << "', which does not compose through an edge "
                        "aggregator (docs/hierarchy.md)";
    ReportFailure(task,
                  absl::StrCat("client algorithm '", task.client_algorithm(),
                               "' does not compose hierarchically"));
    return absl::OkStatus();
  }
  if (options_.model_verifier != nullptr) {
    absl::Status verified = options_.model_verifier->Verify(
        task.model_version(), session_.model(), task.model_sha256(),
        {task.model_signing_key_id(), task.model_signature()});
    if (!verified.ok()) {
      handled_rounds_.insert(task.round());
      FEDGE_LOG(ERROR) << "upstream round " << task.round()
                       << ": the upstream model is refused, no downstream "
                          "agent trains on it: "
                       << verified;
      ReportFailure(task, std::string(verified.message()),
                    v1::FAILURE_REASON_MODEL_SIGNATURE);
      // The next model is likely signed the same way: do not make the
      // upstream run (and lose) rounds as fast as it can.
      sleep_(options_.max_backoff);
      return absl::OkStatus();
    }
  }
  HeartbeatThread heartbeat(upstream_, session_.session_token(),
                            absl::Milliseconds(std::max<int64_t>(
                                1, session_.heartbeat_interval_ms())));
  absl::StatusOr<ModelState> model = upstream_->FetchModel(
      session_.session_token(), task.model_version(), task.model_sha256());
  if (!model.ok()) {
    if (absl::IsNotFound(model.status())) {
      handled_rounds_.insert(task.round());
      return absl::OkStatus();  // A newer version: poll again.
    }
    HandleCallError("fetch the upstream model", model.status());
    return absl::OkStatus();
  }
  EdgeRoundRequest request;
  request.upstream_round = task.round();
  request.model_version = task.model_version();
  request.model = *std::move(model);
  request.plan = ToTrainPlan(task.plan());
  if (deadline != absl::InfiniteFuture()) {
    request.close_by =
        std::max(deadline - options_.upload_margin, start + left / 2);
  }
  absl::StatusOr<EdgeRoundResult> result =
      downstream_->RunRound(std::move(request));
  handled_rounds_.insert(task.round());
  if (stop_.load()) return absl::OkStatus();
  if (!result.ok()) {
    ++stats_.rounds_failed;
    FEDGE_LOG(WARNING) << "upstream round " << task.round()
                       << ": no aggregate: " << result.status();
    ReportFailure(task, std::string(result.status().message()));
    return absl::OkStatus();
  }
  ++stats_.rounds_run;
  return Submit(task, deadline, *result);
}

absl::Status EdgeAggregator::Submit(const v1::TrainTask& task,
                                    absl::Time deadline,
                                    const EdgeRoundResult& result) {
  v1::UpdateMetadata metadata;
  metadata.set_session_token(session_.session_token());
  metadata.set_round(task.round());
  metadata.set_base_version(task.model_version());
  metadata.set_upload_id(
      absl::StrFormat("%016x%016x", rng_.NextBits(), rng_.NextBits()));
  metadata.set_num_examples(result.num_examples);
  metadata.mutable_metrics()->set_loss(result.train_loss);
  metadata.mutable_metrics()->set_accuracy(result.train_accuracy);
  metadata.mutable_metrics()->set_train_seconds(result.train_seconds);
  HeartbeatThread heartbeat(upstream_, session_.session_token(),
                            absl::Milliseconds(std::max<int64_t>(
                                1, session_.heartbeat_interval_ms())));
  while (true) {
    absl::StatusOr<v1::SubmitUpdateResponse> response =
        upstream_->SubmitUpdate(metadata, result.delta, nullptr);
    if (response.ok()) {
      OnContact();
      ++stats_.updates_submitted;
      FEDGE_LOG(INFO) << absl::StrFormat(
          "upstream round %d: submitted the aggregate of %d agents (%d "
          "examples, %d failed), train loss %.4g%s",
          task.round(), result.num_agents, result.num_examples,
          result.num_failed, result.train_loss,
          response->duplicate() ? " (duplicate)" : "");
      return absl::OkStatus();
    }
    const absl::StatusCode code = response.status().code();
    if (IsSessionLost(code) || IsRefusal(code) || stop_.load() ||
        clock_->Now() >= deadline) {
      FEDGE_LOG(WARNING) << "upstream round " << task.round()
                         << ": aggregate dropped: " << response.status();
      if (IsSessionLost(code)) joined_ = false;
      return absl::OkStatus();
    }
    BackOff("submit upstream", response.status());
  }
}

void EdgeAggregator::ReportFailure(const v1::TrainTask& task,
                                   const std::string& detail,
                                   v1::FailureReason reason) {
  v1::ReportFailureRequest request;
  request.set_session_token(session_.session_token());
  request.set_round(task.round());
  request.set_reason(reason);
  request.set_detail(detail.substr(0, 200));
  absl::Status s = upstream_->ReportFailure(request);
  if (s.ok()) {
    ++stats_.rounds_failed;
    OnContact();
  } else if (IsSessionLost(s.code())) {
    joined_ = false;
  } else {
    FEDGE_LOG(INFO) << "upstream round " << task.round()
                    << ": the upstream was not told: " << s;
  }
}

absl::Status EdgeAggregator::OnFinished(const v1::PollResponse& poll) {
  ModelState final_model;
  absl::Status verified =
      options_.model_verifier == nullptr || poll.latest_model_sha256().empty()
          ? absl::OkStatus()
          : options_.model_verifier->Verify(poll.latest_model_version(),
                                            session_.model(),
                                            poll.latest_model_sha256(),
                                            {poll.latest_model_signing_key_id(),
                                             poll.latest_model_signature()});
  if (!verified.ok()) {
    FEDGE_LOG(ERROR) << "the final upstream model is refused: " << verified;
  } else if (!poll.latest_model_sha256().empty()) {
    absl::StatusOr<ModelState> model = upstream_->FetchModel(
        session_.session_token(), poll.latest_model_version(),
        poll.latest_model_sha256());
    if (model.ok()) {
      final_model = *std::move(model);
    } else {
      FEDGE_LOG(WARNING) << "could not fetch the final upstream model: "
                         << model.status();
    }
  }
  FEDGE_LOG(INFO) << "the upstream federation finished (final model v"
                  << poll.latest_model_version() << ")";
  downstream_->Finish(std::move(final_model), poll.latest_model_version());
  upstream_->Leave(session_.session_token()).IgnoreError();
  joined_ = false;
  return absl::OkStatus();
}

void EdgeAggregator::HandleCallError(absl::string_view what,
                                     const absl::Status& error) {
  if (IsSessionLost(error.code())) {
    FEDGE_LOG(INFO) << what << ": session lost (" << error.message()
                    << "), joining again";
    joined_ = false;
    return;
  }
  BackOff(what, error);
}

void EdgeAggregator::BackOff(absl::string_view what,
                             const absl::Status& error) {
  ++stats_.call_failures;
  const absl::Duration delay = backoff_.Next(rng_);
  FEDGE_LOG(WARNING) << what << " failed: " << error << "; retrying in "
                     << absl::FormatDuration(
                            absl::Trunc(delay, absl::Milliseconds(1)));
  sleep_(delay);
}

}  // namespace fedge
