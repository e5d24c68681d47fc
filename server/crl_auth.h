// The gRPC side of certificate revocation (tls.crl_path): an
// AuthMetadataProcessor on the coordinator's server credentials, so every
// call (also on a connection opened before the revocation) has its client
// certificate checked by CrlChecker before it reaches a service. A revoked
// certificate's call fails with UNAUTHENTICATED "certificate serial ... is
// revoked".
#ifndef FEDGE_SERVER_CRL_AUTH_H_
#define FEDGE_SERVER_CRL_AUTH_H_

#include <functional>
#include <memory>

#include <grpcpp/security/auth_metadata_processor.h>

#include "server/crl_checker.h"

namespace fedge {

class CrlAuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  // `on_refused` is called with each refusal (for the metrics and logs).
  CrlAuthProcessor(std::shared_ptr<CrlChecker> checker,
                   std::function<void(const absl::Status&)> on_refused)
      : checker_(std::move(checker)), on_refused_(std::move(on_refused)) {}

  // The check is a hash lookup (the CRL reload a stat() once a second):
  // run inline on gRPC's thread.
  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& auth_metadata,
                       grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  std::shared_ptr<CrlChecker> checker_;
  std::function<void(const absl::Status&)> on_refused_;
};

}  // namespace fedge

#endif  // FEDGE_SERVER_CRL_AUTH_H_
