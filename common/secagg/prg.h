// The mask expander: a pseudo-random generator that turns a 32-byte seed
// into a stream of elements of Z_{2^32}, the ring secure aggregation adds in.
//
// The stream is the AES-256-CTR keystream (OpenSSL EVP, key = seed, initial
// counter block 0) read as little-endian 32-bit words: element i is bytes
// [4i, 4i + 4) of the keystream, on every platform. Each seed must mask one
// vector only (secagg derives a fresh seed per session and pair).
//
// Generation is incremental: a caller walking a 10M-element model tensor by
// tensor asks for each tensor's elements in turn and never holds the whole
// mask (AddTo / SubtractFrom keep a 16 KiB buffer).
//
// MaskGenerator is move-only and not thread-safe; use one per thread.
#ifndef FEDGE_COMMON_SECAGG_PRG_H_
#define FEDGE_COMMON_SECAGG_PRG_H_

#include <array>
#include <cstdint>
#include <memory>

#include "absl/types/span.h"

namespace fedge::secagg {

using Seed = std::array<uint8_t, 32>;

class MaskGenerator {
 public:
  // The stream of `seed`, positioned at element 0. OpenSSL failing to set up
  // AES is a crash (a broken installation).
  explicit MaskGenerator(const Seed& seed);
  ~MaskGenerator();
  MaskGenerator(MaskGenerator&&) noexcept;
  MaskGenerator& operator=(MaskGenerator&&) noexcept;
  MaskGenerator(const MaskGenerator&) = delete;
  MaskGenerator& operator=(const MaskGenerator&) = delete;

  // Writes the next out.size() elements of the stream.
  void Next(absl::Span<uint32_t> out);
  // acc[i] += the next acc.size() elements (mod 2^32).
  void AddTo(absl::Span<uint32_t> acc);
  // acc[i] -= the next acc.size() elements (mod 2^32).
  void SubtractFrom(absl::Span<uint32_t> acc);
  // Skips the next `count` elements (cheap: it moves the counter).
  void Skip(uint64_t count);

  // Elements produced or skipped so far.
  uint64_t position() const { return position_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint64_t position_ = 0;
};

}  // namespace fedge::secagg

#endif  // FEDGE_COMMON_SECAGG_PRG_H_
