#include "server/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/logging.h"

namespace fedge {

std::string JsonQuote(absl::string_view s) {
  std::string out;
  AppendJsonString(s, &out, /*ascii_only=*/true);
  return out;
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(
    const std::string& path) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, "cannot open the audit log", path);
  return std::unique_ptr<AuditLog>(new AuditLog(path, fd));
}

AuditLog::~AuditLog() { close(fd_); }

void AuditLog::Record(
    absl::Time time, absl::string_view event,
    std::vector<std::pair<absl::string_view, std::string>> fields) {
  std::string line = absl::StrCat(
      "{\"time\":",
      JsonQuote(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time,
                                 absl::UTCTimeZone())),
      ",\"event\":", JsonQuote(event));
  for (const auto& [key, value] : fields) {
    absl::StrAppend(&line, ",", JsonQuote(key), ":", JsonQuote(value));
  }
  line += "}\n";
  const ssize_t n = write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    const int err = n < 0 ? errno : EIO;
    absl::MutexLock lock(&mu_);
    if (time - last_error_ >= absl::Minutes(1)) {
      last_error_ = time;
      FEDGE_LOG(ERROR) << "cannot append to the audit log " << path_ << ": "
                       << std::strerror(err);
    }
  }
}

}  // namespace fedge
