// The canonical byte encoding of a ModelState: what moves on the wire (in
// chunks), what checkpoints and the agent's model cache store, and what a
// model's identity (SHA-256) is computed over.
//
// Layout (little-endian):
//   magic "FEDGEMS1" (8 bytes), uint32 tensor_count,
//   per tensor: uint16 name_len, name bytes (UTF-8), uint8 dtype (DType),
//               uint8 encoding (0 = raw), uint8 rank, int64 dims[rank],
//               uint64 data_len, data bytes (row-major, little-endian).
// Every field has exactly one valid value for a given ModelState (names are
// non-empty and unique, data_len is the shape's element count times the
// dtype size), so the encoding is unique and equal models have equal hashes.
// Encoding a model whose tensor name exceeds 65535 bytes is a bug (checked).
//
// Decoding untrusted bytes: every size is checked against DecodeLimits and
// against the remaining input before anything is allocated; a malformed
// input yields INVALID_ARGUMENT (or RESOURCE_EXHAUSTED over a limit) with a
// message saying what is wrong and where, e.g. "tensor #3 'fc1.weight':
// data_len 100 does not match shape [200,784] float32 (627200 bytes)"
// (tensors are numbered from 0), and no partial result. The streaming
// decoder accepts bytes in arbitrary chunk sizes, so a large upload never
// needs a contiguous copy of its encoding.
//
// Encoding and decoding copy bytes and do no per-element work; they run at
// memory bandwidth. Thread-compatible.
#ifndef FEDGE_COMMON_MODEL_CODEC_H_
#define FEDGE_COMMON_MODEL_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/sha256.h"
#include "common/tensor_buffer.h"

namespace fedge {

// Upper bounds on what a decoder accepts; exceeding one is
// RESOURCE_EXHAUSTED. The decoder never allocates more than max_total_bytes
// of tensor data (and the ranks and shapes are bounded by kMaxTensorRank
// and kMaxTensorElements).
struct DecodeLimits {
  int64_t max_tensors = 4096;                  // Tensors per model.
  int64_t max_name_bytes = 1024;               // Bytes per tensor name.
  int64_t max_total_bytes = int64_t{4} << 30;  // Whole encoding, 4 GiB.
};

// Size in bytes of EncodeModel(state), computed without encoding.
int64_t EncodedSize(const ModelState& state);

// The whole encoding in one string (small models, tests, files).
std::string EncodeModel(const ModelState& state);

// SHA-256 of the encoding, computed by streaming (no full copy).
Sha256Digest ModelDigest(const ModelState& state);

// Produces the encoding piece by piece without materializing it: each Next()
// copies up to `max_chunk_bytes` of it straight from the model's buffers.
// The model must outlive the encoder and not change meanwhile.
//
//   ModelEncoder encoder(model, 1 << 20);
//   std::string chunk;
//   while (encoder.Next(&chunk)) Send(chunk);
class ModelEncoder {
 public:
  // `max_chunk_bytes` must be > 0 (checked).
  explicit ModelEncoder(const ModelState& state,
                        size_t max_chunk_bytes = 1 << 20);
  ModelEncoder(const ModelEncoder&) = delete;
  ModelEncoder& operator=(const ModelEncoder&) = delete;

  // Replaces `out` with the next bytes (between 1 and max_chunk_bytes of
  // them); returns false, with `out` empty, once the encoding is complete.
  bool Next(std::string* out);
  // EncodedSize() of the model.
  int64_t total_bytes() const { return total_bytes_; }
  // Bytes produced so far (or the position Seek() set).
  int64_t offset() const { return offset_; }
  // Continues at byte `offset` (resumed transfers); 0 <= offset <=
  // total_bytes() (checked). O(number of tensors).
  void Seek(int64_t offset);

 private:
  // The encoding is a list of segments: 0 is the prefix (magic, count),
  // 2k+1 is tensor k's header and 2k+2 its data.
  absl::string_view Segment() const;
  void EnterSegment(size_t segment);

  const ModelState& state_;
  size_t max_chunk_bytes_;
  int64_t total_bytes_;
  int64_t offset_ = 0;
  size_t segment_ = 0;     // Current segment.
  size_t in_segment_ = 0;  // Bytes of it already produced.
  std::string header_;     // Bytes of the current prefix/header segment.
};

// Streaming decoder. Feed() bytes as they arrive, in chunks of any size,
// then Finish(). Memory: the decoded model plus a few hundred bytes; tensor
// data is copied straight into its final buffer. Move-only.
class ModelDecoder {
 public:
  // With `expected`, the decoded model must have exactly that schema
  // (names, dtypes, shapes, order); a mismatch is reported as soon as the
  // offending tensor header arrives, before its data is allocated.
  explicit ModelDecoder(DecodeLimits limits = {},
                        std::optional<ModelSchema> expected = std::nullopt);
  ~ModelDecoder();
  ModelDecoder(ModelDecoder&&) noexcept;
  ModelDecoder& operator=(ModelDecoder&&) noexcept;
  ModelDecoder(const ModelDecoder&) = delete;
  ModelDecoder& operator=(const ModelDecoder&) = delete;

  // Declares the exact size of the whole encoding when it is known up front
  // (a file, a transfer that announced its size): sizes that cannot fit in
  // it are then rejected before allocation, as INVALID_ARGUMENT. Call before
  // the first Feed().
  void SetExpectedSize(int64_t total_bytes);

  // INVALID_ARGUMENT / RESOURCE_EXHAUSTED as soon as the bytes seen so far
  // are malformed or over a limit (including bytes after the last tensor);
  // afterwards every call fails the same way. FAILED_PRECONDITION after
  // Finish().
  absl::Status Feed(absl::string_view bytes);
  // The decoded model. INVALID_ARGUMENT when the input was truncated, the
  // error of an earlier Feed, or FAILED_PRECONDITION when called twice.
  absl::StatusOr<ModelState> Finish();
  // Bytes consumed so far.
  int64_t bytes_consumed() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Decodes a whole encoding (convenience over ModelDecoder, with the input's
// size declared), optionally against an expected schema.
absl::StatusOr<ModelState> DecodeModel(
    absl::string_view bytes, DecodeLimits limits = {},
    std::optional<ModelSchema> expected = std::nullopt);

}  // namespace fedge

#endif  // FEDGE_COMMON_MODEL_CODEC_H_
