// Logging for fedge: one header, so the sink can change in one place.
//
//   FEDGE_LOG(INFO) << "round " << r << " closed";
//   FEDGE_CHECK(ptr != nullptr) << "context";   // broken invariant: aborts
//
// Lines go to stderr as "I1123 12:00:00.123 file.cc:42] message". The
// minimum level is set with SetMinLogLevel() (default INFO) or the
// FEDGE_LOG_LEVEL environment variable (INFO, WARNING, ERROR). Thread-safe:
// each message is written with one call.
#ifndef FEDGE_COMMON_LOGGING_H_
#define FEDGE_COMMON_LOGGING_H_

#include <sstream>
#include <string>

#include "absl/strings/string_view.h"

namespace fedge {

enum class LogLevel { kInfo = 0, kWarning = 1, kError = 2, kFatal = 3 };

void SetMinLogLevel(LogLevel level);

// At most `max` bytes of `s` on one printable line (bytes outside printable
// ASCII become '?'): for ids and reasons that come from the network.
std::string Printable(absl::string_view s, size_t max = 200);
LogLevel MinLogLevel();

namespace internal {

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();  // Writes the line; aborts for kFatal.
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Swallows the stream when a message is disabled.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace internal
}  // namespace fedge

#define FEDGE_LOG_LEVEL_INFO ::fedge::LogLevel::kInfo
#define FEDGE_LOG_LEVEL_WARNING ::fedge::LogLevel::kWarning
#define FEDGE_LOG_LEVEL_ERROR ::fedge::LogLevel::kError
#define FEDGE_LOG_LEVEL_FATAL ::fedge::LogLevel::kFatal

#define FEDGE_LOG(severity)                                           \
  (FEDGE_LOG_LEVEL_##severity < ::fedge::MinLogLevel())               \
      ? (void)0                                                       \
      : ::fedge::internal::LogVoidify() &                             \
            ::fedge::internal::LogMessage(FEDGE_LOG_LEVEL_##severity, \
                                          __FILE__, __LINE__)         \
                .stream()

#define FEDGE_CHECK(condition)                                               \
  (condition) ? (void)0                                                      \
              : ::fedge::internal::LogVoidify() &                            \
                    ::fedge::internal::LogMessage(::fedge::LogLevel::kFatal, \
                                                  __FILE__, __LINE__)        \
                            .stream()                                        \
                        << "Check failed: " #condition " "

#endif  // FEDGE_COMMON_LOGGING_H_
