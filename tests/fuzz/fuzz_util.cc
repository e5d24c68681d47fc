#include "tests/fuzz/fuzz_util.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "google/protobuf/stubs/logging.h"

namespace fedge::fuzz {

namespace fs = std::filesystem;

uint8_t InputReader::Byte() {
  const absl::string_view b = Bytes(1);
  return b.empty() ? 0 : static_cast<uint8_t>(b[0]);
}

uint16_t InputReader::U16() {
  const absl::string_view b = Bytes(2);
  uint16_t v = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    v |= static_cast<uint16_t>(static_cast<uint8_t>(b[i]) << (8 * i));
  }
  return v;
}

uint32_t InputReader::U32() {
  const absl::string_view b = Bytes(4);
  uint32_t v = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    v |= uint32_t{static_cast<uint8_t>(b[i])} << (8 * i);
  }
  return v;
}

uint64_t InputReader::U64() {
  const absl::string_view b = Bytes(8);
  uint64_t v = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    v |= uint64_t{static_cast<uint8_t>(b[i])} << (8 * i);
  }
  return v;
}

absl::string_view InputReader::Bytes(size_t n) {
  const absl::string_view out = data_.substr(0, n);
  data_.remove_prefix(out.size());
  return out;
}

InputWriter& InputWriter::Byte(uint8_t v) {
  out_.push_back(static_cast<char>(v));
  return *this;
}

InputWriter& InputWriter::U16(uint16_t v) {
  for (int i = 0; i < 2; ++i) Byte(static_cast<uint8_t>(v >> (8 * i)));
  return *this;
}

InputWriter& InputWriter::U32(uint32_t v) {
  for (int i = 0; i < 4; ++i) Byte(static_cast<uint8_t>(v >> (8 * i)));
  return *this;
}

InputWriter& InputWriter::U64(uint64_t v) {
  for (int i = 0; i < 8; ++i) Byte(static_cast<uint8_t>(v >> (8 * i)));
  return *this;
}

InputWriter& InputWriter::Bytes(absl::string_view bytes) {
  out_.append(bytes.data(), bytes.size());
  return *this;
}

InputWriter& InputWriter::Record(absl::string_view bytes) {
  Check(bytes.size() <= 0xffff, "seed record longer than 65535 bytes");
  U16(static_cast<uint16_t>(bytes.size()));
  return Bytes(bytes);
}

namespace {

// Deletes <base>/fedge-fuzz-<pid>-* left by processes that are gone (a
// crashed target does not clean up).
void RemoveStaleScratchDirs(const std::string& base) {
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(base, error)) {
    const std::string filename = entry.path().filename().string();
    absl::string_view name = filename;
    if (!absl::ConsumePrefix(&name, "fedge-fuzz-")) continue;
    int pid = 0;
    if (!absl::SimpleAtoi(name.substr(0, name.find('-')), &pid) || pid <= 0 ||
        kill(pid, 0) == 0 || errno != ESRCH) {
      continue;
    }
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
  }
}

}  // namespace

ScratchDir::ScratchDir() {
  std::string base = "/dev/shm";
  std::error_code error;
  if (!fs::is_directory(base, error) || access(base.c_str(), W_OK) != 0) {
    const char* tmp = std::getenv("TMPDIR");
    base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  }
  RemoveStaleScratchDirs(base);
  std::string pattern = absl::StrCat(base, "/fedge-fuzz-", getpid(), "-XXXXXX");
  Check(mkdtemp(pattern.data()) != nullptr, "mkdtemp failed");
  path_ = pattern;
}

ScratchDir::~ScratchDir() {
  std::error_code error;
  fs::remove_all(path_, error);
}

std::string ScratchDir::Path(absl::string_view name) const {
  return absl::StrCat(path_, "/", name);
}

std::string ScratchDir::WriteFile(absl::string_view name,
                                  absl::string_view bytes) const {
  const std::string path = Path(name);
  std::error_code error;
  fs::create_directories(fs::path(path).parent_path(), error);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  Check(out.good(), "cannot write a scratch file");
  return path;
}

void ScratchDir::Clear() const {
  std::error_code error;
  for (const fs::directory_entry& entry :
       fs::directory_iterator(path_, error)) {
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
  }
}

void MaybeWriteSeeds(
    const std::function<std::vector<std::string>()>& make_seeds) {
  const char* dir = std::getenv("FEDGE_FUZZ_WRITE_SEEDS");
  if (dir == nullptr || *dir == '\0') return;
  std::error_code error;
  fs::create_directories(dir, error);
  Check(!error, "cannot create the seed directory");
  const std::vector<std::string> seeds = make_seeds();
  for (size_t i = 0; i < seeds.size(); ++i) {
    std::ofstream out(absl::StrFormat("%s/seed-%03d", dir, i),
                      std::ios::binary | std::ios::trunc);
    out.write(seeds[i].data(), static_cast<std::streamsize>(seeds[i].size()));
    out.close();
    Check(out.good(), "cannot write a seed");
  }
  std::fprintf(stderr, "wrote %zu seeds to %s\n", seeds.size(), dir);
  std::exit(0);
}

ModelState SmallModel() {
  ModelState model;
  model.Add(*TensorBuffer::FromFloats("w", {2}, {1.0f, 2.0f}));
  model.Add(*TensorBuffer::Zeros("count", DType::kInt64, {1}));
  model.Add(*TensorBuffer::FromFloats("b", {1}, {0.5f}));
  return model;
}

void QuietLogs() {
  SetMinLogLevel(LogLevel::kFatal);
  google::protobuf::SetLogHandler(nullptr);  // Invalid UTF-8 and the like.
}

void Trace(absl::string_view what, const absl::Status& status) {
  static const bool enabled = std::getenv("FEDGE_FUZZ_DEBUG") != nullptr;
  if (!enabled) return;
  std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(what.size()), what.data(),
               status.ToString().c_str());
}

void Check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "fuzz property failed: %s\n", what);
  std::abort();
}

}  // namespace fedge::fuzz
