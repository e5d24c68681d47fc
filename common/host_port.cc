#include "common/host_port.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

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

absl::Status CheckAddressFree(const std::string& address) {
  std::string host;
  int port = 0;
  if (!ParseHostPort(address, &host, &port).ok() || port == 0) {
    return absl::OkStatus();
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = absl::StrCat(port);
  if (getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(),
                  &hints, &found) != 0) {
    return absl::OkStatus();
  }
  bool in_use = false;
  for (addrinfo* a = found; a != nullptr && !in_use; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 && errno == EADDRINUSE) {
      in_use = true;
    }
    close(fd);
  }
  freeaddrinfo(found);
  if (!in_use) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      "'", address, "' is in use by another process (another coordinator?)"));
}

}  // namespace fedge
