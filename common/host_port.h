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

}  // namespace fedge

#endif  // FEDGE_COMMON_HOST_PORT_H_
