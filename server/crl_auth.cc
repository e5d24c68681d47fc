#include "server/crl_auth.h"

#include <grpc/grpc_security_constants.h>

namespace fedge {

grpc::Status CrlAuthProcessor::Process(const InputMetadata& auth_metadata,
                                       grpc::AuthContext* context,
                                       OutputMetadata* consumed_auth_metadata,
                                       OutputMetadata* response_metadata) {
  if (context == nullptr) return grpc::Status::OK;
  const std::vector<grpc::string_ref> certs =
      context->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  // Without a client certificate there is nothing to revoke (mutual TLS
  // refuses such connections before any call).
  if (certs.empty()) return grpc::Status::OK;
  const absl::Status s = checker_->Check(
      absl::string_view(certs.front().data(), certs.front().size()));
  if (s.ok()) return grpc::Status::OK;
  if (on_refused_) on_refused_(s);
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      std::string(s.message()));
}

}  // namespace fedge
