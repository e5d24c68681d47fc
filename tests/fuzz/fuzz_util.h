// Helpers shared by the libFuzzer targets in tests/fuzz/: a reader that
// splits the fuzzer's input into fields (and a writer that builds seed
// inputs in the same format), scratch directories for the decoders that read
// files, seed-corpus generation and property checks.
//
// Seed corpora: every target generates its own valid inputs (it alone knows
// its input format). Run with FEDGE_FUZZ_WRITE_SEEDS=<dir>, the target
// writes them to <dir> from LLVMFuzzerInitialize and exits; the build does
// this for each target after linking it (tests/fuzz/CMakeLists.txt).
//
// Not thread-safe: libFuzzer runs one input at a time.
#ifndef FEDGE_TESTS_FUZZ_FUZZ_UTIL_H_
#define FEDGE_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/tensor_buffer.h"

namespace fedge::fuzz {

// Reads the input front to back. Past its end every read yields zeros or
// empty bytes, so any input is a valid sequence of fields.
class InputReader {
 public:
  explicit InputReader(absl::string_view data) : data_(data) {}
  InputReader(const uint8_t* data, size_t size)
      : data_(reinterpret_cast<const char*>(data), size) {}

  uint8_t Byte();
  // Little-endian.
  uint16_t U16();
  uint32_t U32();
  uint64_t U64();
  // The next min(n, remaining) bytes.
  absl::string_view Bytes(size_t n);
  // A U16 length, then that many bytes (fewer at the end of the input).
  absl::string_view Record() { return Bytes(U16()); }
  // Everything not read yet.
  absl::string_view Rest() { return Bytes(data_.size()); }
  bool empty() const { return data_.empty(); }
  size_t remaining() const { return data_.size(); }

 private:
  absl::string_view data_;
};

// Builds an input that InputReader reads back field by field (for seeds).
class InputWriter {
 public:
  InputWriter& Byte(uint8_t v);
  InputWriter& U16(uint16_t v);
  InputWriter& U32(uint32_t v);
  InputWriter& U64(uint64_t v);
  InputWriter& Bytes(absl::string_view bytes);
  // Aborts when `bytes` is longer than 65535 (a broken seed).
  InputWriter& Record(absl::string_view bytes);
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

// A fresh, empty directory, removed with its contents on destruction (so
// make it a function-local static, not a leaked pointer). Under /dev/shm
// when it exists (fsync is free there), else $TMPDIR or /tmp; named
// fedge-fuzz-<pid>-*, and those of processes that are gone (crashed
// targets) are deleted on creation.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string Path(absl::string_view name) const;
  // Writes `bytes` to Path(name), creating parent directories; aborts on
  // failure (the harness, not the code under test, is broken).
  std::string WriteFile(absl::string_view name, absl::string_view bytes) const;
  // Deletes everything inside the directory (it stays).
  void Clear() const;

 private:
  std::string path_;
};

// When FEDGE_FUZZ_WRITE_SEEDS names a directory, creates it, writes
// make_seeds()'s inputs there as seed-000, seed-001, ... and exits the
// process with status 0. Else does nothing. Call from
// LLVMFuzzerInitialize.
void MaybeWriteSeeds(
    const std::function<std::vector<std::string>()>& make_seeds);

// The model the stateful targets run with (coordinator, checkpoints, agent
// cache): float32 "w" [2], int64 "count" [1], float32 "b" [1].
ModelState SmallModel();

// Silences FEDGE_LOG below FATAL and protobuf's log: the decoders log
// every refused input.
void QuietLogs();

// Prints "<what>: <status>" to stderr when FEDGE_FUZZ_DEBUG is set (to see
// how far a seed gets: run the target on it alone).
void Trace(absl::string_view what, const absl::Status& status);

// Aborts with `what` when `condition` is false: a broken property is a bug
// like a crash, and libFuzzer saves the input.
void Check(bool condition, const char* what);

}  // namespace fedge::fuzz

// Defines libFuzzer's entry points for a target whose seeds come from
// `seeds` (std::vector<std::string>()) and whose one run is
// `fuzz_one(absl::string_view input)`: quiet logs, FEDGE_FUZZ_WRITE_SEEDS.
#define FEDGE_FUZZ_TARGET(seeds, fuzz_one)                                  \
  extern "C" int LLVMFuzzerInitialize(int*, char***) {                      \
    fedge::fuzz::QuietLogs();                                               \
    fedge::fuzz::MaybeWriteSeeds(seeds);                                    \
    return 0;                                                               \
  }                                                                         \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    fuzz_one(absl::string_view(reinterpret_cast<const char*>(data), size)); \
    return 0;                                                               \
  }

#endif  // FEDGE_TESTS_FUZZ_FUZZ_UTIL_H_
