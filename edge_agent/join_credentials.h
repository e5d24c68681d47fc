// What an agent (or an edge aggregator towards its upstream) proves its id
// with when the coordinator requires join tokens (docs/security.md): the
// join token the operator gave it (a file, `join_token_path`) until it is
// enrolled, then the agent key its first Join returned, kept in the state
// dir with mode 0600. Both go into every Join while both exist: the key
// wins; the token re-enrolls an agent whose enrollment was revoked.
//
// Thread-compatible.
#ifndef FEDGE_EDGE_AGENT_JOIN_CREDENTIALS_H_
#define FEDGE_EDGE_AGENT_JOIN_CREDENTIALS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/v1/federation.pb.h"

namespace fedge {

class JoinCredentials {
 public:
  JoinCredentials() = default;  // None: an open coordinator or mutual TLS.
  // Reads the token at `token_path` ("" = none) and the key at `key_path`
  // (missing = not enrolled yet). INVALID_ARGUMENT naming
  // `token_field` for an unreadable or empty token file.
  static absl::StatusOr<JoinCredentials> Load(const std::string& token_path,
                                              const std::string& key_path,
                                              const std::string& token_field);
  // Sets join_token and agent_key of `request`.
  void Apply(v1::JoinRequest& request) const;
  // Keeps the agent key of `response` (when it carries one) in memory and
  // at key_path (atomically, mode 0600).
  absl::Status Remember(const v1::JoinResponse& response);

 private:
  std::string token_;
  std::string key_;
  std::string key_path_;
};

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_JOIN_CREDENTIALS_H_
