// The canonical byte encoding of a ModelState: what moves on the wire (in
// chunks), what checkpoints and the agent's model cache store, and what a
// model's identity (SHA-256) is computed over.
//
// Layout (little-endian):
//   magic "FEDGEMS1" (8 bytes), uint32 tensor_count,
//   per tensor: uint16 name_len, name bytes (UTF-8), uint8 dtype (DType),
//               uint8 encoding (TensorEncoding), uint8 rank, int64 dims[rank],
//               uint64 data_len, data bytes.
// A tensor's data, for n elements and c = dims[0], by encoding:
//   0 raw     n values of the dtype, row-major              data_len n*size
//   1 fp16    n IEEE binary16 values                        2n
//   2 int8    float32 scale, n int8 q; value = q * scale    4 + n
//   3 int8 per channel: float32 scale[c], n int8 q; an element of slice i
//             along dim 0 is q * scale[i]                   4c + n
//   4 top-k   uint32 k, then k pairs (uint32 index, float32 value), indices
//             strictly increasing and < n; the other elements are 0
//                                                           4 + 8k
// Encodings 1-4 are "lossy" (common/update_codec.h makes them): they apply
// only to float32 tensors with n >= 1 (3: rank >= 1), scales are in
// [0, FLT_MAX / 128] (so q * scale is finite), and 1 <= k <= n. Decoding
// always yields a plain dense ModelState (dequantized, zeros where top-k
// sent nothing), so consumers never see an encoding.
//
// A model encoded raw (ModelState overloads below) has exactly one valid
// encoding (names are non-empty and unique, data_len is the shape's element
// count times the dtype size), so equal models have equal hashes. An
// EncodedModel is identified by the SHA-256 of its own bytes. Encoding a
// tensor name over 65535 bytes is a bug (checked).
//
// Decoding untrusted bytes: every size is checked against DecodeLimits and
// against the remaining input before anything is allocated; a malformed
// input yields INVALID_ARGUMENT (or RESOURCE_EXHAUSTED over a limit) with a
// message saying what is wrong and where, e.g. "tensor #3 'fc1.weight':
// data_len 100 does not match shape [200,784] float32 (627200 bytes)"
// (tensors are numbered from 0), and no partial result. The streaming
// decoder accepts bytes in arbitrary chunk sizes, so a large upload never
// needs a contiguous copy of its encoding; lossy data is decoded element by
// element as it arrives, straight into the float32 tensor.
//
// Raw encoding and decoding copy bytes and do no per-element work; they run
// at memory bandwidth. Thread-compatible.
#ifndef FEDGE_COMMON_MODEL_CODEC_H_
#define FEDGE_COMMON_MODEL_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/checksum.h"
#include "common/sha256.h"
#include "common/tensor_buffer.h"

namespace fedge {

// Upper bounds on what a decoder accepts; exceeding one is
// RESOURCE_EXHAUSTED. The decoder never allocates more than
// max_decoded_bytes of tensor data (and the ranks and shapes are bounded by
// kMaxTensorRank and kMaxTensorElements). Raw data decodes to its own size,
// lossy data to more (fp16 to twice its size; top-k's 4 + 8k bytes to 4n),
// hence the separate bound.
struct DecodeLimits {
  int64_t max_tensors = 4096;                  // Tensors per model.
  int64_t max_name_bytes = 1024;               // Bytes per tensor name.
  int64_t max_total_bytes = int64_t{4} << 30;  // Whole encoding, 4 GiB.
  // Decoded tensors together (float32 for lossy ones), 4 GiB.
  int64_t max_decoded_bytes = int64_t{4} << 30;
};

// How a tensor's data is encoded (the per-tensor `encoding` byte). Values
// are stable: they appear in files and on the wire.
enum class TensorEncoding : uint8_t {
  kRaw = 0,             // The dtype's values as they lie in memory.
  kFp16 = 1,            // IEEE binary16.
  kInt8 = 2,            // One float32 scale and int8 values.
  kInt8PerChannel = 3,  // One float32 scale per slice along dim 0.
  kTopK = 4,            // k (index, value) pairs; the rest are zeros.
  // uint32 k, a bit per element (element i is bit i % 8 of byte i / 8; set:
  // sent; bits past n are zero), then the k sent float32 values in index
  // order: smaller than kTopK when k > n / 32.
  kTopKMask = 5,
};
inline constexpr int kNumTensorEncodings = 6;

// True for the top-k encodings (kTopK, kTopKMask): k comes first in the
// data, unsent elements decode to zero.
inline bool IsTopK(TensorEncoding e) {
  return e == TensorEncoding::kTopK || e == TensorEncoding::kTopKMask;
}

// "raw", "fp16", "int8", "int8_per_channel", "topk", "topk_mask".
const char* TensorEncodingName(TensorEncoding encoding);

// The data_len of a tensor of `dtype` and `shape` encoded as `encoding`
// (for the top-k ones, holding `topk_k` values). INVALID_ARGUMENT, saying which
// rule is broken, for a bad shape (CheckedNumElements) or when the encoding
// does not apply: a lossy encoding of a non-float32 or empty tensor,
// kInt8PerChannel of a scalar, or topk_k outside [1, n].
absl::StatusOr<uint64_t> EncodedDataLen(TensorEncoding encoding, DType dtype,
                                        absl::Span<const int64_t> shape,
                                        int64_t topk_k = 0);

// One tensor as it goes on the wire: what it decodes to, how it is encoded
// and its data bytes, exactly as sent. Move-only.
struct EncodedTensor {
  TensorSpec spec;
  TensorEncoding encoding = TensorEncoding::kRaw;
  std::unique_ptr<uint8_t[]> data;  // data_len bytes.
  size_t data_len = 0;              // EncodedDataLen(encoding, spec...).
};

// A model (or an update) in its wire encoding: what EncodeForWire
// (common/update_codec.h) produces and ModelEncoder streams. Move-only.
struct EncodedModel {
  std::vector<EncodedTensor> tensors;
};

// Size in bytes of EncodeModel(state), computed without encoding.
int64_t EncodedSize(const ModelState& state);
int64_t EncodedSize(const EncodedModel& model);

// The whole encoding in one string (small models, tests, files).
std::string EncodeModel(const ModelState& state);
std::string EncodeModel(const EncodedModel& model);

// SHA-256 of the encoding, computed by streaming (no full copy).
Sha256Digest ModelDigest(const ModelState& state);
Sha256Digest ModelDigest(const EncodedModel& model);
// XXH3-128 of the same bytes: an upload's checksum (common/checksum.h).
Checksum128 ModelChecksum(const ModelState& state);
Checksum128 ModelChecksum(const EncodedModel& model);

namespace codec_internal {
// One tensor's header fields and data, viewed in a ModelState or an
// EncodedModel.
struct WireTensor {
  absl::string_view name;
  DType dtype = DType::kFloat32;
  absl::Span<const int64_t> shape;
  TensorEncoding encoding = TensorEncoding::kRaw;
  absl::string_view data;
};
}  // namespace codec_internal

// Produces the encoding piece by piece without materializing it: each Next()
// copies up to `max_chunk_bytes` of it straight from the model's buffers
// (raw) or from an EncodedModel's data (any encoding). The model must
// outlive the encoder and not change meanwhile.
//
//   ModelEncoder encoder(model, 1 << 20);
//   std::string chunk;
//   while (encoder.Next(&chunk)) Send(chunk);
class ModelEncoder {
 public:
  // `max_chunk_bytes` must be > 0 (checked).
  explicit ModelEncoder(const ModelState& state,
                        size_t max_chunk_bytes = 1 << 20);
  // An EncodedModel whose data_len disagrees with its encoding and spec is
  // a bug (checked).
  explicit ModelEncoder(const EncodedModel& model,
                        size_t max_chunk_bytes = 1 << 20);
  ModelEncoder(const ModelEncoder&) = delete;
  ModelEncoder& operator=(const ModelEncoder&) = delete;

  // Replaces `out` with the next bytes (between 1 and max_chunk_bytes of
  // them); returns false, with `out` empty, once the encoding is complete.
  bool Next(std::string* out);
  // Next() without copying: hands the next chunk's bytes to `piece` in
  // order. Pieces with `stable` are the model's own tensor data, valid as
  // long as the model is; the others (the prefix and tensor headers, a few
  // dozen bytes each) are the encoder's, valid only during the call. Returns
  // false, without calling `piece`, once the encoding is complete.
  bool NextPieces(
      absl::FunctionRef<void(absl::string_view bytes, bool stable)> piece);
  // NextPieces with short pieces gathered: runs of headers and of tensor
  // data shorter than `copy_below` bytes come copied into one buffer (not
  // stable: valid only during the call), longer tensor data as it lies in
  // the model (stable). For writers that hand large pieces on without
  // copying them and would rather copy a few bytes than make a write or a
  // slice for each.
  bool NextGathered(
      size_t copy_below,
      absl::FunctionRef<void(absl::string_view bytes, bool stable)> piece);
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
  ModelEncoder(std::vector<codec_internal::WireTensor> tensors,
               size_t max_chunk_bytes);
  absl::string_view Segment() const;
  void EnterSegment(size_t segment);

  std::vector<codec_internal::WireTensor> tensors_;  // Views into the model.
  size_t max_chunk_bytes_;
  int64_t total_bytes_;
  int64_t offset_ = 0;
  size_t segment_ = 0;     // Current segment.
  size_t in_segment_ = 0;  // Bytes of it already produced.
  std::string header_;     // Bytes of the current prefix/header segment.
  std::string gathered_;   // NextGathered's copied run.
};

// Streaming decoder. Feed() bytes as they arrive, in chunks of any size,
// then Finish(). Memory: the decoded model plus a few hundred bytes; tensor
// data is copied (raw) or decoded (lossy) straight into its final buffer,
// allocated once at its decoded size when the tensor's header has been
// checked. Move-only.
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

  // Buffers to decode into instead of allocating (e.g. the previous
  // update's, so a server decoding model-sized updates round after round
  // does not fault in fresh pages each time): tensor #i is decoded into
  // spare #i when their names, dtypes and shapes match (other spares are
  // freed). The limits apply as to fresh buffers. Call before Feed().
  void Recycle(ModelState spare);

  // INVALID_ARGUMENT / RESOURCE_EXHAUSTED as soon as the bytes seen so far
  // are malformed or over a limit (including bytes after the last tensor,
  // an unknown encoding or one the tensor cannot have, a data_len the
  // encoding does not imply, an int8 scale outside [0, FLT_MAX / 128], a
  // top-k k outside [1, n] or an index out of range or not above the
  // previous one); afterwards every call fails the same way.
  // FAILED_PRECONDITION after Finish().
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
