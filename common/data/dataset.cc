#include "common/data/dataset.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/status_macros.h"

namespace fedge {

int64_t Dataset::example_size() const {
  int64_t size = 1;
  for (int64_t d : example_shape) size *= d;
  return size;
}

// ===========================================================================
// Files
namespace {

absl::Status ErrnoError(const std::string& path, int error) {
  const std::string message = absl::StrCat(path, ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InvalidArgumentError(message);
  }
}

absl::Status TooLarge(const std::string& path, int64_t max_bytes) {
  return absl::ResourceExhaustedError(absl::StrCat(
      path, ": contents exceed the limit of ", max_bytes, " bytes"));
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

// Reads exactly `size` bytes (the file's size from stat) of a plain file.
absl::StatusOr<std::string> ReadPlain(std::FILE* f, const std::string& path,
                                      int64_t size) {
  std::string out(static_cast<size_t>(size), '\0');
  if (std::fseek(f, 0, SEEK_SET) != 0 ||
      std::fread(out.data(), 1, out.size(), f) != out.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": read failed after ", size, " bytes expected"));
  }
  return out;
}

// The gzip trailer's ISIZE (uncompressed size mod 2^32), used only as a
// capacity hint; 0 when unreadable.
int64_t GzipSizeHint(std::FILE* f) {
  unsigned char b[4];
  if (std::fseek(f, -4, SEEK_END) != 0 || std::fread(b, 1, 4, f) != 4) return 0;
  return int64_t{b[0]} | int64_t{b[1]} << 8 | int64_t{b[2]} << 16 |
         int64_t{b[3]} << 24;
}

absl::StatusOr<std::string> ReadGzip(const std::string& path, int64_t max_bytes,
                                     int64_t size_hint) {
  std::unique_ptr<gzFile_s, GzCloser> gz(gzopen(path.c_str(), "rb"));
  if (gz == nullptr) return ErrnoError(path, errno ? errno : EIO);
  gzbuffer(gz.get(), 1 << 20);
  std::string out;
  out.reserve(static_cast<size_t>(std::min(size_hint, max_bytes)) + 1);
  constexpr int64_t kChunk = int64_t{16} << 20;
  while (true) {
    const auto size = static_cast<int64_t>(out.size());
    if (size > max_bytes) return TooLarge(path, max_bytes);
    const auto room = static_cast<int64_t>(out.capacity()) - size;
    const int64_t want =
        std::min({kChunk, max_bytes + 1 - size, room > 0 ? room : kChunk});
    out.resize(size + want);
    const int n =
        gzread(gz.get(), out.data() + size, static_cast<unsigned>(want));
    out.resize(size + std::max(n, 0));
    if (n <= 0) break;
  }
  int error = Z_OK;
  const char* message = gzerror(gz.get(), &error);
  if (error != Z_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": corrupt or truncated gzip data (", message,
                     ") after ", out.size(), " decompressed bytes"));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> ReadFileMaybeGzipped(const std::string& path,
                                                 int64_t max_bytes) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) return ErrnoError(path, errno);
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file"));
  }
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (f == nullptr) return ErrnoError(path, errno);
  unsigned char magic[2] = {0, 0};
  const size_t got = std::fread(magic, 1, 2, f.get());
  if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
    // Deflate expands at most ~1032:1: a bound on an untrusted ISIZE.
    const int64_t hint = std::min(GzipSizeHint(f.get()), info.st_size * 1032);
    f.reset();
    return ReadGzip(path, max_bytes, hint);
  }
  if (info.st_size > max_bytes) return TooLarge(path, max_bytes);
  return ReadPlain(f.get(), path, info.st_size);
}

// ===========================================================================
// IDX
Dataset Subset(const Dataset& dataset, absl::Span<const int64_t> indices) {
  Dataset out;
  out.example_shape = dataset.example_shape;
  out.num_classes = dataset.num_classes;
  const int64_t d = dataset.example_size();
  out.labels.reserve(indices.size());
  out.features.reserve(indices.size() * d);
  for (int64_t i : indices) {
    FEDGE_CHECK(i >= 0 && i < dataset.num_examples())
        << "Subset index " << i << " outside [0, " << dataset.num_examples()
        << ")";
    out.labels.push_back(dataset.labels[i]);
    const auto begin = dataset.features.begin() + i * d;
    out.features.insert(out.features.end(), begin, begin + d);
  }
  return out;
}

absl::Status CheckReaderOptions(int64_t max_examples, int num_classes) {
  if (max_examples < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_examples must be >= -1, got ", max_examples));
  }
  if (num_classes < 0 || num_classes > kMaxNumClasses) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_classes must be in [0, ", kMaxNumClasses, "], got ", num_classes));
  }
  return absl::OkStatus();
}

}  // namespace fedge
