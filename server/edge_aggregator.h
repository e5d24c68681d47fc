// EdgeAggregator: the upstream side of an edge aggregator (fedge-coordinator
// with upstream.address set; docs/hierarchy.md). It is an agent of the
// upstream coordinator, through the same CoordinatorClient interface and
// status handling as fedge-agent, and turns each upstream train task into
// one round of its own federation (EdgeDownstream, the Coordinator in edge
// mode), whose aggregate it submits upstream as one update:
//
//   Join (retry with backoff) -> loop:
//     Poll -> train task: FetchModel, EdgeDownstream::RunRound (heartbeats
//                         from a thread of their own meanwhile),
//                         SubmitUpdate of the agents' mean delta weighted
//                         by their total examples (same upload id on
//                         retries), or ReportFailure(DOWNSTREAM) when the
//                         round produced none
//          -> evaluate:   not answered (the upstream's deadline closes it)
//          -> wait:       poll again
//          -> finished:   fetch the final model, EdgeDownstream::Finish,
//                         Leave, return OK
//
// A dead upstream is retried with backoff for ever (until Stop()); a lost
// session joins again. The update goes upstream raw (fp32) whatever the
// plan's encoding (that applies to the downstream agents' uploads), so the
// upstream sums what a flat federation would. Time and randomness are
// injected (Clock, Sleeper, seed).
//
// Thread-safety: Run() is called once, from one thread; Stop() from any.
#ifndef FEDGE_SERVER_EDGE_AGGREGATOR_H_
#define FEDGE_SERVER_EDGE_AGGREGATOR_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/model_signature.h"
#include "common/random.h"
#include "edge_agent/backoff.h"
#include "edge_agent/coordinator_client.h"
#include "edge_agent/join_credentials.h"
#include "edge_agent/sleeper.h"
#include "fedge/v1/config.pb.h"
#include "fedge/v1/federation.pb.h"
#include "server/edge_downstream.h"

namespace fedge {

struct EdgeAggregatorOptions {
  // The id sent with Join (the upstream may assign another, e.g. from the
  // client certificate). Required.
  std::string agent_id;
  std::string version = "fedge-coordinator (edge aggregator)";
  // Architectures declared at Join (the one this federation trains).
  std::vector<std::string> architectures;
  // Examples declared at Join (the downstream agents', when known).
  int64_t num_examples = 0;
  // Backoff after a failed call (> 0, max >= initial).
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(5);
  // The downstream round closes this long before the upstream task's
  // deadline (or at half the task's time, when that is later), leaving
  // time to upload (>= 0).
  absl::Duration upload_margin = absl::Seconds(5);
  // Seed of backoff jitter and upload ids.
  uint64_t seed = 1;
  // Join token / agent key towards an upstream with require_join_token.
  JoinCredentials join_credentials;
  // The upstream's pinned model-signing keys (upstream.
  // model_signing_public_key_paths); null: models are not verified. Must
  // outlive the aggregator.
  const ModelVerifier* model_verifier = nullptr;
};

// The options of `config.upstream()` (a validated config).
EdgeAggregatorOptions ToEdgeAggregatorOptions(
    const v1::CoordinatorConfig& config);

class EdgeAggregator {
 public:
  // `upstream`, `downstream` and `clock` must outlive the aggregator.
  // INVALID_ARGUMENT for a missing collaborator or bad options.
  static absl::StatusOr<std::unique_ptr<EdgeAggregator>> Create(
      EdgeAggregatorOptions options, CoordinatorClient* upstream,
      EdgeDownstream* downstream, const Clock* clock, Sleeper sleep);

  EdgeAggregator(const EdgeAggregator&) = delete;
  EdgeAggregator& operator=(const EdgeAggregator&) = delete;

  // Runs until the upstream federation finishes (OK, after Finish and
  // Leave) or Stop() (OK, after Leave). Join's PERMISSION_DENIED /
  // INVALID_ARGUMENT / UNAUTHENTICATED when the upstream refuses this edge
  // aggregator.
  absl::Status Run();

  // Asks Run() to leave and return after the current step. Thread-safe.
  void Stop() { stop_.store(true); }

  // Counters of Run().
  struct Stats {
    int64_t joins = 0;
    int64_t rounds_run = 0;         // Downstream rounds that aggregated.
    int64_t updates_submitted = 0;  // Acknowledged upstream.
    int64_t rounds_failed = 0;      // Reported upstream as failed.
    int64_t call_failures = 0;      // Upstream calls retried.
  };
  const Stats& stats() const { return stats_; }

 private:
  EdgeAggregator(EdgeAggregatorOptions options, CoordinatorClient* upstream,
                 EdgeDownstream* downstream, const Clock* clock, Sleeper sleep);

  // Loop steps; a non-OK status ends Run().
  absl::Status Join();
  absl::Status PollAndAct();
  absl::Status HandleTask(const v1::TrainTask& task);
  absl::Status Submit(const v1::TrainTask& task, absl::Time deadline,
                      const EdgeRoundResult& result);
  void ReportFailure(const v1::TrainTask& task, const std::string& detail,
                     v1::FailureReason reason = v1::FAILURE_REASON_DOWNSTREAM);
  absl::Status OnFinished(const v1::PollResponse& poll);
  // A failed call: joins again after a lost session, else backs off.
  void HandleCallError(absl::string_view what, const absl::Status& error);
  void BackOff(absl::string_view what, const absl::Status& error);
  void OnContact() { backoff_.Reset(); }

  EdgeAggregatorOptions options_;
  CoordinatorClient* const upstream_;
  EdgeDownstream* const downstream_;
  const Clock* const clock_;
  Sleeper sleep_;
  DeterministicRng rng_;
  Backoff backoff_;
  std::atomic<bool> stop_{false};
  bool joined_ = false;
  v1::JoinResponse session_;
  // Upstream rounds already answered (or given up) in this session.
  absl::flat_hash_set<int64_t> handled_rounds_;
  bool evaluate_logged_ = false;
  Stats stats_;
};

}  // namespace fedge

#endif  // FEDGE_SERVER_EDGE_AGGREGATOR_H_
