// CoordinatorServer wires fedge-coordinator together from a validated
// CoordinatorConfig: builds the initial model (torch-free initializer), the
// optional central evaluator (a fedge-evaluator child process), the Coordinator
// core, a gRPC server (TLS, callback API) with the Federation and Operator
// services, and the operators' HTTP listener (metrics, status page); then
// drives the core from one thread until all rounds are done or Shutdown() is
// called. With upstream.address set it is also an edge aggregator: an
// EdgeAggregator thread (server/edge_aggregator.h) is the upstream
// coordinator's agent, over the agent's gRPC client, and runs a round of
// this coordinator for each upstream task.
#ifndef FEDGE_SERVER_COORDINATOR_SERVER_H_
#define FEDGE_SERVER_COORDINATOR_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "fedge/v1/config.pb.h"
#include "server/coordinator.h"
#include "server/edge_aggregator.h"
#include "server/evaluator_process.h"
#include "server/federation_service.h"
#include "server/http_server.h"

namespace fedge {

class CoordinatorServer {
 public:
  // Validates `config`, builds everything and starts listening (port 0
  // picks a free port, written to <state_dir>/port). INVALID_ARGUMENT
  // naming a bad field; UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Create(
      const v1::CoordinatorConfig& config);
  ~CoordinatorServer();

  // The port actually bound.
  int port() const { return port_; }
  // The HTTP listener's port (0 when off).
  int http_port() const { return http_ == nullptr ? 0 : http_->port(); }

  // Drives rounds until they are all done (when exit_when_done), until
  // Shutdown() or until persisting a round fails (a full disk: the error,
  // naming the path, is returned so the process exits non-zero). Then: the
  // coordinator answers every parked call and closes the round in progress,
  // its checkpoint and history line are flushed, and the gRPC server stops
  // (streams still open after a grace period are cancelled). Writes the
  // final model to <state_dir>/final_model.fedge when the federation
  // finished. Returns within a few seconds of Shutdown().
  absl::Status Run();

  // Asks Run() to return soon; an evaluation in progress is cancelled (the
  // round is recorded without accuracy). Thread-safe; callable more than
  // once.
  void Shutdown();

  Coordinator& coordinator() { return *coordinator_; }

 private:
  CoordinatorServer() = default;
  absl::Status WriteFinalModel();
  // The operators' HTTP listener, when http_address is set.
  absl::Status StartHttp();
  // Edge mode: the upstream client and the EdgeAggregator thread.
  absl::Status StartEdgeAggregator();
  // Stops and joins that thread (after the coordinator answered its
  // RunRound: call BeginShutdown first); returns its error, if any.
  absl::Status StopEdgeAggregator();

  v1::CoordinatorConfig config_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<FederationService> federation_;
  std::unique_ptr<OperatorService> operator_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HttpServer> http_;
  EvaluatorProcess* evaluator_ = nullptr;  // Owned by the coordinator.
  std::unique_ptr<CoordinatorClient> upstream_;
  std::function<void()> cancel_upstream_call_;
  std::unique_ptr<EdgeAggregator> edge_;
  // The upstream's pinned model-signing keys (edge aggregator).
  std::optional<ModelVerifier> upstream_verifier_;
  std::thread edge_thread_;
  absl::Status edge_status_;  // Written by edge_thread_ before it ends.
  Event stop_;
  int port_ = 0;
};

}  // namespace fedge

#endif  // FEDGE_SERVER_COORDINATOR_SERVER_H_
