// FakeCoordinatorClient: a scriptable CoordinatorClient for agent tests.
// Each method returns the next scripted result (or a default when its queue
// is empty) and records the call. FakeTrainer: a LocalTrainer that returns
// the global model as the delta with fixed metrics, and records its plans;
// it "takes" TrainerLog::steps steps, asking the plan's should_stop before
// each, and honours resume_from.
// Not thread-safe, except Heartbeat.
#ifndef FEDGE_TESTS_EDGE_AGENT_FAKE_COORDINATOR_CLIENT_H_
#define FEDGE_TESTS_EDGE_AGENT_FAKE_COORDINATOR_CLIENT_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/local_trainer.h"
#include "edge_agent/coordinator_client.h"

namespace fedge {

class FakeCoordinatorClient final : public CoordinatorClient {
 public:
  // Scripts, consumed front first.
  std::deque<absl::StatusOr<v1::JoinResponse>> join_results;
  std::deque<absl::StatusOr<v1::PollResponse>> poll_results;
  std::deque<absl::Status> fetch_errors;  // Returned before serving models.
  std::deque<absl::StatusOr<v1::SubmitUpdateResponse>> submit_results;
  // Defaults when a script is empty: Join errs with this when not OK (else
  // a fresh session "s<n>"); Poll answers "finished"; Submit accepts.
  absl::Status join_default = absl::OkStatus();
  // Served by FetchModel.
  std::map<int64_t, ModelState> models;

  // Recorded calls.
  std::vector<v1::JoinRequest> joins;
  std::vector<v1::PollRequest> polls;
  std::vector<int64_t> fetches;
  std::vector<std::string> fetch_tokens;
  std::vector<v1::UpdateMetadata> submits;
  std::vector<int64_t> encoded_sizes;        // Of lossy-encoded submissions.
  std::vector<ModelState> submitted_deltas;  // As passed to SubmitUpdate.
  std::vector<std::string> leaves;
  // Budgets SetConnectBudget was given, in order.
  std::vector<absl::Duration> connect_budgets;
  // Upload ids acknowledged (each counted once).
  std::set<std::string> accepted_uploads;

  absl::StatusOr<v1::JoinResponse> Join(
      const v1::JoinRequest& request) override {
    joins.push_back(request);
    if (!join_results.empty()) return Pop(join_results);
    if (!join_default.ok()) return join_default;
    v1::JoinResponse response;
    response.set_session_token(absl::StrCat("s", joins.size()));
    response.set_agent_id(request.agent_id());
    response.set_heartbeat_interval_ms(2000);
    response.mutable_model()->set_architecture("2nn");
    response.set_partition_index(-1);
    return response;
  }

  absl::StatusOr<v1::PollResponse> Poll(
      const v1::PollRequest& request) override {
    polls.push_back(request);
    if (!poll_results.empty()) return Pop(poll_results);
    v1::PollResponse response;
    response.set_finished(true);
    return response;
  }

  absl::StatusOr<ModelState> FetchModel(
      const std::string& session_token, int64_t version,
      const std::string& expected_sha256_hex) override {
    fetches.push_back(version);
    fetch_tokens.push_back(session_token);
    if (!fetch_errors.empty()) return Pop(fetch_errors);
    auto it = models.find(version);
    if (it == models.end()) return absl::NotFoundError("no such version");
    return it->second.Clone();
  }

  absl::StatusOr<v1::SubmitUpdateResponse> SubmitUpdate(
      v1::UpdateMetadata metadata, const ModelState& delta,
      const EncodedModel* encoded) override {
    if (encoded != nullptr) encoded_sizes.push_back(EncodedSize(*encoded));
    submits.push_back(metadata);
    submitted_deltas.push_back(delta.Clone());
    if (!submit_results.empty()) {
      absl::StatusOr<v1::SubmitUpdateResponse> r = Pop(submit_results);
      if (!r.ok()) return r;
    }
    v1::SubmitUpdateResponse response;
    response.set_duplicate(
        !accepted_uploads.insert(metadata.upload_id()).second);
    return response;
  }

  absl::Status Leave(const std::string& session_token) override {
    leaves.push_back(session_token);
    return absl::OkStatus();
  }

  absl::Status FetchArchive(const std::string& session_token,
                            const std::string& sha256_hex, int64_t size_bytes,
                            const std::string& path) override {
    return absl::NotFoundError("the fake serves no archive");
  }

  absl::Status SubmitEvaluation(
      const v1::SubmitEvaluationRequest& request) override {
    evaluations.push_back(request);
    if (!evaluation_results.empty()) return Pop(evaluation_results);
    return absl::OkStatus();
  }
  std::vector<v1::SubmitEvaluationRequest> evaluations;
  std::deque<absl::Status> evaluation_results;

  // Thread-safe, like the real one.
  void SetConnectBudget(absl::Duration budget) override {
    connect_budgets.push_back(budget);
  }

  absl::Status Heartbeat(const std::string& session_token) override {
    heartbeats.fetch_add(1);
    return absl::OkStatus();
  }
  std::atomic<int> heartbeats{0};

  absl::Status ReportFailure(const v1::ReportFailureRequest& request) override {
    failures.push_back(request);
    if (!failure_results.empty()) return Pop(failure_results);
    return absl::OkStatus();
  }
  std::vector<v1::ReportFailureRequest> failures;
  std::deque<absl::Status> failure_results;

 private:
  template <typename T>
  static T Pop(std::deque<T>& queue) {
    T front = std::move(queue.front());
    queue.pop_front();
    return front;
  }
};

// What FakeTrainers did, shared with the test.
struct TrainerLog {
  std::vector<TrainPlan> plans;
  std::vector<size_t> num_indices;  // indices.size() per call.
  double seconds = 2.0;             // Reported training time.
  absl::Status error;               // Returned by Train when not OK.
  // Really blocks this long in Train (a slow device, in real time).
  absl::Duration real_delay = absl::ZeroDuration();
  // Steps of a training, and what happens before each (e.g. a condition
  // fails, the clock moves).
  int64_t steps = 60;
  std::function<void(int64_t step)> on_step;
  // Per call: the step it resumed from (-1: started afresh), and where it
  // stopped (-1: it finished).
  std::vector<int64_t> resumed_at;
  std::vector<int64_t> stopped_at;
};

class FakeTrainer final : public LocalTrainer {
 public:
  explicit FakeTrainer(TrainerLog* log) : log_(log) {}

  absl::StatusOr<TrainOutput> Train(
      const ModelState& global, const TrainPlan& plan,
      absl::Span<const int64_t> indices) override {
    log_->plans.push_back(plan);
    log_->num_indices.push_back(indices.size());
    if (log_->real_delay > absl::ZeroDuration()) {
      absl::SleepFor(log_->real_delay);
    }
    if (!log_->error.ok()) return log_->error;
    TrainOutput out;
    int64_t step = 0;
    if (plan.resume_from != nullptr) {
      step = plan.resume_from->progress.num_steps;
    }
    log_->resumed_at.push_back(plan.resume_from != nullptr ? step : -1);
    for (; step < log_->steps; ++step) {
      if (log_->on_step) log_->on_step(step);
      if (plan.should_stop && plan.should_stop()) {
        log_->stopped_at.push_back(step);
        out.interrupted = true;
        out.continuation.weights = global.Clone();
        out.continuation.progress.num_steps = step;
        out.continuation.progress.order.resize(600);
        out.continuation.progress.seconds = log_->seconds * step / log_->steps;
        return out;
      }
    }
    log_->stopped_at.push_back(-1);
    out.delta = global.Clone();
    out.metrics.num_examples = 600;
    out.metrics.num_steps = log_->steps;
    out.metrics.loss = 0.31;
    out.metrics.accuracy = 0.9;
    out.metrics.seconds = log_->seconds;
    return out;
  }

  absl::StatusOr<EvalMetrics> Evaluate(const ModelState&) override {
    return absl::FailedPreconditionError("no evaluation set");
  }

 private:
  TrainerLog* log_;
};

}  // namespace fedge

#endif  // FEDGE_TESTS_EDGE_AGENT_FAKE_COORDINATOR_CLIENT_H_
