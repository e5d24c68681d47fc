#include "common/host_port.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace fedge {

absl::Status ParseHostPort(const std::string& address, std::string* host,
                           int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", address,
                     "' is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464)"));
  }
  *host = address.substr(0, colon);
  if (host->front() == '[') {
    if (host->size() < 3 || host->back() != ']') {
      return absl::InvalidArgumentError(
          absl::StrCat("bad IPv6 host in '", address, "'"));
    }
    *host = host->substr(1, host->size() - 2);
  } else if (host->find(':') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "IPv6 host in '", address, "' needs brackets: [::1]:PORT"));
  }
  if (!absl::SimpleAtoi(address.substr(colon + 1), port) || *port < 0 ||
      *port > 65535 || address.size() == colon + 1 ||
      !absl::ascii_isdigit(address[colon + 1])) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad port in '", address, "' (0-65535; 0 picks one)"));
  }
  return absl::OkStatus();
}

}  // namespace fedge
