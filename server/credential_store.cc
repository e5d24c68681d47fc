#include "server/credential_store.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fl_config.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

constexpr int kSecretBytes = 32;
// Largest operator token file read.
constexpr int64_t kMaxTokenBytes = 4096;
constexpr size_t kMaxLineBytes = 1024;
constexpr size_t kTokenIdHexBytes = 8;

bool ValidTokenId(absl::string_view id) {
  return id.size() == 3 + 2 * kTokenIdHexBytes && absl::StartsWith(id, "jt-") &&
         IsLowerHex(id.substr(3));
}

absl::StatusOr<Sha256Digest> ParseDigest(absl::string_view hex) {
  if (hex.size() != 64 || !IsLowerHex(hex)) {
    return absl::InvalidArgumentError("not a SHA-256 in hex");
  }
  const std::string bytes = absl::HexStringToBytes(hex);
  Sha256Digest d;
  std::memcpy(d.data(), bytes.data(), d.size());
  return d;
}

Sha256Digest HashSecret(absl::string_view secret) { return Sha256Of(secret); }

}  // namespace

std::string SecureRandomHex(int bytes) {
  std::string raw(static_cast<size_t>(bytes), '\0');
  size_t got = 0;
  while (got < raw.size()) {
    const ssize_t n = getrandom(raw.data() + got, raw.size() - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // getrandom does not fail once the pool is initialised; a machine
      // without it cannot make secrets at all.
      FEDGE_LOG(FATAL) << "getrandom failed: " << std::strerror(errno);
    }
    got += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(raw);
}

bool DigestsEqual(const Sha256Digest& a, const Sha256Digest& b) {
  uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ b[i];
  return diff == 0;
}

absl::StatusOr<ParsedJoinToken> ParseJoinToken(absl::string_view token) {
  const size_t dot = token.find('.');
  if (dot == absl::string_view::npos || !ValidTokenId(token.substr(0, dot)) ||
      token.size() - dot - 1 != 2 * kSecretBytes ||
      !IsLowerHex(token.substr(dot + 1))) {
    return absl::InvalidArgumentError(
        "a join token is \"jt-<16 hex>.<64 hex>\" as `fedge token create` "
        "printed it");
  }
  return ParsedJoinToken{std::string(token.substr(0, dot)),
                         std::string(token.substr(dot + 1))};
}

absl::Status ReplayCredentialJournal(absl::string_view bytes,
                                     const CredentialLimits& limits,
                                     CredentialState& state) {
  if (static_cast<int64_t>(bytes.size()) > limits.max_journal_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the credential journal holds ", bytes.size(),
                     " bytes, more than the limit of ",
                     limits.max_journal_bytes));
  }
  int64_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(bytes, '\n')) {
    ++line_no;
    if (line.empty()) continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(
          "credential journal line ", line_no, ": ", why));
    };
    if (line.size() > kMaxLineBytes) return bad("line too long");
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    if (f[0] == "T") {
      if (f.size() != 7) return bad("a token line has 7 fields");
      JoinTokenRecord t;
      if (!ValidTokenId(f[1])) return bad("bad token id");
      t.id = std::string(f[1]);
      auto digest = ParseDigest(f[2]);
      if (!digest.ok()) return bad(digest.status().message());
      t.secret_sha256 = *digest;
      if (f[3] != "*") {
        if (!ValidateAgentId(f[3]).ok()) return bad("bad agent id");
        t.agent_id = std::string(f[3]);
      }
      if (!absl::SimpleAtoi(f[4], &t.created_unix_ms) ||
          !absl::SimpleAtoi(f[5], &t.expires_unix_ms)) {
        return bad("bad time");
      }
      if (f[6] != "-") {
        if (f[6].size() % 2 != 0 || !IsLowerHex(f[6]) ||
            static_cast<int64_t>(f[6].size() / 2) > limits.max_label_bytes) {
          return bad("bad label");
        }
        t.label = absl::HexStringToBytes(f[6]);
      }
      if (state.tokens.contains(t.id)) return bad("token id repeated");
      if (static_cast<int64_t>(state.tokens.size()) >= limits.max_tokens) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the credential journal holds more than ",
                         limits.max_tokens, " join tokens"));
      }
      state.tokens[t.id] = std::move(t);
    } else if (f[0] == "R") {
      if (f.size() != 2) return bad("a revocation line has 2 fields");
      auto it = state.tokens.find(f[1]);
      if (it == state.tokens.end()) return bad("revokes an unknown token");
      it->second.revoked = true;
      it->second.enrollments = 0;
      for (auto e = state.enrollments.begin(); e != state.enrollments.end();) {
        if (e->second.token_id == f[1]) {
          state.enrollments.erase(e++);
        } else {
          ++e;
        }
      }
    } else if (f[0] == "E") {
      if (f.size() != 4) return bad("an enrollment line has 4 fields");
      if (!ValidateAgentId(f[1]).ok()) return bad("bad agent id");
      auto digest = ParseDigest(f[2]);
      if (!digest.ok()) return bad(digest.status().message());
      auto token = state.tokens.find(f[3]);
      if (token == state.tokens.end()) return bad("enrolled by an unknown token");
      auto& e = state.enrollments[f[1]];
      if (!e.token_id.empty()) {
        auto old = state.tokens.find(e.token_id);
        if (old != state.tokens.end()) --old->second.enrollments;
      }
      e.key_sha256 = *digest;
      e.token_id = std::string(f[3]);
      ++token->second.enrollments;
    } else {
      return bad("unknown record kind");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CredentialStore>> CredentialStore::Open(
    const std::string& path, CredentialLimits limits) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC,
                      0600);
  if (fd < 0) return ErrnoStatus(errno, "cannot open the credential journal", path);
  ScopedFd guard(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoStatus(errno, "cannot stat", path);
  if (st.st_size > limits.max_journal_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the credential journal ", path, " holds ", st.st_size,
        " bytes, more than the limit of ", limits.max_journal_bytes));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = pread(fd, bytes.data() + got, bytes.size() - got,
                            static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoStatus(n < 0 ? errno : EIO, "cannot read", path);
    got += static_cast<size_t>(n);
  }
  // A crash mid-append leaves a partial last line: it was never
  // acknowledged, so it is dropped (and overwritten by the next append
  // after truncation).
  size_t keep = bytes.size();
  if (keep > 0 && bytes.back() != '\n') {
    keep = bytes.rfind('\n') == std::string::npos ? 0 : bytes.rfind('\n') + 1;
    if (ftruncate(fd, static_cast<off_t>(keep)) != 0) {
      return ErrnoStatus(errno, "cannot truncate", path);
    }
    bytes.resize(keep);
  }
  CredentialState state;
  absl::Status replayed = ReplayCredentialJournal(bytes, limits, state);
  if (!replayed.ok()) {
    return absl::Status(replayed.code(),
                        absl::StrCat(path, ": ", replayed.message()));
  }
  const int owned = dup(fd);
  if (owned < 0) return ErrnoStatus(errno, "cannot dup", path);
  return std::unique_ptr<CredentialStore>(new CredentialStore(
      path, limits, owned, std::move(state), static_cast<int64_t>(keep)));
}

CredentialStore::CredentialStore(std::string path, CredentialLimits limits,
                                 int fd, CredentialState state, int64_t size)
    : path_(std::move(path)),
      limits_(limits),
      fd_(fd),
      state_(std::move(state)),
      size_(size) {}

CredentialStore::~CredentialStore() { close(fd_); }

absl::Status CredentialStore::AppendLocked(const std::string& line) {
  if (size_ + static_cast<int64_t>(line.size()) > limits_.max_journal_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the credential journal ", path_, " would exceed its limit of ",
        limits_.max_journal_bytes, " bytes"));
  }
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoStatus(n < 0 ? errno : EIO, "cannot append to", path_);
    done += static_cast<size_t>(n);
  }
  if (fdatasync(fd_) != 0) return ErrnoStatus(errno, "cannot sync", path_);
  size_ += static_cast<int64_t>(line.size());
  return absl::OkStatus();
}

absl::StatusOr<CredentialStore::CreatedToken> CredentialStore::CreateToken(
    const std::string& agent_id, absl::Duration ttl, const std::string& label,
    absl::Time now) {
  if (!agent_id.empty()) RETURN_IF_ERROR(ValidateAgentId(agent_id));
  if (ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "a join token's lifetime (ttl_seconds) must be > 0");
  }
  if (static_cast<int64_t>(label.size()) > limits_.max_label_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a join token's label is at most ", limits_.max_label_bytes,
        " bytes"));
  }
  CreatedToken out;
  JoinTokenRecord& t = out.record;
  t.id = "jt-" + SecureRandomHex(kTokenIdHexBytes);
  const std::string secret = SecureRandomHex(kSecretBytes);
  t.secret_sha256 = HashSecret(secret);
  t.agent_id = agent_id;
  t.created_unix_ms = absl::ToUnixMillis(now);
  t.expires_unix_ms = absl::ToUnixMillis(now + ttl);
  t.label = label;
  out.token = absl::StrCat(t.id, ".", secret);
  absl::MutexLock lock(&mu_);
  if (static_cast<int64_t>(state_.tokens.size()) >= limits_.max_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the coordinator keeps at most ", limits_.max_tokens,
        " join tokens"));
  }
  if (state_.tokens.contains(t.id)) {
    return absl::InternalError("token id collision; try again");
  }
  RETURN_IF_ERROR(AppendLocked(absl::StrCat(
      "T ", t.id, " ", ToHex(t.secret_sha256), " ",
      agent_id.empty() ? "*" : agent_id, " ", t.created_unix_ms, " ",
      t.expires_unix_ms, " ",
      label.empty() ? "-" : absl::BytesToHexString(label), "\n")));
  state_.tokens[t.id] = t;
  return out;
}

std::vector<JoinTokenRecord> CredentialStore::Tokens() const {
  std::vector<JoinTokenRecord> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, t] : state_.tokens) out.push_back(t);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.created_unix_ms, a.id) < std::tie(b.created_unix_ms, b.id);
  });
  return out;
}

absl::StatusOr<std::vector<std::string>> CredentialStore::RevokeToken(
    const std::string& token_id) {
  absl::MutexLock lock(&mu_);
  auto it = state_.tokens.find(token_id);
  if (it == state_.tokens.end()) {
    return absl::NotFoundError(absl::StrCat(
        "no join token ", token_id, " (fedge token list shows them)"));
  }
  RETURN_IF_ERROR(AppendLocked(absl::StrCat("R ", token_id, "\n")));
  it->second.revoked = true;
  it->second.enrollments = 0;
  std::vector<std::string> agents;
  for (auto e = state_.enrollments.begin(); e != state_.enrollments.end();) {
    if (e->second.token_id == token_id) {
      agents.push_back(e->first);
      state_.enrollments.erase(e++);
    } else {
      ++e;
    }
  }
  std::sort(agents.begin(), agents.end());
  return agents;
}

absl::StatusOr<CredentialStore::Grant> CredentialStore::Authenticate(
    const std::string& agent_id, const std::string& agent_key,
    const std::string& join_token, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto enrolled = state_.enrollments.find(agent_id);
  if (!agent_key.empty()) {
    if (enrolled != state_.enrollments.end() &&
        DigestsEqual(enrolled->second.key_sha256, HashSecret(agent_key))) {
      return Grant{enrolled->second.token_id, ""};
    }
    if (join_token.empty()) {
      return absl::UnauthenticatedError(absl::StrCat(
          "the agent key does not match agent ", agent_id,
          "'s enrollment (revoked, or another device's): enroll again with "
          "a join token (--join_token_path)"));
    }
  }
  if (join_token.empty()) {
    return absl::UnauthenticatedError(
        "this coordinator requires a join token: give the agent "
        "--join_token_path (operators make one with `fedge token create`)");
  }
  absl::StatusOr<ParsedJoinToken> parsed = ParseJoinToken(join_token);
  if (!parsed.ok()) return absl::UnauthenticatedError(parsed.status().message());
  auto it = state_.tokens.find(parsed->id);
  if (it == state_.tokens.end() ||
      !DigestsEqual(it->second.secret_sha256, HashSecret(parsed->secret))) {
    return absl::UnauthenticatedError(
        absl::StrCat("join token ", parsed->id, " is not valid"));
  }
  JoinTokenRecord& t = it->second;
  if (t.revoked) {
    return absl::UnauthenticatedError(
        absl::StrCat("join token ", t.id, " was revoked"));
  }
  if (absl::ToUnixMillis(now) >= t.expires_unix_ms) {
    return absl::UnauthenticatedError(absl::StrCat(
        "join token ", t.id, " expired at ",
        absl::FormatTime(absl::FromUnixMillis(t.expires_unix_ms),
                         absl::UTCTimeZone())));
  }
  if (!t.agent_id.empty() && t.agent_id != agent_id) {
    return absl::PermissionDeniedError(absl::StrCat(
        "join token ", t.id, " is for agent ", t.agent_id, ", not ",
        agent_id));
  }
  if (t.agent_id.empty() && enrolled != state_.enrollments.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "agent ", agent_id,
        " is already enrolled: it joins with its agent key (kept in its "
        "state dir); to enroll a replacement device, make a token for it: "
        "fedge token create --agent ", agent_id));
  }
  Grant grant{t.id, "ak-" + SecureRandomHex(kSecretBytes)};
  RETURN_IF_ERROR(AppendLocked(absl::StrCat("E ", agent_id, " ",
                                            ToHex(HashSecret(grant.agent_key)),
                                            " ", t.id, "\n")));
  if (enrolled != state_.enrollments.end()) {
    auto old = state_.tokens.find(enrolled->second.token_id);
    if (old != state_.tokens.end()) --old->second.enrollments;
  }
  auto& e = state_.enrollments[agent_id];
  e.key_sha256 = HashSecret(grant.agent_key);
  e.token_id = t.id;
  ++t.enrollments;
  return grant;
}

absl::StatusOr<std::string> ReadOperatorToken(const std::string& path) {
  const std::string what =
      absl::StrCat("the operator token in ", path, " is not a token: ");
  const std::string fix =
      " (the operator token is the one-line file STATE_DIR/operator_token "
      "the coordinator writes)";
  absl::StatusOr<std::string> contents = ReadSmallFile(path, kMaxTokenBytes);
  if (absl::IsResourceExhausted(contents.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, "it is larger than ", kMaxTokenBytes, " bytes", fix));
  }
  RETURN_IF_ERROR(contents.status());
  const absl::string_view token = absl::StripAsciiWhitespace(*contents);
  if (const size_t lines = std::count(token.begin(), token.end(), '\n');
      lines > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, "it has ", lines + 1, " lines", fix));
  }
  for (size_t i = 0; i < token.size(); ++i) {
    const unsigned char c = token[i];
    if (c < 0x20 || c > 0x7e) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, "it has a control or non-ASCII character (byte ",
                       i + 1, ")", fix));
    }
  }
  if (token.size() < 16) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, "it has ", token.size(),
                     " characters, fewer than a token's 16", fix));
  }
  return std::string(token);
}

absl::StatusOr<Sha256Digest> LoadOrCreateOperatorToken(
    const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return ErrnoStatus(errno, "cannot stat", path);
    const std::string token = "ot-" + SecureRandomHex(kSecretBytes);
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                        0600);
    if (fd < 0) return ErrnoStatus(errno, "cannot create the operator token", path);
    ScopedFd guard(fd);
    const std::string line = token + "\n";
    if (write(fd, line.data(), line.size()) !=
            static_cast<ssize_t>(line.size()) ||
        fsync(fd) != 0) {
      return ErrnoStatus(errno, "cannot write the operator token", path);
    }
    return HashSecret(token);
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the operator token file ", path,
        " may be read by other users: chmod 600 it"));
  }
  ASSIGN_OR_RETURN(std::string token, ReadOperatorToken(path));
  return HashSecret(token);
}

}  // namespace fedge
