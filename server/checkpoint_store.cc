#include "server/checkpoint_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <functional>
#include <future>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/little_endian.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

constexpr char kMagic[] = "FEDGECK1";
constexpr size_t kMagicBytes = 8;
// Written: 2. Read: 1 and 2.
constexpr uint32_t kFormatVersion = 2;
constexpr uint64_t kDigestBytes = 32;
// Magic, format_version, three int64 counters, extra_len, model_len; then,
// from format 2, the model's SHA-256.
constexpr uint64_t kHeaderBytesV1 = kMagicBytes + 4 + 5 * 8;
constexpr uint64_t kHeaderBytesV2 = kHeaderBytesV1 + kDigestBytes;
constexpr char kPrefix[] = "ckpt-";
constexpr char kSuffix[] = ".fedge";
constexpr char kTempSuffix[] = ".tmp";
constexpr int kVersionDigits = 8;
constexpr size_t kIoChunkBytes = 1 << 20;
// Tensor data shorter than this is copied into the write beside it.
constexpr size_t kGatherBelowBytes = 4096;

absl::Status IoError(int err, absl::string_view what, const std::string& path) {
  return absl::UnavailableError(
      absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

// Names of the entries of `dir`.
absl::StatusOr<std::vector<std::string>> ReadDir(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return IoError(errno, "opendir", dir);
  std::vector<std::string> names;
  while (const dirent* entry = readdir(d)) names.emplace_back(entry->d_name);
  closedir(d);
  return names;
}

// The version in a canonical file name "ckpt-<8+ digits>.fedge".
std::optional<int64_t> VersionOf(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, kPrefix) ||
      !absl::ConsumeSuffix(&name, kSuffix) || name.size() < kVersionDigits ||
      name.size() > 18 ||
      !std::all_of(name.begin(), name.end(), absl::ascii_isdigit)) {
    return std::nullopt;
  }
  int64_t version = 0;
  if (!absl::SimpleAtoi(name, &version)) return std::nullopt;
  // One name per version: longer than 8 digits only when needed.
  if (name.size() > kVersionDigits && name[0] == '0') return std::nullopt;
  return version;
}

// The fixed header after the magic and format version.
struct FileHeader {
  uint32_t format = kFormatVersion;
  int64_t model_version = 0;
  int64_t next_round = 0;
  int64_t completed_rounds = 0;
  uint64_t extra_len = 0;
  uint64_t model_len = 0;
  Sha256Digest model_sha256{};  // Format 2.

  uint64_t header_bytes() const {
    return format == 1 ? kHeaderBytesV1 : kHeaderBytesV2;
  }
};

std::string EncodeHeader(const FileHeader& h) {
  std::string out(kMagic, kMagicBytes);
  AppendLE(&out, kFormatVersion, 4);
  for (uint64_t v : {uint64_t(h.model_version), uint64_t(h.next_round),
                     uint64_t(h.completed_rounds), h.extra_len, h.model_len}) {
    AppendLE(&out, v, 8);
  }
  out.append(reinterpret_cast<const char*>(h.model_sha256.data()),
             h.model_sha256.size());
  return out;
}

// The format version after the magic in the first kHeaderBytesV1 `bytes`.
absl::StatusOr<uint32_t> ParseFormat(absl::string_view bytes) {
  if (bytes.substr(0, kMagicBytes) != absl::string_view(kMagic, kMagicBytes)) {
    return absl::DataLossError("bad magic: not a fedge checkpoint");
  }
  const uint64_t format = ReadLE(bytes.data() + kMagicBytes, 4);
  if (format != 1 && format != 2) {
    return absl::DataLossError(
        absl::StrCat("unsupported format version ", format));
  }
  return uint32_t(format);
}

// DATA_LOSS unless `bytes` is a header (of format ParseFormat) whose sizes
// add up to `file_size`.
absl::StatusOr<FileHeader> ParseHeader(absl::string_view bytes,
                                       uint64_t file_size) {
  FileHeader h;
  ASSIGN_OR_RETURN(h.format, ParseFormat(bytes));
  const char* p = bytes.data() + kMagicBytes + 4;
  h.model_version = int64_t(ReadLE(p, 8));
  h.next_round = int64_t(ReadLE(p + 8, 8));
  h.completed_rounds = int64_t(ReadLE(p + 16, 8));
  h.extra_len = ReadLE(p + 24, 8);
  h.model_len = ReadLE(p + 32, 8);
  if (h.format >= 2) std::memcpy(h.model_sha256.data(), p + 40, kDigestBytes);
  if (h.extra_len > file_size || h.model_len > file_size ||
      h.header_bytes() + h.extra_len + h.model_len + kDigestBytes !=
          file_size) {
    return absl::DataLossError(
        absl::StrCat("truncated or corrupt: header declares ", h.extra_len,
                     " extra bytes and ", h.model_len,
                     " model bytes, file has ", file_size));
  }
  return h;
}

// OK when the header's counters are plausible (checked after the digest).
absl::Status CheckCounters(const FileHeader& h,
                           std::optional<int64_t> file_version) {
  if (file_version.has_value() && h.model_version != *file_version) {
    return absl::DataLossError(absl::StrCat("header says model version ",
                                            h.model_version, ", file name ",
                                            *file_version));
  }
  if (h.next_round < 1 || h.completed_rounds < 0 ||
      h.completed_rounds > INT_MAX) {
    return absl::DataLossError(absl::StrCat("bad engine progress: next_round ",
                                            h.next_round, ", completed_rounds ",
                                            h.completed_rounds));
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, absl::string_view bytes,
                      const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError(errno, "write", path);
    bytes.remove_prefix(size_t(n));
  }
  return absl::OkStatus();
}

// Writes `bytes` at `offset`, leaving the file position alone.
absl::Status WriteAllAt(int fd, absl::string_view bytes, off_t offset,
                        const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = pwrite(fd, bytes.data(), bytes.size(), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError(errno, "write", path);
    bytes.remove_prefix(size_t(n));
    offset += n;
  }
  return absl::OkStatus();
}

// Reads exact byte counts from a file, hashing them.
class HashingReader {
 public:
  HashingReader(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  // Passes the next `n` bytes to `consume` in pieces; DATA_LOSS when the
  // file ends first, UNAVAILABLE on read errors.
  absl::Status Read(uint64_t n,
                    const std::function<void(absl::string_view)>& consume) {
    return ReadImpl(n, /*hash=*/true, consume);
  }
  // Read() without adding the bytes to the file's digest.
  absl::Status ReadUnhashed(
      uint64_t n, const std::function<void(absl::string_view)>& consume) {
    return ReadImpl(n, /*hash=*/false, consume);
  }
  absl::Status ReadInto(uint64_t n, std::string* out) {
    out->reserve(n);
    return Read(
        n, [out](absl::string_view b) { out->append(b.data(), b.size()); });
  }
  // The digest of the bytes read so far, and the next 32 bytes (unhashed).
  absl::Status FinishWithStored(Sha256Digest* actual, Sha256Digest* stored) {
    *actual = hasher_.Finish();
    size_t at = 0;
    return ReadImpl(kDigestBytes, /*hash=*/false, [&](absl::string_view b) {
      std::memcpy(stored->data() + at, b.data(), b.size());
      at += b.size();
    });
  }

 private:
  absl::Status ReadImpl(uint64_t n, bool hash,
                        const std::function<void(absl::string_view)>& consume) {
    buffer_.resize(std::min<uint64_t>(n, kIoChunkBytes));
    while (n > 0) {
      const ssize_t r =
          read(fd_, &buffer_[0], std::min<uint64_t>(n, kIoChunkBytes));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return IoError(errno, "read", path_);
      if (r == 0) return absl::DataLossError("unexpected end of file");
      const absl::string_view piece(buffer_.data(), size_t(r));
      if (hash) hasher_.Update(piece);
      consume(piece);
      n -= uint64_t(r);
    }
    return absl::OkStatus();
  }

  int fd_;
  std::string path_;
  std::string buffer_;
  Sha256 hasher_;
};

// Writes the file in order, except the model's digest: `model_sha256` is
// called once the model's bytes are written (a caller may compute it
// meanwhile), then the header with it is written again at the start.
absl::Status WriteCheckpointFile(
    const std::string& path, const Checkpoint& ckpt, const ModelState& model,
    absl::FunctionRef<Sha256Digest()> model_sha256) {
  ScopedFd fd(
      open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) return IoError(errno, "create", path);
  ModelEncoder encoder(model, kIoChunkBytes);
  FileHeader header;
  header.model_version = ckpt.model_version;
  header.next_round = ckpt.next_round;
  header.completed_rounds = ckpt.completed_rounds;
  header.extra_len = ckpt.extra.size();
  header.model_len = uint64_t(encoder.total_bytes());
  RETURN_IF_ERROR(WriteAll(fd.get(), EncodeHeader(header), path));
  RETURN_IF_ERROR(WriteAll(fd.get(), ckpt.extra, path));
  // Large tensors are written from the model itself; headers and small
  // tensors between them are gathered into one write.
  absl::Status written;
  while (written.ok() &&
         encoder.NextGathered(kGatherBelowBytes,
                              [&](absl::string_view bytes, bool) {
                                if (written.ok()) {
                                  written = WriteAll(fd.get(), bytes, path);
                                }
                              })) {
  }
  RETURN_IF_ERROR(written);
  header.model_sha256 = model_sha256();
  const std::string head = EncodeHeader(header);
  RETURN_IF_ERROR(WriteAllAt(fd.get(), head, 0, path));
  // The file's digest covers the header (with the model's) and the extra
  // bytes.
  Sha256 file_hasher;
  file_hasher.Update(head);
  file_hasher.Update(ckpt.extra);
  const Sha256Digest digest = file_hasher.Finish();
  RETURN_IF_ERROR(
      WriteAll(fd.get(),
               absl::string_view(reinterpret_cast<const char*>(digest.data()),
                                 digest.size()),
               path));
  if (fsync(fd.get()) != 0) return IoError(errno, "fsync", path);
  if (fd.Close() != 0) return IoError(errno, "close", path);
  return absl::OkStatus();
}

// The model of a checkpoint file, streamed through a decoder while hashed
// (format 1: into the file's digest; 2: on its own, against the header's
// model digest). The digests are checked before the decoder's verdict, so
// that corruption is reported as such.
absl::StatusOr<ModelState> ReadModelAndVerify(HashingReader& in,
                                              const FileHeader& header,
                                              const DecodeLimits& limits) {
  ModelDecoder decoder(limits);
  decoder.SetExpectedSize(int64_t(header.model_len));
  absl::Status decoded;
  auto feed = [&](absl::string_view b) {
    if (decoded.ok()) decoded = decoder.Feed(b);
  };
  Sha256 model_hasher;
  if (header.format == 1) {
    RETURN_IF_ERROR(in.Read(header.model_len, feed));
  } else {
    RETURN_IF_ERROR(in.ReadUnhashed(header.model_len, [&](absl::string_view b) {
      model_hasher.Update(b);
      feed(b);
    }));
  }
  Sha256Digest actual, stored;
  RETURN_IF_ERROR(in.FinishWithStored(&actual, &stored));
  if (actual != stored) return absl::DataLossError("SHA-256 mismatch");
  if (header.format >= 2 && model_hasher.Finish() != header.model_sha256) {
    return absl::DataLossError("model SHA-256 mismatch");
  }
  absl::StatusOr<ModelState> model =
      decoded.ok() ? decoder.Finish() : absl::StatusOr<ModelState>(decoded);
  if (!model.ok()) {
    return absl::DataLossError(
        absl::StrCat("model does not decode: ", model.status().message()));
  }
  return model;
}

// The checkpoint in `path`: DATA_LOSS when it is corrupt, UNAVAILABLE when
// it cannot be read.
absl::StatusOr<Checkpoint> ReadCheckpointFile(
    const std::string& path, std::optional<int64_t> file_version,
    const DecodeLimits& limits) {
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return IoError(errno, "open", path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return IoError(errno, "stat", path);
  const uint64_t size = uint64_t(st.st_size);
  if (size < kHeaderBytesV1 + kDigestBytes) {
    return absl::DataLossError(absl::StrCat("truncated: ", size, " bytes"));
  }
  HashingReader in(fd.get(), path);
  std::string header_bytes;
  RETURN_IF_ERROR(in.ReadInto(kHeaderBytesV1, &header_bytes));
  ASSIGN_OR_RETURN(const uint32_t format, ParseFormat(header_bytes));
  if (format >= 2) {
    if (size < kHeaderBytesV2 + kDigestBytes) {
      return absl::DataLossError(absl::StrCat("truncated: ", size, " bytes"));
    }
    std::string rest;
    RETURN_IF_ERROR(in.ReadInto(kHeaderBytesV2 - kHeaderBytesV1, &rest));
    header_bytes += rest;
  }
  ASSIGN_OR_RETURN(const FileHeader header, ParseHeader(header_bytes, size));
  Checkpoint ckpt;
  RETURN_IF_ERROR(in.ReadInto(header.extra_len, &ckpt.extra));
  ASSIGN_OR_RETURN(ckpt.model, ReadModelAndVerify(in, header, limits));
  RETURN_IF_ERROR(CheckCounters(header, file_version));
  ckpt.model_version = header.model_version;
  ckpt.next_round = header.next_round;
  ckpt.completed_rounds = int(header.completed_rounds);
  return ckpt;
}

// Checkpoint files of `dir` as (version, path), oldest first.
absl::StatusOr<std::vector<std::pair<int64_t, std::string>>> ListVersions(
    const std::string& dir) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ReadDir(dir));
  std::vector<std::pair<int64_t, std::string>> found;
  for (const std::string& name : names) {
    if (std::optional<int64_t> v = VersionOf(name)) {
      found.emplace_back(*v, absl::StrCat(dir, "/", name));
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Create(
    CheckpointStoreOptions options) {
  if (options.keep < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint keep must be >= 1, got ", options.keep));
  }
  if (options.dir.empty()) {
    return absl::InvalidArgumentError("checkpoint dir is empty");
  }
  while (options.dir.size() > 1 && options.dir.back() == '/') {
    options.dir.pop_back();
  }
  if (absl::Status made = MakeDirs(options.dir); !made.ok()) {
    return absl::UnavailableError(made.message());  // As documented.
  }
  return std::unique_ptr<CheckpointStore>(
      new CheckpointStore(std::move(options)));
}

std::string CheckpointStore::PathFor(int64_t model_version) const {
  std::string digits = absl::StrCat(model_version);
  if (digits.size() < kVersionDigits) {
    digits.insert(0, kVersionDigits - digits.size(), '0');
  }
  return absl::StrCat(options_.dir, "/", kPrefix, digits, kSuffix);
}

absl::StatusOr<std::string> CheckpointStore::Save(const Checkpoint& ckpt) {
  return Save(ckpt, ckpt.model);
}

absl::StatusOr<std::string> CheckpointStore::Save(const Checkpoint& ckpt,
                                                  const ModelState& model,
                                                  Sha256Digest* model_sha256) {
  // Hashing 40 MB takes about as long as writing it: the two overlap.
  std::future<Sha256Digest> digest =
      std::async(std::launch::async, [&model] { return ModelDigest(model); });
  absl::StatusOr<std::string> path = SaveWith(ckpt, model, [&] {
    const Sha256Digest d = digest.get();
    if (model_sha256 != nullptr) *model_sha256 = d;
    return d;
  });
  if (digest.valid()) digest.wait();  // Not taken: an early I/O error.
  return path;
}

absl::StatusOr<std::string> CheckpointStore::Save(
    const Checkpoint& ckpt, const ModelState& model,
    const Sha256Digest& model_sha256) {
  return SaveWith(ckpt, model, [&] { return model_sha256; });
}

absl::StatusOr<std::string> CheckpointStore::SaveWith(
    const Checkpoint& ckpt, const ModelState& model,
    absl::FunctionRef<Sha256Digest()> model_sha256) {
  if (ckpt.model_version < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint model_version must be >= 0, got ", ckpt.model_version));
  }
  const std::string path = PathFor(ckpt.model_version);
  const std::string tmp = path + kTempSuffix;
  absl::Status status = WriteCheckpointFile(tmp, ckpt, model, model_sha256);
  if (status.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    status = IoError(errno, "rename", tmp);
  }
  if (!status.ok()) {
    unlink(tmp.c_str());
    return status;
  }
  RETURN_IF_ERROR(SyncDir(options_.dir));
  return path;
}

void CheckpointStore::PruneOld() {
  std::vector<std::string> paths = ListCheckpoints();
  const size_t keep = size_t(options_.keep);
  for (size_t i = 0; i + keep < paths.size(); ++i) {
    if (unlink(paths[i].c_str()) != 0) {
      FEDGE_LOG(WARNING) << "cannot delete old checkpoint " << paths[i] << ": "
                         << std::strerror(errno);
    }
  }
}

void CheckpointStore::RemoveTempFiles() {
  absl::StatusOr<std::vector<std::string>> names = ReadDir(options_.dir);
  if (!names.ok()) return;
  for (const std::string& name : *names) {
    if (!absl::StartsWith(name, kPrefix) ||
        !absl::EndsWith(name, kTempSuffix)) {
      continue;
    }
    const std::string path = absl::StrCat(options_.dir, "/", name);
    FEDGE_LOG(WARNING) << "deleting unfinished checkpoint " << path;
    unlink(path.c_str());
  }
}

absl::StatusOr<Checkpoint> CheckpointStore::ReadFile(
    const std::string& path, const DecodeLimits& limits) {
  const size_t slash = path.rfind('/');
  return ReadCheckpointFile(
      path,
      VersionOf(slash == std::string::npos ? path : path.substr(slash + 1)),
      limits);
}

absl::StatusOr<std::optional<Checkpoint>> CheckpointStore::LoadNewest(
    std::vector<std::string>* skipped) {
  RemoveTempFiles();
  ASSIGN_OR_RETURN(auto versions, ListVersions(options_.dir));
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    absl::StatusOr<Checkpoint> ckpt =
        ReadCheckpointFile(it->second, it->first, options_.limits);
    if (ckpt.ok()) return std::optional<Checkpoint>(*std::move(ckpt));
    if (ckpt.status().code() != absl::StatusCode::kDataLoss) {
      return ckpt.status();
    }
    const std::string entry =
        absl::StrCat(it->second, ": ", ckpt.status().message());
    FEDGE_LOG(WARNING) << "skipping corrupt checkpoint " << entry;
    if (skipped != nullptr) skipped->push_back(entry);
  }
  return std::optional<Checkpoint>();
}

std::vector<std::string> CheckpointStore::ListCheckpoints() const {
  absl::StatusOr<std::vector<std::pair<int64_t, std::string>>> versions =
      ListVersions(options_.dir);
  std::vector<std::string> paths;
  if (!versions.ok()) return paths;
  for (auto& [version, path] : *versions) paths.push_back(std::move(path));
  return paths;
}

}  // namespace fedge
