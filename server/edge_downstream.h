// EdgeDownstream: an edge aggregator's own federation, as its upstream loop
// (server/edge_aggregator.h) sees it. The Coordinator implements it in edge
// mode (config.upstream set; server/coordinator_edge.cc); tests use a fake.
//
// One upstream train task becomes one downstream round: the downstream
// agents train the upstream's model with the upstream's plan (each agent's
// seed derived as a flat federation derives it: AgentPlanSeed of the
// configured seed, the upstream round and the agent id), and the round's
// aggregate (the agents' example-weighted mean delta) goes back upstream as
// one update weighted by their total examples. So FedAvg of the tree equals
// FedAvg of the flat federation of the same agents (docs/hierarchy.md).
//
// Thread-safety: implementations allow RunRound and Finish from a thread
// other than the one driving the downstream federation.
#ifndef FEDGE_SERVER_EDGE_DOWNSTREAM_H_
#define FEDGE_SERVER_EDGE_DOWNSTREAM_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/strategy.h"
#include "common/tensor_buffer.h"

namespace fedge {

// What the upstream asked for.
struct EdgeRoundRequest {
  int64_t upstream_round = 0;  // Seeds the agents' plans (as upstream).
  int64_t model_version = 0;   // The upstream's version of `model`.
  ModelState model;            // The base model (the upstream's global).
  // The upstream's plan for this edge aggregator; each downstream agent
  // gets it with its own seed.
  TrainPlan plan;
  // The round closes by then at the latest (with what arrived, given
  // min_fit_agents), on the downstream's clock.
  absl::Time close_by = absl::InfiniteFuture();
};

// What a completed downstream round produced.
struct EdgeRoundResult {
  int64_t downstream_round = 0;
  // The agents' example-weighted mean delta: aggregate minus base model.
  ModelState delta;
  int64_t num_examples = 0;  // Sum over the agents that reported.
  int num_agents = 0;        // Agents whose updates are in `delta`.
  int num_failed = 0;        // Selected agents that failed or timed out.
  double train_loss = 0;     // Example-weighted means of the agents'.
  double train_accuracy = 0;
  double train_seconds = 0;  // The slowest agent's training time.
};

class EdgeDownstream {
 public:
  virtual ~EdgeDownstream() = default;

  // Runs one downstream round for `request` and blocks until it closes (all
  // selected agents reported, request.close_by, or shutdown).
  // UNAVAILABLE when it could not start by close_by (fewer than
  // min_available_agents downstream agents) or the downstream is shutting
  // down; ABORTED when the round closed without a quorum (min_fit_agents)
  // or without an aggregate (a non-finite one).
  virtual absl::StatusOr<EdgeRoundResult> RunRound(
      EdgeRoundRequest request) = 0;

  // The upstream federation finished: the downstream publishes
  // `final_model` as version `version` (when not empty) and finishes too,
  // so its agents leave with the final model.
  virtual void Finish(ModelState final_model, int64_t version) = 0;
};

}  // namespace fedge

#endif  // FEDGE_SERVER_EDGE_DOWNSTREAM_H_
