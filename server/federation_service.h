// The gRPC adapters of fedge-coordinator: fedge.v1.Federation (agents) and
// fedge.v1.Operator (operators), on gRPC's callback API (no thread per
// call). Each method converts the request, calls the Coordinator and
// converts the status back; the services hold no state of their own.
#ifndef FEDGE_SERVER_FEDERATION_SERVICE_H_
#define FEDGE_SERVER_FEDERATION_SERVICE_H_

#include <functional>
#include <string>

#include "fedge/v1/federation.grpc.pb.h"
#include "server/coordinator.h"

namespace fedge {

// Under mutual TLS an operator's certificate is not an agent's: Join
// refuses it with PERMISSION_DENIED.
// FetchModel and SubmitUpdate are raw methods (ByteBuffers): model chunks
// are serialized, and update chunks read, without copying their data.
class FederationService final
    : public v1::Federation::WithRawCallbackMethod_FetchModel<
          v1::Federation::WithRawCallbackMethod_SubmitUpdate<
              v1::Federation::CallbackService>> {
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
  // A v1::FetchModelRequest, answered with v1::ModelChunk messages.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* FetchModel(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;
  // v1::UpdateChunk messages, answered with a v1::SubmitUpdateResponse.
  grpc::ServerReadReactor<grpc::ByteBuffer>* SubmitUpdate(
      grpc::CallbackServerContext* context,
      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* context,
                                  const v1::LeaveRequest* request,
                                  v1::LeaveResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* SubmitEvaluation(
      grpc::CallbackServerContext* context,
      const v1::SubmitEvaluationRequest* request,
      v1::SubmitEvaluationResponse* response) override;
  grpc::ServerWriteReactor<v1::ArchiveChunk>* FetchArchive(
      grpc::CallbackServerContext* context,
      const v1::FetchArchiveRequest* request) override;
  grpc::ServerUnaryReactor* ReportFailure(
      grpc::CallbackServerContext* context,
      const v1::ReportFailureRequest* request,
      v1::ReportFailureResponse* response) override;
  grpc::ServerUnaryReactor* SecAggStep(
      grpc::CallbackServerContext* context,
      const v1::SecAggStepRequest* request,
      v1::SecAggStepResponse* response) override;

 private:
  // Under mutual TLS: PERMISSION_DENIED when `token` is another agent's
  // session (Coordinator::CheckCaller).
  absl::Status Caller(const grpc::CallbackServerContext& context,
                      const std::string& token, absl::string_view call) const;

  Coordinator* const coordinator_;
  const int chunk_bytes_;
};

// Under mutual TLS (require_operator_cert) every call needs an operator
// certificate (common name "operator" or "operator-*"); agents' are
// refused with PERMISSION_DENIED. Otherwise every call needs the operator
// token (metadata "authorization: Bearer <token>", compared by SHA-256 in
// constant time): UNAUTHENTICATED without it. Actions and refusals are
// logged and audited with the caller.
// ExportModel is a raw method, as FederationService's FetchModel.
class OperatorService final
    : public v1::Operator::WithRawCallbackMethod_ExportModel<
          v1::Operator::CallbackService> {
 public:
  OperatorService(Coordinator* coordinator, bool require_operator_cert,
                  Sha256Digest operator_token_sha256, int chunk_bytes)
      : coordinator_(coordinator),
        require_operator_cert_(require_operator_cert),
        operator_token_sha256_(operator_token_sha256),
        chunk_bytes_(chunk_bytes) {}

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
  grpc::ServerUnaryReactor* Pause(
      grpc::CallbackServerContext* context, const v1::PauseRequest* request,
      v1::OperatorActionResponse* response) override;
  grpc::ServerUnaryReactor* Resume(
      grpc::CallbackServerContext* context, const v1::ResumeRequest* request,
      v1::OperatorActionResponse* response) override;
  grpc::ServerUnaryReactor* StopAfterRound(
      grpc::CallbackServerContext* context,
      const v1::StopAfterRoundRequest* request,
      v1::OperatorActionResponse* response) override;
  grpc::ServerUnaryReactor* SetRounds(
      grpc::CallbackServerContext* context, const v1::SetRoundsRequest* request,
      v1::OperatorActionResponse* response) override;
  grpc::ServerUnaryReactor* EvictAgent(
      grpc::CallbackServerContext* context,
      const v1::EvictAgentRequest* request,
      v1::OperatorActionResponse* response) override;
  grpc::ServerUnaryReactor* AllowAgent(
      grpc::CallbackServerContext* context,
      const v1::AllowAgentRequest* request,
      v1::OperatorActionResponse* response) override;
  // A v1::ExportModelRequest (no fields), answered with v1::ModelChunk
  // messages.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* ExportModel(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* CreateJoinToken(
      grpc::CallbackServerContext* context,
      const v1::CreateJoinTokenRequest* request,
      v1::CreateJoinTokenResponse* response) override;
  grpc::ServerUnaryReactor* ListJoinTokens(
      grpc::CallbackServerContext* context,
      const v1::ListJoinTokensRequest* request,
      v1::ListJoinTokensResponse* response) override;
  grpc::ServerUnaryReactor* RevokeJoinToken(
      grpc::CallbackServerContext* context,
      const v1::RevokeJoinTokenRequest* request,
      v1::OperatorActionResponse* response) override;

 private:
  // The caller as the audit log names it, or PERMISSION_DENIED /
  // UNAUTHENTICATED (audited).
  absl::StatusOr<std::string> Operator(
      grpc::CallbackServerContext* context) const;
  // Runs an action for an authorized operator and answers with `done`.
  grpc::ServerUnaryReactor* Act(
      grpc::CallbackServerContext* context,
      v1::OperatorActionResponse* response,
      const std::function<absl::Status(const std::string& who)>& action,
      const std::string& done);

  Coordinator* const coordinator_;
  const bool require_operator_cert_;
  const Sha256Digest operator_token_sha256_;
  const int chunk_bytes_;
};

}  // namespace fedge

#endif  // FEDGE_SERVER_FEDERATION_SERVICE_H_
