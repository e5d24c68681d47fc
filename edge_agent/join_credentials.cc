#include "edge_agent/join_credentials.h"

#include <cerrno>
#include <sys/stat.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace fedge {
namespace {

constexpr int64_t kMaxSecretFileBytes = 4096;

}  // namespace

absl::StatusOr<JoinCredentials> JoinCredentials::Load(
    const std::string& token_path, const std::string& key_path,
    const std::string& token_field) {
  JoinCredentials c;
  c.key_path_ = key_path;
  if (!token_path.empty()) {
    absl::StatusOr<std::string> token =
        ReadSmallFile(token_path, kMaxSecretFileBytes);
    if (!token.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config field '", token_field, "': ", token.status().message()));
    }
    c.token_ = std::string(absl::StripAsciiWhitespace(*token));
    if (c.token_.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config field '", token_field, "': ", token_path,
          " is empty; put the token `fedge token create` printed in it"));
    }
  }
  if (!key_path.empty()) {
    struct stat st;
    if (stat(key_path.c_str(), &st) == 0) {
      absl::StatusOr<std::string> key =
          ReadSmallFile(key_path, kMaxSecretFileBytes);
      if (!key.ok()) return key.status();
      c.key_ = std::string(absl::StripAsciiWhitespace(*key));
    } else if (errno != ENOENT) {
      return ErrnoStatus(errno, "cannot stat the agent key", key_path);
    }
  }
  return c;
}

void JoinCredentials::Apply(v1::JoinRequest& request) const {
  request.set_join_token(token_);
  request.set_agent_key(key_);
}

absl::Status JoinCredentials::Remember(const v1::JoinResponse& response) {
  if (response.agent_key().empty()) return absl::OkStatus();
  key_ = response.agent_key();
  if (key_path_.empty()) return absl::OkStatus();
  return WriteStringAtomically(key_path_, key_ + "\n", 0600);
}

}  // namespace fedge
