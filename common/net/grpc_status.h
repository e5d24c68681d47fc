// The one conversion each way between absl::Status (used by every fedge
// module) and grpc::Status (used on the wire). Transport code calls these at
// its edge; nothing else includes gRPC status types.
//
// Codes keep their numbers (both follow google.rpc.Code) and the message is
// kept verbatim; gRPC's binary error details are dropped. Stateless and
// thread-safe.
#ifndef FEDGE_COMMON_NET_GRPC_STATUS_H_
#define FEDGE_COMMON_NET_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace fedge {

// Returns a grpc::Status with the same code and message as `status`
// (grpc::Status::OK for an OK status).
grpc::Status ToGrpcStatus(const absl::Status& status);

// Returns an absl::Status with the same code and message as `status`
// (absl::OkStatus() for OK). A code outside google.rpc.Code (0..16) becomes
// UNKNOWN with the original number in the message.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace fedge

#endif  // FEDGE_COMMON_NET_GRPC_STATUS_H_
