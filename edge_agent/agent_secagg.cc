// Agent: its part of a secure-aggregation round (TrainTask.secure_
// aggregation; docs/secure-aggregation.md). Keys are advertised and shared
// before training; the trained update is bounded by the limits the
// coordinator can no longer check, weighted, masked and uploaded as a
// masked input; then the agent answers the unmasking request. Nothing of
// the update leaves the device unmasked.
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/secagg_update.h"
#include "common/status_macros.h"
#include "common/update_limits.h"
#include "edge_agent/agent.h"

namespace fedge {

absl::StatusOr<Agent::SecureRound> Agent::JoinSecureRound(
    const v1::TrainTask& task) {
  SecureRound secure;
  ASSIGN_OR_RETURN(secure.assignment,
                   FromSecAggTask(task.secure_aggregation()));
  secagg::SecAggClient::Options options;
  options.config = secure.assignment.config;
  options.client_id = secure.assignment.client_id;
  ASSIGN_OR_RETURN(secure.client, secagg::SecAggClient::Create(options));
  ASSIGN_OR_RETURN(const std::string keys, secure.client->AdvertiseKeys());
  ASSIGN_OR_RETURN(const std::string directory,
                   SecAggExchange(task.round(), v1::SECAGG_STAGE_ADVERTISE_KEYS,
                                  keys, task_deadline_));
  ASSIGN_OR_RETURN(const std::string shares,
                   secure.client->ShareKeys(directory));
  ASSIGN_OR_RETURN(secure.shares,
                   SecAggExchange(task.round(), v1::SECAGG_STAGE_SHARE_KEYS,
                                  shares, task_deadline_));
  FEDGE_LOG(INFO) << "round " << task.round()
                  << ": secure aggregation keys shared (client "
                  << secure.assignment.client_id << " of "
                  << secure.assignment.config.num_clients << ")";
  return secure;
}

absl::StatusOr<std::string> Agent::SecAggExchange(int64_t round,
                                                  v1::SecAggStage stage,
                                                  const std::string& message,
                                                  absl::Time until) {
  v1::SecAggStepRequest request;
  request.set_session_token(session_.session_token());
  request.set_round(round);
  request.set_stage(stage);
  request.set_message(message);
  while (true) {
    if (stop_requested_.load()) {
      return absl::CancelledError("the agent is stopping");
    }
    if (clock_->Now() >= until) {
      return absl::DeadlineExceededError(absl::StrCat(
          "round ", round, "'s secure aggregation did not answer in time"));
    }
    absl::StatusOr<v1::SecAggStepResponse> response =
        client_->SecAggStep(request);
    if (response.ok()) {
      OnContact();
      if (!response->pending()) return std::move(*response->mutable_message());
      request.clear_message();  // Received: now only waiting.
      continue;
    }
    if (!IsUnreachable(response.status().code())) return response.status();
    RETURN_IF_ERROR(BackOff("secure aggregation", response.status()));
  }
}

absl::Status Agent::SubmitSecure(const v1::TrainTask& task, TrainOutput& output,
                                 SecureRound& secure) {
  const SecAggAssignment& a = secure.assignment;
  FitResult result;
  result.num_examples = static_cast<double>(output.metrics.num_examples);
  result.num_steps = output.metrics.num_steps;
  result.metrics = output.metrics;
  result.delta = &output.delta;
  // What the coordinator would have checked on the update itself.
  absl::StatusOr<double> clipped = ApplyUpdateLimits(a.limits, result);
  StrategyOptions strategy;
  strategy.name = a.strategy_name;
  strategy.plan = ToTrainPlan(task.plan());
  absl::StatusOr<SecAggInput> input =
      clipped.ok() ? SecAggInput::Prepare(a.options, strategy, result)
                   : absl::StatusOr<SecAggInput>(clipped.status());
  absl::StatusOr<std::string> masked =
      input.ok()
          ? secure.client->MaskInputPieces(secure.shares, input->pieces())
          : absl::StatusOr<std::string>(input.status());
  if (!masked.ok()) {
    return GiveUp(
        task, v1::FAILURE_REASON_SECURE_AGGREGATION,
        absl::StrCat("cannot mask the update: ", masked.status().message()));
  }
  if (input->clipped() > 0) {
    FEDGE_LOG(WARNING) << "round " << task.round() << ": " << input->clipped()
                       << " elements of the masked update were clipped to "
                          "strategy.secure_aggregation.clip_range "
                       << a.options.clip_range;
  }
  v1::UpdateMetadata metadata;
  metadata.set_session_token(session_.session_token());
  metadata.set_round(task.round());
  metadata.set_base_version(task.model_version());
  metadata.set_upload_id(NewUploadId());
  const absl::Time submit_start = clock_->Now();
  ASSIGN_OR_RETURN(
      std::optional<v1::SubmitUpdateResponse> accepted,
      UploadUpdate(
          [&] { return client_->SubmitMaskedInput(metadata, *masked); },
          static_cast<int64_t>(masked->size()),
          absl::StrCat("round ", task.round(), ": masked update dropped: ")));
  if (!accepted.has_value()) return absl::OkStatus();
  FEDGE_LOG(INFO) << "round " << task.round() << ": trained "
                  << output.metrics.num_examples << " examples, masked update ("
                  << masked->size() << " bytes) submitted in "
                  << absl::ToDoubleSeconds(clock_->Now() - submit_start)
                  << " s";
  // Stage 3: the shares that remove the survivors' masks. It starts when
  // the round closes (at the latest its deadline) and lasts a stage.
  const absl::Time until =
      task_deadline_ + 2 * absl::Milliseconds(a.stage_timeout_ms);
  absl::StatusOr<std::string> request = SecAggExchange(
      task.round(), v1::SECAGG_STAGE_UNMASKING_REQUEST, std::string(), until);
  absl::StatusOr<std::string> answer =
      request.ok() ? secure.client->Unmask(*request) : request;
  absl::StatusOr<std::string> sent =
      answer.ok()
          ? SecAggExchange(task.round(), v1::SECAGG_STAGE_UNMASKING_RESPONSE,
                           *answer, until)
          : answer;
  if (!sent.ok()) {
    FEDGE_LOG(WARNING) << "round " << task.round()
                       << ": no unmasking answer: " << sent.status();
    if (IsSessionLost(sent.status().code())) {
      TransitionTo(AgentState::kNotJoined);
    }
  }
  return absl::OkStatus();
}

}  // namespace fedge
