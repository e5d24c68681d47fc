// The gRPC adapters of fedge-coordinator: fedge.v1.Federation (agents) and
// fedge.v1.Operator (operators), on gRPC's callback API (no thread per
// call). Each method converts the request, calls the Coordinator and
// converts the status back; the services hold no state of their own.
#ifndef FEDGE_SERVER_FEDERATION_SERVICE_H_
#define FEDGE_SERVER_FEDERATION_SERVICE_H_

#include "fedge/v1/federation.grpc.pb.h"
#include "server/coordinator.h"

namespace fedge {

class FederationService final : public v1::Federation::CallbackService {
 public:
  // `coordinator` must outlive the service.
  explicit FederationService(Coordinator* coordinator, int chunk_bytes)
      : coordinator_(coordinator), chunk_bytes_(chunk_bytes) {}

  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* context,
                                 const v1::JoinRequest* request,
                                 v1::JoinResponse* response) override;
  grpc::ServerUnaryReactor* Poll(grpc::CallbackServerContext* context,
                                 const v1::PollRequest* request,
                                 v1::PollResponse* response) override;
  grpc::ServerWriteReactor<v1::ModelChunk>* FetchModel(
      grpc::CallbackServerContext* context,
      const v1::FetchModelRequest* request) override;
  grpc::ServerReadReactor<v1::UpdateChunk>* SubmitUpdate(
      grpc::CallbackServerContext* context,
      v1::SubmitUpdateResponse* response) override;
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* context,
                                  const v1::LeaveRequest* request,
                                  v1::LeaveResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;

 private:
  Coordinator* const coordinator_;
  const int chunk_bytes_;
};

class OperatorService final : public v1::Operator::CallbackService {
 public:
  explicit OperatorService(Coordinator* coordinator)
      : coordinator_(coordinator) {}

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::GetStatusResponse* response) override;
  grpc::ServerUnaryReactor* ListAgents(
      grpc::CallbackServerContext* context,
      const v1::ListAgentsRequest* request,
      v1::ListAgentsResponse* response) override;
  grpc::ServerUnaryReactor* ListRounds(
      grpc::CallbackServerContext* context,
      const v1::ListRoundsRequest* request,
      v1::ListRoundsResponse* response) override;

 private:
  Coordinator* const coordinator_;
};

}  // namespace fedge

#endif  // FEDGE_SERVER_FEDERATION_SERVICE_H_
