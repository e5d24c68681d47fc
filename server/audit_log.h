// The coordinator's append-only audit log (issue #9): one JSON object per
// line, e.g.
//   {"time":"2026-11-30T08:01:02.345Z","event":"join","agent":"agent-3",
//    "peer":"ipv4:10.0.0.7:51234","detail":"enrolled with token jt-..."}
// Events: join, join_refused, refused (a call refused: PERMISSION_DENIED,
// UNAUTHENTICATED with a session), update_refused, operator (an operator
// action), operator_refused, token_created, token_revoked, key (signing key
// in use at start), start, stop. Every string is JSON-escaped (agent ids are
// restricted anyway), so no line can be forged. Lines are written with one
// write(2) on an O_APPEND descriptor; the file is never rewritten.
//
// No gRPC; thread-safe.
#ifndef FEDGE_SERVER_AUDIT_LOG_H_
#define FEDGE_SERVER_AUDIT_LOG_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace fedge {

// `s` as a JSON string literal (with the quotes), printable ASCII only
// (AppendJsonString with ascii_only).
std::string JsonQuote(absl::string_view s);

class AuditLog {
 public:
  // Opens `path` for appending (created 0600 when missing).
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one line: time, event, then the fields in order. A failed
  // write is logged (once per minute at most), never fatal.
  void Record(absl::Time time, absl::string_view event,
              std::vector<std::pair<absl::string_view, std::string>> fields);

  const std::string& path() const { return path_; }

 private:
  AuditLog(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  const std::string path_;
  const int fd_;
  absl::Mutex mu_;
  absl::Time last_error_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace fedge

#endif  // FEDGE_SERVER_AUDIT_LOG_H_
