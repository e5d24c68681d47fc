// Small POSIX file helpers for state directories: crash-safe
// writes (temporary file, fsync, rename, fsync of the directory), chunked
// reads, and an exclusive lock so that two agents never share one state
// directory. Errors name the path. Stateless functions; thread-safe.
#ifndef FEDGE_COMMON_FILE_UTIL_H_
#define FEDGE_COMMON_FILE_UTIL_H_

#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedge {

// A status for the failed call `what` on `path` with errno `err`: NOT_FOUND
// (ENOENT), PERMISSION_DENIED (EACCES, EPERM, EROFS), RESOURCE_EXHAUSTED
// (ENOSPC, EDQUOT), INTERNAL otherwise. The message reads
// "<what> <path>: <strerror>".
absl::Status ErrnoStatus(int err, absl::string_view what,
                         const std::string& path);

// Produces the next piece of a file's contents into `out` (replacing it);
// returns false when there is no more (ModelEncoder::Next has this shape).
using ChunkSource = std::function<bool(std::string* out)>;

// Writes the bytes of `next` to `path` + ".tmp", fsyncs it, renames it over
// `path` and fsyncs the directory: after a crash `path` holds either the old
// or the new contents, never a mix. The temporary file is removed on
// failure. `mode`: the new file's permissions (before the umask; 0600 for
// secrets). Returns ErrnoStatus errors.
absl::Status WriteFileAtomically(const std::string& path,
                                 const ChunkSource& next, mode_t mode = 0644);

// Checks, without creating anything, that WriteFileAtomically(path) could
// create the file: its folder exists, is a folder and this process may
// write in it. For a file written only at the end of a long run (a final
// model), so that a typo fails at once. ErrnoStatus errors naming the
// folder ("cannot create <path> in folder <dir>: <strerror>": NOT_FOUND,
// PERMISSION_DENIED); FAILED_PRECONDITION when it is not a folder.
absl::Status CheckCanCreateFile(const std::string& path);

// WriteFileAtomically with `contents` as the whole file.
absl::Status WriteStringAtomically(const std::string& path,
                                   absl::string_view contents,
                                   mode_t mode = 0644);

// Calls `consume` with consecutive pieces (at most `chunk_bytes` each) of
// the file at `path`, stopping at the first error it returns.
// ErrnoStatus errors for the file, or the first error of `consume`.
absl::Status ReadFileChunks(
    const std::string& path, size_t chunk_bytes,
    const std::function<absl::Status(absl::string_view)>& consume);

// The whole file at `path`. RESOURCE_EXHAUSTED when it is larger than
// `max_bytes`; ErrnoStatus errors otherwise.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          int64_t max_bytes);

// Fsyncs directory `dir` (so a rename in it is durable). ErrnoStatus
// errors.
absl::Status SyncDir(const std::string& dir);

// Closes a file descriptor on scope exit.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }
  // Closes now, reporting the error close() may give (delayed write errors).
  int Close() {
    const int rc = close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// Creates directory `path` and its missing parents (like mkdir -p).
// ErrnoStatus errors.
absl::Status MakeDirs(const std::string& path);

// An exclusive advisory lock (flock) on a file, held until destruction.
class FileLock {
 public:
  // Creates `path` if needed and locks it without waiting.
  // FAILED_PRECONDITION "<path> is locked by another process (<if_held>)"
  // when another process holds the lock (`if_held`: what to do about it);
  // ErrnoStatus errors when the file cannot be created.
  static absl::StatusOr<std::unique_ptr<FileLock>> Acquire(
      const std::string& path, absl::string_view if_held);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

// Makes at least `need` file descriptors available to this process: raises
// the soft RLIMIT_NOFILE to the hard limit when it is below `need`.
// Returns the soft limit before and after. FAILED_PRECONDITION "RLIMIT_NOFILE
// is S (hard limit H) but <who> needs <need> descriptors: <fix>" when the hard
// limit is too low; INTERNAL when the limit cannot be read or set.
struct OpenFileLimit {
  int64_t before = 0;
  int64_t after = 0;
};
absl::StatusOr<OpenFileLimit> RaiseOpenFileLimit(int64_t need,
                                                 absl::string_view who,
                                                 absl::string_view fix);

}  // namespace fedge

#endif  // FEDGE_COMMON_FILE_UTIL_H_
