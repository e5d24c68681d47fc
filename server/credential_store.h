// Who may join without mutual TLS: join tokens and the agents enrolled with
// them (issue #9, docs/security.md "Join tokens").
//
// An operator makes a join token (`fedge token create [--agent ID]`): a
// token id and a random secret, "<token_id>.<secret>", shown once. The
// coordinator keeps only SHA-256(secret), the agent id the token is for
// ("" = any: a fleet token), its expiry and a label. An agent's first Join
// with a valid token enrolls it: the coordinator returns a random agent key
// and keeps SHA-256(key) for that id; later Joins present the key (the
// token may have expired meanwhile). An enrolled id cannot be taken over
// with a fleet token; a token made for that id re-enrolls it. Revoking a
// token revokes it and every enrollment made with it.
//
// Persistence: an append-only journal (one text line per change,
// "<state_dir>/credentials"), replayed at start, written with fdatasync
// before a change is acknowledged. Lines:
//   T <token_id> <sha256_hex> <agent_id|*> <created_ms> <expires_ms> <label_hex|->
//   R <token_id>
//   E <agent_id> <key_sha256_hex> <token_id>
// Replay validates every field and size (ReplayCredentialJournal is fuzzed).
//
// No gRPC; thread-safe.
#ifndef FEDGE_SERVER_CREDENTIAL_STORE_H_
#define FEDGE_SERVER_CREDENTIAL_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/sha256.h"

namespace fedge {

// Random bytes from the kernel's CSPRNG (getrandom), as lower-case hex.
std::string SecureRandomHex(int bytes);

// Constant-time equality of two digests.
bool DigestsEqual(const Sha256Digest& a, const Sha256Digest& b);

struct JoinTokenRecord {
  std::string id;
  Sha256Digest secret_sha256{};
  std::string agent_id;  // "" = any agent (fleet token).
  int64_t created_unix_ms = 0;
  int64_t expires_unix_ms = 0;
  bool revoked = false;
  std::string label;
  int64_t enrollments = 0;  // Live enrollments made with it.
};

struct CredentialLimits {
  int64_t max_journal_bytes = int64_t{256} << 20;
  int64_t max_tokens = 100000;
  int64_t max_label_bytes = 200;
};

// The journal's state, rebuilt by replay.
struct CredentialState {
  absl::flat_hash_map<std::string, JoinTokenRecord> tokens;
  struct Enrollment {
    Sha256Digest key_sha256{};
    std::string token_id;
  };
  absl::flat_hash_map<std::string, Enrollment> enrollments;  // By agent id.
};

// Applies journal `bytes` to `state`. INVALID_ARGUMENT naming the line for
// a malformed line; RESOURCE_EXHAUSTED over `limits`.
absl::Status ReplayCredentialJournal(absl::string_view bytes,
                                     const CredentialLimits& limits,
                                     CredentialState& state);

// "<token_id>.<secret>" split; INVALID_ARGUMENT when it is not one.
struct ParsedJoinToken {
  std::string id;
  std::string secret;
};
absl::StatusOr<ParsedJoinToken> ParseJoinToken(absl::string_view token);

class CredentialStore {
 public:
  // Opens (creating when missing) and replays the journal at `path`.
  static absl::StatusOr<std::unique_ptr<CredentialStore>> Open(
      const std::string& path, CredentialLimits limits = {});
  ~CredentialStore();
  CredentialStore(const CredentialStore&) = delete;
  CredentialStore& operator=(const CredentialStore&) = delete;

  struct CreatedToken {
    std::string token;  // "<id>.<secret>"
    JoinTokenRecord record;
  };
  // INVALID_ARGUMENT for a bad agent id, ttl <= 0 or a long label;
  // RESOURCE_EXHAUSTED past max_tokens.
  absl::StatusOr<CreatedToken> CreateToken(const std::string& agent_id,
                                           absl::Duration ttl,
                                           const std::string& label,
                                           absl::Time now);
  std::vector<JoinTokenRecord> Tokens() const;  // Sorted by creation.
  // Revokes the token and its enrollments; returns the agents enrolled
  // with it. NOT_FOUND for an unknown id.
  absl::StatusOr<std::vector<std::string>> RevokeToken(
      const std::string& token_id);

  // How a Join proved who it is.
  struct Grant {
    std::string token_id;   // The token that enrolled it (now or earlier).
    std::string agent_key;  // Set when this Join enrolled the agent.
  };
  // Checks a Join of `agent_id` carrying `agent_key` and/or `join_token`;
  // enrolls the agent on a valid token. UNAUTHENTICATED for a missing,
  // unknown, wrong, expired or revoked credential; PERMISSION_DENIED for a
  // token made for another agent or a fleet token naming an enrolled id.
  // The messages name the token id, never a secret.
  absl::StatusOr<Grant> Authenticate(const std::string& agent_id,
                                     const std::string& agent_key,
                                     const std::string& join_token,
                                     absl::Time now);

 private:
  CredentialStore(std::string path, CredentialLimits limits, int fd,
                  CredentialState state, int64_t size);
  absl::Status AppendLocked(const std::string& line)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const CredentialLimits limits_;
  mutable absl::Mutex mu_;
  const int fd_;  // The journal, O_APPEND.
  CredentialState state_ ABSL_GUARDED_BY(mu_);
  int64_t size_ ABSL_GUARDED_BY(mu_) = 0;
};

// The operator token in the file at `path` (the coordinator's and the
// `fedge` tool's one reader of it): the file's contents without surrounding
// whitespace, which must be one line of at least 16 printable ASCII
// characters (it travels as an HTTP header value). NOT_FOUND or another
// I/O code naming `path` when it cannot be read; FAILED_PRECONDITION naming
// `path` and what is wrong (how many lines, a control character, too
// short, over 4 KiB) otherwise. Never quotes the contents: a wrong path
// could name a private key.
absl::StatusOr<std::string> ReadOperatorToken(const std::string& path);

// The operator token: read from `path` (ReadOperatorToken), or created
// there (a random token, mode 0600) when the file does not exist. Returns
// SHA-256 of the token (the coordinator keeps nothing else).
// FAILED_PRECONDITION for a file ReadOperatorToken refuses, or one others
// may read.
absl::StatusOr<Sha256Digest> LoadOrCreateOperatorToken(const std::string& path);

}  // namespace fedge

#endif  // FEDGE_SERVER_CREDENTIAL_STORE_H_
