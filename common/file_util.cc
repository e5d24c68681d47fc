#include "common/file_util.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

absl::Status WriteAll(int fd, absl::string_view bytes,
                      const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "write", path);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status WriteAndSync(const std::string& tmp, const ChunkSource& next,
                          mode_t mode) {
  unlink(tmp.c_str());  // A leftover may have another mode.
  ScopedFd fd(
      open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (fd.get() < 0) return ErrnoStatus(errno, "create", tmp);
  std::string chunk;
  while (next(&chunk)) RETURN_IF_ERROR(WriteAll(fd.get(), chunk, tmp));
  if (fsync(fd.get()) != 0) return ErrnoStatus(errno, "fsync", tmp);
  if (fd.Close() != 0) return ErrnoStatus(errno, "close", tmp);
  return absl::OkStatus();
}

}  // namespace

absl::Status SyncDir(const std::string& dir) {
  ScopedFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "open", dir);
  if (fsync(fd.get()) != 0) return ErrnoStatus(errno, "fsync", dir);
  return absl::OkStatus();
}

absl::Status ErrnoStatus(int err, absl::string_view what,
                         const std::string& path) {
  const std::string message =
      absl::StrCat(what, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status WriteFileAtomically(const std::string& path,
                                 const ChunkSource& next, mode_t mode) {
  const std::string tmp = path + ".tmp";
  absl::Status s = WriteAndSync(tmp, next, mode);
  if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    s = ErrnoStatus(errno, "rename to", path);
  }
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  return SyncDir(DirName(path));
}

absl::Status CheckCanCreateFile(const std::string& path) {
  const std::string dir = DirName(path);
  const std::string what = absl::StrCat("cannot create ", path, " in folder");
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return ErrnoStatus(errno, what, dir);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " ", dir, ": not a folder"));
  }
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    return ErrnoStatus(errno, what, dir);
  }
  return absl::OkStatus();
}

absl::Status WriteStringAtomically(const std::string& path,
                                   absl::string_view contents, mode_t mode) {
  bool done = false;
  return WriteFileAtomically(
      path,
      [&](std::string* out) {
        if (done) return false;
        out->assign(contents.data(), contents.size());
        done = true;
        return true;
      },
      mode);
}

absl::Status ReadFileChunks(
    const std::string& path, size_t chunk_bytes,
    const std::function<absl::Status(absl::string_view)>& consume) {
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "open", path);
  std::string buffer(chunk_bytes, '\0');
  while (true) {
    const ssize_t n = read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read", path);
    if (n == 0) return absl::OkStatus();
    RETURN_IF_ERROR(consume(absl::string_view(buffer.data(), n)));
  }
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          int64_t max_bytes) {
  std::string contents;
  RETURN_IF_ERROR(ReadFileChunks(path, 64 << 10, [&](absl::string_view piece) {
    if (static_cast<int64_t>(contents.size() + piece.size()) > max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(path, " is larger than ", max_bytes, " bytes"));
    }
    contents.append(piece.data(), piece.size());
    return absl::OkStatus();
  }));
  return contents;
}

absl::StatusOr<std::unique_ptr<FileLock>> FileLock::Acquire(
    const std::string& path, absl::string_view if_held) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "create", path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " is locked by another process (", if_held, ")"));
    }
    return ErrnoStatus(err, "lock", path);
  }
  return std::unique_ptr<FileLock>(new FileLock(fd));
}

FileLock::~FileLock() { close(fd_); }

absl::Status MakeDirs(const std::string& path) {
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) return ErrnoStatus(error.value(), "create directory", path);
  return absl::OkStatus();
}

absl::StatusOr<OpenFileLimit> RaiseOpenFileLimit(int64_t need,
                                                 absl::string_view who,
                                                 absl::string_view fix) {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::InternalError(
        absl::StrCat("getrlimit(RLIMIT_NOFILE): ", std::strerror(errno)));
  }
  const int64_t soft = static_cast<int64_t>(limit.rlim_cur);
  const rlim_t wanted = static_cast<rlim_t>(need);
  if (limit.rlim_cur >= wanted) return OpenFileLimit{soft, soft};
  if (limit.rlim_max < wanted) {
    return absl::FailedPreconditionError(absl::StrCat(
        "RLIMIT_NOFILE is ", limit.rlim_cur, " (hard limit ", limit.rlim_max,
        ") but ", who, " needs ", need, " descriptors: ", fix));
  }
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::InternalError(
        absl::StrCat("setrlimit(RLIMIT_NOFILE): ", std::strerror(errno)));
  }
  return OpenFileLimit{soft, static_cast<int64_t>(limit.rlim_cur)};
}

}  // namespace fedge
