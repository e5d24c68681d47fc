// "HOST:PORT" addresses, as the coordinator's listeners take them.
#ifndef FEDGE_COMMON_HOST_PORT_H_
#define FEDGE_COMMON_HOST_PORT_H_

#include <string>

#include "absl/status/status.h"

namespace fedge {

// Splits "HOST:PORT" or "[IPV6]:PORT" into a host (brackets removed, as
// getaddrinfo takes it) and a port in 0-65535 (0: the system picks one).
// INVALID_ARGUMENT saying what is wrong with `address`, for the caller to
// prefix with the field it came from.
absl::Status ParseHostPort(const std::string& address, std::string* host,
                           int* port);

// Whether another socket listens on `address` ("HOST:PORT", as above):
// binds a socket to each of the host's addresses and lets it go.
// UNAVAILABLE naming the address when one is in use; OK for port 0, and
// when binding fails for another reason (the listener itself reports
// that). For a listener that opens late (gRPC binds in BuildAndStart), so
// that a port in use stops a start before anything is written.
absl::Status CheckAddressFree(const std::string& address);

}  // namespace fedge

#endif  // FEDGE_COMMON_HOST_PORT_H_
