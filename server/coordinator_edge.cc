// Coordinator: edge mode (config.upstream set). The edge aggregator's
// upstream loop (server/edge_aggregator.h) asks for one round per upstream
// task through RunRound; the Tick thread publishes the upstream's model,
// starts the round with the upstream's plan and hands the closed round's
// aggregate back. See "Edge mode" in coordinator.h and docs/hierarchy.md.
#include <chrono>
#include <future>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/coordinator.h"

namespace fedge {
namespace {

// RunRound waits this long past close_by for the Tick thread's answer (a
// round close waits for the previous round's checkpoint), and at most a day
// for a request without a deadline.
constexpr absl::Duration kEdgeAnswerGrace = absl::Seconds(60);
constexpr absl::Duration kEdgeLongestWait = absl::Hours(24);

}  // namespace

absl::StatusOr<EdgeRoundResult> Coordinator::RunRound(
    EdgeRoundRequest request) {
  if (!edge_mode_) {
    return absl::FailedPreconditionError(
        "not an edge aggregator (upstream.address is not set)");
  }
  auto round = std::make_unique<EdgeRound>();
  round->request = std::move(request);
  const absl::Time close_by = round->request.close_by;
  std::future<absl::StatusOr<EdgeRoundResult>> result =
      round->done.get_future();
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) {
      return absl::UnavailableError("the edge aggregator is shutting down");
    }
    if (edge_requested_ != nullptr) {
      edge_requested_->done.set_value(absl::AbortedError(absl::StrCat(
          "superseded by upstream round ", round->request.upstream_round)));
    }
    edge_requested_ = std::move(round);
  }
  const absl::Duration wait =
      std::min(kEdgeLongestWait,
               std::max(absl::ZeroDuration(), close_by - clock_->Now()) +
                   kEdgeAnswerGrace);
  if (result.wait_for(absl::ToChronoNanoseconds(wait)) !=
      std::future_status::ready) {
    return absl::DeadlineExceededError(
        absl::StrCat("the downstream round did not close within ",
                     absl::FormatDuration(wait)));
  }
  return result.get();
}

void Coordinator::Finish(ModelState final_model, int64_t version) {
  absl::MutexLock lock(&mu_);
  edge_finish_ = EdgeFinish{std::move(final_model), version};
}

void Coordinator::ReplaceModel(ModelState model, int64_t version) {
  std::shared_ptr<const PublishedModel> published =
      MakePublished(std::move(model), version);
  absl::MutexLock lock(&mu_);
  versions_.clear();
  versions_[version] = published;
  latest_ = std::move(published);
}

absl::Status Coordinator::MaybeStartEdgeRound() {
  std::unique_ptr<EdgeRound> round;
  {
    absl::MutexLock lock(&mu_);
    if (edge_requested_ == nullptr) return absl::OkStatus();
    round = std::move(edge_requested_);
  }
  EdgeRoundRequest& r = round->request;
  absl::Status schema = CheckSchema(schema_, r.model);
  if (!schema.ok()) {
    round->done.set_value(absl::FailedPreconditionError(
        absl::StrCat("the upstream's model does not match model.* of this edge "
                     "aggregator's config: ",
                     schema.message())));
    return absl::OkStatus();
  }
  std::shared_ptr<const PublishedModel> latest = latest_model();
  if (latest->version != r.model_version ||
      latest->model_sha256 != ModelDigest(r.model)) {
    ReplaceModel(r.model.Clone(), r.model_version);
  }
  // Selection and each agent's seed as a flat federation with this seed
  // makes them in the upstream's round; the rest of the plan is the
  // upstream's.
  const std::vector<AgentInfo> available = AvailableAgentInfos();
  std::vector<FitInstruction> instructions =
      strategy_->ConfigureFit(r.upstream_round, available);
  std::vector<std::string> selected;
  {
    absl::MutexLock lock(&mu_);
    plans_.clear();
    for (FitInstruction& f : instructions) {
      TrainPlan plan = r.plan;
      plan.seed = f.plan.seed;
      plan.update_encoding.seed = f.plan.seed;
      selected.push_back(f.agent_id);
      plans_[f.agent_id] = plan;
    }
    num_available_ = static_cast<int64_t>(available.size());
  }
  absl::StatusOr<int64_t> started = engine_->StartRound(std::move(selected));
  if (!started.ok()) {
    // The roster changed meanwhile: the next tick tries again.
    FEDGE_LOG(WARNING) << "upstream round " << r.upstream_round
                       << ": not started: " << started.status();
    absl::MutexLock lock(&mu_);
    if (edge_requested_ == nullptr) edge_requested_ = std::move(round);
    return absl::OkStatus();
  }
  round->engine_round = *started;
  FEDGE_LOG(INFO) << "round " << *started << " for upstream round "
                  << r.upstream_round << " (model v" << r.model_version
                  << "): " << instructions.size() << " of " << available.size()
                  << " agents";
  edge_running_ = std::move(round);
  return absl::OkStatus();
}

void Coordinator::AdvanceEdge() {
  const absl::Time now = clock_->Now();
  if (edge_running_ != nullptr && now >= edge_running_->request.close_by &&
      engine_->current_round() == edge_running_->engine_round) {
    // Closes with what arrived (the next engine tick returns the outcome).
    if (engine_->CloseRoundNow().ok()) {
      FEDGE_LOG(INFO) << "round " << edge_running_->engine_round
                      << ": closing for the upstream's deadline";
    }
  }
  std::optional<EdgeFinish> finish;
  {
    absl::MutexLock lock(&mu_);
    if (edge_requested_ != nullptr &&
        now >= edge_requested_->request.close_by) {
      edge_requested_->done.set_value(absl::UnavailableError(absl::StrCat(
          "no downstream round could start before the upstream's deadline: ",
          engine_->num_agents(), " agents available, min_available_agents ",
          config_.strategy().min_available_agents())));
      edge_requested_.reset();
    }
    if (edge_finish_.has_value() && edge_running_ == nullptr &&
        !pending_.has_value()) {
      finish = std::move(edge_finish_);
      edge_finish_.reset();
    }
  }
  if (!finish.has_value()) return;
  if (finish->model.size() > 0) {
    ReplaceModel(std::move(finish->model), finish->version);
  }
  engine_->StopAfterCurrentRound().IgnoreError();
  finished_ = true;
  FEDGE_LOG(INFO) << "the upstream federation finished: final model v"
                  << latest_model()->version;
}

void Coordinator::DeliverEdgeRound(const RoundOutcome& outcome,
                                   const RoundClose& close,
                                   const ModelState& base) {
  if (edge_running_ == nullptr ||
      edge_running_->engine_round != outcome.round) {
    return;
  }
  std::unique_ptr<EdgeRound> round = std::move(edge_running_);
  const RoundRecord& record = close.record;
  if (!close.next.has_value()) {
    round->done.set_value(absl::AbortedError(absl::StrCat(
        "round ", outcome.round, " produced no aggregate: ", record.num_agents,
        " agents reported, min_fit_agents ",
        config_.strategy().min_fit_agents(),
        close.aggregation_error.ok()
            ? std::string()
            : absl::StrCat(" (", close.aggregation_error.message(), ")"))));
    return;
  }
  absl::StatusOr<ModelState> delta = Subtract(*close.next, base);
  if (!delta.ok()) {
    round->done.set_value(delta.status());
    return;
  }
  EdgeRoundResult result;
  result.downstream_round = outcome.round;
  result.delta = *std::move(delta);
  result.num_examples = record.num_examples;
  result.num_agents = record.num_agents;
  result.num_failed = record.num_failed;
  result.train_loss = record.train_loss;
  result.train_accuracy = record.train_accuracy;
  result.train_seconds = record.train_seconds;
  round->done.set_value(std::move(result));
}

void Coordinator::FailEdgeRounds(const absl::Status& status) {
  std::unique_ptr<EdgeRound> requested;
  {
    absl::MutexLock lock(&mu_);
    requested = std::move(edge_requested_);
  }
  if (requested != nullptr) requested->done.set_value(status);
  if (edge_running_ != nullptr) {
    edge_running_->done.set_value(status);
    edge_running_.reset();
  }
}

}  // namespace fedge
