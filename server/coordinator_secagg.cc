// Coordinator: secure aggregation over the network (docs/
// secure-aggregation.md). A round with strategy.secure_aggregation runs one
// SecAggRound (server/secagg_round.h, the same server half fedge-sim runs)
// through four stages:
//   0 keys      each selected agent's task names its part of the session;
//               it sends its public keys (SecAggStep ADVERTISE_KEYS) and
//               waits for the key directory;
//   1 shares    it sends its encrypted shares (SHARE_KEYS) and waits for
//               the ones addressed to it;
//   2 inputs    it trains, masks its weighted update and uploads the masked
//               input through SubmitUpdate (UpdateMetadata.masked): added
//               into the session's running sum at once; the engine counts
//               it as the agent's result;
//   3 unmasking when the engine closes the round, the masked inputs are
//               closed and every agent whose input arrived is asked for its
//               shares (UNMASKING_REQUEST, then UNMASKING_RESPONSE); the
//               sum is then unmasked, folded into the strategy
//               (RoundAccumulator::AddSum) and the round closes as usual.
// Stages 0, 1 and 3 close when every awaited agent answered (agents that
// left the roster are not awaited) or after
// secure_aggregation.stage_timeout_ms; agents that missed a stage count as
// dropped (the session recovers them up to its threshold). A session that
// cannot go on abandons the round: no sum, the model kept.
#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/fl_config.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/coordinator.h"

namespace fedge {
namespace {

absl::Duration StageTimeout(const v1::CoordinatorConfig& c) {
  return absl::Milliseconds(
      c.strategy().secure_aggregation().stage_timeout_ms());
}

// The stage a waiter's answer needs to be past.
secagg::ServerState StageAnswered(v1::SecAggStage stage) {
  switch (stage) {
    case v1::SECAGG_STAGE_ADVERTISE_KEYS:
      return secagg::ServerState::kCollectingShares;
    case v1::SECAGG_STAGE_SHARE_KEYS:
      return secagg::ServerState::kCollectingInputs;
    default:
      return secagg::ServerState::kUnmasking;
  }
}

bool Reached(secagg::ServerState state, secagg::ServerState needed) {
  return state != secagg::ServerState::kFailed &&
         static_cast<int>(state) >= static_cast<int>(needed);
}

}  // namespace

void Coordinator::StartSecAgg(int64_t round,
                              const std::vector<std::string>& selected) {
  if (!config_.strategy().secure_aggregation().enabled()) return;
  SecAggState state;
  state.round = round;
  state.stage_deadline = clock_->Now() + StageTimeout(config_);
  int64_t max_examples = 0;
  for (const std::string& agent : selected) {
    max_examples = std::max(max_examples, DeclaredExamples(agent));
  }
  absl::StatusOr<std::unique_ptr<SecAggRound>> session = SecAggRound::Create(
      ResolveWeightUnit(
          ToSecureAggregationOptions(config_.strategy().secure_aggregation()),
          max_examples),
      absl::StrCat("fedge-coordinator/", absl::ToUnixNanos(started_wall_),
                   "/round-", round),
      selected, schema_);
  if (session.ok()) {
    state.session = *std::move(session);
    FEDGE_LOG(INFO) << "round " << round << ": secure aggregation of "
                    << selected.size() << " agents, threshold "
                    << state.session->config().threshold
                    << (state.session->config().neighbors > 0
                            ? absl::StrCat(", ",
                                           state.session->config().neighbors,
                                           " neighbours each")
                            : "");
  } else {
    state.failure = session.status();
  }
  {
    absl::MutexLock lock(&secagg_mu_);
    secagg_ = std::move(state);
  }
  if (!session.ok()) FailSecAgg(session.status());
}

bool Coordinator::SecAggStarting(int64_t round) const {
  if (!config_.strategy().secure_aggregation().enabled()) return false;
  absl::MutexLock lock(&secagg_mu_);
  return !secagg_.has_value() || secagg_->round != round;
}

std::shared_ptr<SecAggRound> Coordinator::SecAggSessionOf(int64_t round) const {
  absl::MutexLock lock(&secagg_mu_);
  if (!secagg_.has_value() || secagg_->round != round ||
      !secagg_->failure.ok()) {
    return nullptr;
  }
  return secagg_->session;
}

std::optional<v1::SecAggTask> Coordinator::SecAggTaskFor(
    int64_t round, const std::string& agent_id) const {
  std::shared_ptr<SecAggRound> session = SecAggSessionOf(round);
  if (session == nullptr) return std::nullopt;
  absl::StatusOr<int> id = session->ClientId(agent_id);
  if (!id.ok()) return std::nullopt;
  SecAggAssignment a;
  a.config = session->config();
  a.client_id = *id;
  a.options = session->options();
  a.strategy_name = config_.strategy().name();
  a.limits = accumulator_.limits();
  a.stage_timeout_ms = absl::ToInt64Milliseconds(StageTimeout(config_));
  return ToSecAggTask(a);
}

void Coordinator::FailSecAgg(const absl::Status& why) {
  int64_t round;
  std::vector<std::string> agents;
  {
    absl::MutexLock lock(&secagg_mu_);
    if (!secagg_.has_value()) return;
    round = secagg_->round;
    if (secagg_->failure.ok()) secagg_->failure = why;
    if (secagg_->session != nullptr) agents = secagg_->session->agents();
  }
  FEDGE_LOG(WARNING) << "round " << round
                     << ": secure aggregation failed, the round is "
                        "abandoned: "
                     << why;
  // Nothing it waits for can help now; with the engine's round in progress
  // its selected agents fail at once and the round closes (abandoned).
  for (const std::string& agent : engine_->SelectedAgents()) {
    engine_->ReportFailure(agent, round).IgnoreError();
  }
  AnswerSecAggWaiters(/*expire_all=*/false);
}

void Coordinator::SecAggStep(const v1::SecAggStepRequest& request,
                             SecAggCallback done) {
  if (shutting_down_) {
    return done(absl::UnavailableError("the coordinator is shutting down"));
  }
  absl::StatusOr<Session> session = FindSession(request.session_token());
  if (!session.ok()) return done(session.status());
  engine_->Heartbeat(session->agent_id).IgnoreError();
  std::shared_ptr<SecAggRound> round = SecAggSessionOf(request.round());
  if (round == nullptr) {
    return done(absl::AbortedError(
        absl::StrCat("round ", request.round(),
                     " has no secure-aggregation session in progress")));
  }
  const std::string& agent = session->agent_id;
  absl::Status received;
  switch (request.stage()) {
    case v1::SECAGG_STAGE_ADVERTISE_KEYS:
      if (!request.message().empty()) {
        received = round->ReceiveAdvertiseKeys(agent, request.message());
      }
      break;
    case v1::SECAGG_STAGE_SHARE_KEYS:
      if (!request.message().empty()) {
        received = round->ReceiveShareKeys(agent, request.message());
      }
      break;
    case v1::SECAGG_STAGE_UNMASKING_REQUEST:
      break;
    case v1::SECAGG_STAGE_UNMASKING_RESPONSE:
      received = round->ReceiveUnmaskingResponse(agent, request.message());
      if (received.ok() || absl::IsAlreadyExists(received)) {
        return done(v1::SecAggStepResponse());
      }
      break;
    default:
      return done(absl::InvalidArgumentError(
          absl::StrCat("unknown secure-aggregation stage ", request.stage())));
  }
  // A retry of a message already received stands.
  if (!received.ok() && !absl::IsAlreadyExists(received)) {
    return done(Refuse(agent, "invalid", "secure_aggregation", received));
  }
  SecAggWaiter w;
  w.agent_id = agent;
  w.round = request.round();
  w.stage = request.stage();
  w.deadline = clock_->Now() + absl::Milliseconds(config_.poll_wait_ms());
  if (auto answer = TryAnswerSecAgg(w)) return done(*std::move(answer));
  w.done = std::move(done);
  {
    absl::MutexLock lock(&secagg_mu_);
    if (!shutting_down_) {  // Else BeginShutdown already answered waiters.
      secagg_waiters_.push_back(std::move(w));
      return;
    }
  }
  w.done(absl::UnavailableError("the coordinator is shutting down"));
}

std::optional<absl::StatusOr<v1::SecAggStepResponse>>
Coordinator::TryAnswerSecAgg(const SecAggWaiter& w) const {
  std::shared_ptr<SecAggRound> session;
  absl::Status failure;
  {
    absl::MutexLock lock(&secagg_mu_);
    if (!secagg_.has_value() || secagg_->round != w.round) {
      return absl::AbortedError(
          absl::StrCat("round ", w.round, "'s secure aggregation is over"));
    }
    session = secagg_->session;
    failure = secagg_->failure;
  }
  if (!failure.ok() || session == nullptr) {
    return absl::AbortedError(
        absl::StrCat("round ", w.round,
                     "'s secure aggregation failed: ", failure.message()));
  }
  const secagg::ServerState state = session->state();
  if (state == secagg::ServerState::kFailed) {
    return absl::AbortedError(
        absl::StrCat("round ", w.round, "'s secure aggregation failed"));
  }
  if (!Reached(state, StageAnswered(w.stage))) return std::nullopt;
  absl::StatusOr<std::string> message;
  switch (w.stage) {
    case v1::SECAGG_STAGE_ADVERTISE_KEYS:
      message = session->KeyDirectoryFor(w.agent_id);
      break;
    case v1::SECAGG_STAGE_SHARE_KEYS:
      message = session->EncryptedSharesFor(w.agent_id);
      break;
    default:
      message = session->UnmaskingRequestFor(w.agent_id);
      break;
  }
  if (!message.ok()) {
    // The stage closed without this agent (too late, or dropped by the
    // session): it has no part in the rest of the round.
    return absl::AbortedError(absl::StrCat(
        "round ", w.round, ": no longer part of the secure aggregation (",
        message.status().message(), ")"));
  }
  v1::SecAggStepResponse response;
  response.set_message(*std::move(message));
  return response;
}

void Coordinator::AnswerSecAggWaiters(bool expire_all) {
  std::deque<SecAggWaiter> waiters;
  {
    absl::MutexLock lock(&secagg_mu_);
    waiters.swap(secagg_waiters_);
  }
  const absl::Time now = clock_->Now();
  std::deque<SecAggWaiter> still_waiting;
  for (SecAggWaiter& w : waiters) {
    if (expire_all) {
      w.done(absl::UnavailableError("the coordinator is shutting down"));
    } else if (auto answer = TryAnswerSecAgg(w)) {
      w.done(*std::move(answer));
    } else if (now >= w.deadline) {
      v1::SecAggStepResponse pending;
      pending.set_pending(true);
      w.done(pending);
    } else {
      still_waiting.push_back(std::move(w));
    }
  }
  absl::MutexLock lock(&secagg_mu_);
  for (SecAggWaiter& w : still_waiting) secagg_waiters_.push_back(std::move(w));
}

absl::Status Coordinator::AdvanceSecAgg() {
  std::shared_ptr<SecAggRound> session;
  int64_t round;
  absl::Time deadline;
  bool unmasking;
  {
    absl::MutexLock lock(&secagg_mu_);
    if (!secagg_.has_value()) return absl::OkStatus();
    session = secagg_->failure.ok() ? secagg_->session : nullptr;
    round = secagg_->round;
    deadline = secagg_->stage_deadline;
    unmasking = secagg_->outcome.has_value();
  }
  if (session != nullptr) {
    const secagg::ServerState state = session->state();
    const bool waits = state == secagg::ServerState::kCollectingKeys ||
                       state == secagg::ServerState::kCollectingShares ||
                       (unmasking && state == secagg::ServerState::kUnmasking);
    if (waits && SecAggStageDue(*session, round, deadline)) {
      if (unmasking) {
        RETURN_IF_ERROR(FinishSecAgg());
      } else {
        CloseSecAggKeyStage(*session, round);
      }
    }
  }
  AnswerSecAggWaiters(/*expire_all=*/false);
  return absl::OkStatus();
}

bool Coordinator::SecAggStageDue(const SecAggRound& session, int64_t round,
                                 absl::Time deadline) const {
  // Agents that left the roster are not waited for.
  std::vector<std::string> awaited = session.Awaited();
  awaited.erase(std::remove_if(awaited.begin(), awaited.end(),
                               [this](const std::string& a) {
                                 return !engine_->HasAgent(a);
                               }),
                awaited.end());
  if (awaited.empty()) return true;
  if (clock_->Now() < deadline) return false;
  FEDGE_LOG(WARNING) << "round " << round << ": " << awaited.size()
                     << " agent(s) did not answer secure aggregation's "
                     << secagg::ServerStateName(session.state())
                     << " stage within "
                        "strategy.secure_aggregation.stage_timeout_ms ("
                     << awaited.front() << (awaited.size() > 1 ? ", ..." : "")
                     << ")";
  return true;
}

void Coordinator::CloseSecAggKeyStage(SecAggRound& session, int64_t round) {
  const absl::Status closed =
      session.state() == secagg::ServerState::kCollectingKeys
          ? session.CloseAdvertiseKeys()
          : session.CloseShareKeys();
  if (!closed.ok()) return FailSecAgg(closed);
  {
    absl::MutexLock lock(&secagg_mu_);
    secagg_->stage_deadline = clock_->Now() + StageTimeout(config_);
  }
  // Agents left out of the stage cannot send an input: the round does not
  // wait for them (Awaited now lists the next stage's agents).
  const std::vector<std::string> next = session.Awaited();
  const absl::flat_hash_set<std::string> kept(next.begin(), next.end());
  for (const std::string& a : session.agents()) {
    if (!kept.contains(a)) engine_->ReportFailure(a, round).IgnoreError();
  }
}

absl::StatusOr<bool> Coordinator::CloseSecAggInputs(RoundOutcome outcome) {
  std::shared_ptr<SecAggRound> session;
  absl::Status failure;
  {
    absl::MutexLock lock(&secagg_mu_);
    if (!secagg_.has_value() || secagg_->round != outcome.round) return false;
    session = secagg_->session;
    failure = secagg_->failure;
  }
  const bool failed_before = !failure.ok();
  if (failure.ok() && session != nullptr && outcome.completed &&
      !shutting_down_) {
    failure = session->CloseMaskedInputs();
    if (failure.ok()) {
      const std::vector<std::string> inputs = session->InputsReceived();
      FEDGE_LOG(INFO) << "round " << outcome.round << ": " << inputs.size()
                      << " masked input(s) in; unmasking";
      absl::MutexLock lock(&secagg_mu_);
      secagg_->stage_deadline = clock_->Now() + StageTimeout(config_);
      secagg_->outcome = std::move(outcome);
      return true;
    }
  }
  if (failure.ok() && shutting_down_) {
    failure = absl::UnavailableError("the coordinator is shutting down");
  }
  if (!failure.ok() && !failed_before) FailSecAgg(failure);
  // Abandoned: nothing of it is folded.
  {
    absl::MutexLock lock(&secagg_mu_);
    secagg_.reset();
  }
  AnswerSecAggWaiters(/*expire_all=*/false);
  outcome.completed = false;
  RETURN_IF_ERROR(FinishRound(outcome));
  return true;
}

absl::Status Coordinator::FinishSecAgg() {
  SecAggState state;
  {
    absl::MutexLock lock(&secagg_mu_);
    if (!secagg_.has_value() || !secagg_->outcome.has_value()) {
      return absl::OkStatus();
    }
    state = *std::move(secagg_);
    secagg_.reset();
  }
  AnswerSecAggWaiters(/*expire_all=*/false);
  RoundOutcome outcome = *std::move(state.outcome);
  // Who the sum holds, whatever the engine heard last.
  const std::vector<std::string> inputs = state.session->InputsReceived();
  const absl::flat_hash_set<std::string> in_sum(inputs.begin(), inputs.end());
  std::vector<std::string> failed;
  for (const std::string& a : state.session->agents()) {
    if (!in_sum.contains(a)) failed.push_back(a);
  }
  outcome.reported = inputs;
  outcome.failed = failed;
  absl::StatusOr<SecAggSum> sum =
      shutting_down_ ? absl::StatusOr<SecAggSum>(absl::UnavailableError(
                           "the coordinator is shutting down"))
                     : state.session->Finish(latest_model()->model);
  absl::Status folded = sum.status();
  if (sum.ok()) {
    absl::MutexLock lock(&accumulate_mu_);
    folded = accumulator_.AddSum(*sum, state.bytes);
  }
  if (!folded.ok()) {
    FEDGE_LOG(WARNING) << "round " << outcome.round
                       << ": secure aggregation could not unmask the sum, "
                          "the round is abandoned: "
                       << folded;
    outcome.completed = false;
  } else {
    FEDGE_LOG(INFO) << "round " << outcome.round << ": the sum of "
                    << sum->num_updates << " masked update(s) unmasked";
  }
  return FinishRound(outcome);
}

absl::StatusOr<v1::SubmitUpdateResponse> Coordinator::AcceptMaskedInput(
    const Upload& upload) {
  const v1::UpdateMetadata& m = upload.metadata_;
  std::shared_ptr<SecAggRound> session = SecAggSessionOf(m.round());
  if (session == nullptr) {
    return Refuse(upload.agent_id_, "stale", "round closed",
                  absl::AbortedError(absl::StrCat(
                      "round ", m.round(),
                      " has no secure-aggregation session in progress")));
  }
  absl::MutexLock lock(&accumulate_mu_);
  v1::SubmitUpdateResponse response;
  absl::Status checked = CheckTaskResult(m, upload.agent_id_);
  if (checked.ok()) {
    checked = session->ReceiveMaskedInput(upload.agent_id_, upload.masked_);
  }
  if (absl::IsAlreadyExists(checked)) {
    metrics_.Update("duplicate", "retry");
    response.set_duplicate(true);
    return response;
  }
  if (!checked.ok()) {
    return Refuse(
        upload.agent_id_, absl::IsAborted(checked) ? "stale" : "invalid",
        absl::IsAborted(checked) ? "round closed" : "masked", checked);
  }
  // In the sum now. The engine counts it as the agent's result; should the
  // round have closed in between, the outcome is taken from the session.
  absl::Status accepted =
      engine_->AcceptResult(upload.agent_id_, m.round(), m.upload_id());
  if (!accepted.ok()) {
    FEDGE_LOG(WARNING) << "round " << m.round() << ": masked input of "
                       << upload.agent_id_
                       << " is in the sum but the engine said: " << accepted;
  }
  {
    absl::MutexLock secagg_lock(&secagg_mu_);
    if (secagg_.has_value() && secagg_->round == m.round()) {
      secagg_->bytes += upload.received_;
    }
  }
  metrics_.Update("accepted", "masked");
  metrics_.bytes_received.IncrementBy(upload.received_);
  return response;
}

}  // namespace fedge
