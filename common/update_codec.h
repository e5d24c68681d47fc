// Lossy wire encodings for model updates (deltas) and downloads: fp16, int8
// (one scale per tensor or per slice along dim 0, stochastic or nearest
// rounding) and top-k sparsification, each carried in the canonical layout
// of common/model_codec.h by its per-tensor `encoding` byte.
//
// The encoder side is EncodeForWire: ModelState -> EncodedModel, which
// ModelEncoder streams and whose EncodedSize / ModelDigest are those of the
// bytes on the wire. The decoder side is the ordinary ModelDecoder /
// DecodeModel, which turns any mix of encodings back into a dense float32
// ModelState (LossyDataDecoder below is its per-encoding back end), so
// aggregation never sees an encoding.
//
// What each UpdateEncoding does to a float32 tensor of n >= 1 elements
// (int64 tensors and empty tensors always go raw, losslessly; so does any
// tensor whose lossy encoding would not be smaller than raw):
//   fp32  Raw, exact (a copy).
//   fp16  IEEE binary16, rounded to nearest even, subnormals kept. A
//         magnitude beyond the largest half (65504) is clamped to +-65504
//         instead of becoming infinite: a delta must stay finite. Relative
//         error <= 2^-11 for magnitudes in [2^-14, 65504]; absolute error
//         <= 2^-25 below.
//   int8  Symmetric: scale = max|x| / 127 over the tensor or, with
//         per_channel, over each slice along dim 0 (tensors of rank >= 2;
//         lower ranks get one scale); q = x / scale rounded stochastically
//         (up with probability equal to the fractional part, so
//         E[q * scale] = x and |error| < scale; the random bits come from a
//         DeterministicRng seeded by `seed` and the tensor's index, one
//         draw keying each block of 4096 elements, expanded by a hash) or,
//         without stochastic_rounding, to nearest (|error| <= scale / 2,
//         ties toward -infinity). An
//         all-zero tensor or slice has scale 0 and decodes to zeros; so
//         does one whose scale would be below FLT_MIN (max|x| < 1.5e-36).
//         The scale is capped at FLT_MAX / 128 so that every decoded value
//         is finite (only max|x| above 2^128 * 127 / 128 notices: its error
//         may reach one scale).
//   topk  The k = max(1, ceil(topk_fraction * n)) entries of largest
//         magnitude (ties to the lower index), per tensor, as (index, value)
//         pairs in index order; the rest decode to 0. (A product within 1e-9
//         of an integer counts as that integer, so 0.3 of 10 is 3.) There is
//         no model-wide threshold: each tensor sends its own share.
// A lossy encoding needs finite values (INVALID_ARGUMENT otherwise).
//
// Error feedback: EncodeForWire's `residual` is delta - decode(encode(
// delta)), elementwise and exact in float32 (top-k: the unsent entries;
// int8 and fp16: the rounding error; raw tensors: zeros).
//
// Everything here is thread-compatible; EncodeForWire is a pure function of
// its arguments.
#ifndef FEDGE_COMMON_UPDATE_CODEC_H_
#define FEDGE_COMMON_UPDATE_CODEC_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/model_codec.h"
#include "common/tensor_buffer.h"

namespace fedge {

// What a sender does to its float32 tensors (see the table above).
enum class UpdateEncoding { kFp32, kFp16, kInt8, kTopK };

// "fp32", "fp16", "int8" or "topk".
const char* UpdateEncodingName(UpdateEncoding encoding);

// The encoding called `name` (one of the names above, exactly), or
// INVALID_ARGUMENT listing the valid names.
absl::StatusOr<UpdateEncoding> ParseUpdateEncoding(absl::string_view name);

// How the global model travels to agents: "fp32" (raw) or "fp16" (half
// the bytes). INVALID_ARGUMENT naming the valid names otherwise.
absl::StatusOr<UpdateEncoding> ParseDownloadEncoding(absl::string_view name);

struct EncodingOptions {
  UpdateEncoding kind = UpdateEncoding::kFp32;
  // int8: one scale per slice along dim 0 (rank >= 2) instead of per tensor.
  bool per_channel = false;
  // int8: unbiased stochastic rounding; false rounds to nearest.
  bool stochastic_rounding = true;
  // topk: the share of each tensor's entries sent, in (0, 1].
  double topk_fraction = 0.1;
  // int8 stochastic rounding: the same seed gives the same bytes.
  uint64_t seed = 0;
};

// OK, or INVALID_ARGUMENT naming the bad field (topk_fraction outside
// (0, 1], or not a number).
absl::Status ValidateEncodingOptions(const EncodingOptions& options);

// Encodes `model` (a delta, or a whole model for a download) as `options`
// say. When `residual` is not null it receives, on success,
// model - decode(encoding), with model's schema (see the header comment).
//
// Returns INVALID_ARGUMENT (and leaves `residual` alone) for bad options
// or, under a lossy kind, a non-finite float32 element (naming the tensor
// and the element).
absl::StatusOr<EncodedModel> EncodeForWire(const ModelState& model,
                                           const EncodingOptions& options,
                                           ModelState* residual = nullptr);

// The model an agent trains from when the global model is downloaded in
// `encoding` (fp16: every float32 value rounded to half precision, as the
// agent decodes it; fp32: an exact copy). What fedge-sim's agents start
// from; the coordinator sends EncodeForWire(model, {encoding}) itself.
// `wire_bytes` (when not null) receives the size of the download.
// INVALID_ARGUMENT for another encoding or a non-finite value.
absl::StatusOr<ModelState> AsDownloaded(const ModelState& model,
                                        UpdateEncoding encoding,
                                        int64_t* wire_bytes = nullptr);

// IEEE binary16 conversions used by the fp16 encoding. FloatToHalf rounds
// to nearest even, keeps subnormals, clamps magnitudes beyond 65504
// (infinities included) to +-65504 and turns NaN into a quiet NaN.
// HalfToFloat is exact for every half (infinities and NaNs included).
// Error feedback (Seide et al. 2014; Karimireddy et al. 2019): `delta` plus
// the `residual` left over from earlier rounds is encoded; the residual then
// holds what that encoding did not send, to be added next time. Applied for
// top-k (int8 with stochastic rounding is unbiased and needs none: its
// residual is left empty). An empty or mismatching `residual` counts as
// zeros. fp32 sends `delta` as it is: the result is then an empty model
// (the caller streams `delta` itself). INVALID_ARGUMENT as EncodeForWire.
absl::StatusOr<EncodedModel> EncodeWithErrorFeedback(
    const ModelState& delta, const EncodingOptions& options,
    ModelState* residual);

uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t half);

// Decodes the data of one lossy-encoded tensor (encoding != kRaw) as its
// bytes arrive, in pieces of any size, straight into the float32 tensor it
// decodes to: ModelDecoder's per-encoding back end. Needs no memory of its
// own beyond a few bytes (per-channel scales wait in the output tensor, at
// the first element of their slice, until the slice is decoded).
class LossyDataDecoder {
 public:
  // `out` is the float32 tensor being decoded, zero-filled for top-k, and
  // outlives the decoder. ModelDecoder has already checked that the
  // encoding applies to it and that `data_len` is what the encoding implies
  // (EncodedDataLen; for top-k, within the bounds of any k): otherwise it is a
  // bug (checked).
  LossyDataDecoder(TensorEncoding encoding, uint64_t data_len,
                   TensorBuffer* out);
  LossyDataDecoder(const LossyDataDecoder&) = delete;
  LossyDataDecoder& operator=(const LossyDataDecoder&) = delete;

  // Consumes `bytes`, which must not run past data_len (checked).
  // INVALID_ARGUMENT, with a message that does not name the tensor (the
  // caller prefixes it), for an int8 scale outside [0, FLT_MAX / 128], a
  // top-k k outside [1, n] or disagreeing with data_len, a top-k index
  // that is >= n or not above the previous one, or a top-k mask with a bit
  // set past n or a number of set bits other than k. After an error the
  // decoder
  // must not be fed again.
  absl::Status Feed(absl::string_view bytes);

 private:
  // The data is a sequence of sections of fixed-size items.
  enum class Section {
    kHalves,         // fp16: n halves.
    kScale,          // int8: one float32 scale.
    kChannelScales,  // int8 per channel: dims[0] float32 scales.
    kInt8s,          // int8: n values.
    kChannelInt8s,   // int8 per channel: n values.
    kTopKCount,      // top-k: uint32 k.
    kTopKPairs,      // top-k: k (uint32 index, float32 value) pairs.
    kMaskBytes,      // top-k (mask): ceil(n / 8) bytes of the mask.
    kMaskValues,     // top-k (mask): k float32 values.
    kDone,
  };
  void Enter(Section section, uint64_t items);
  void EnterNextSection();
  absl::Status Items(const char* p, uint64_t count);
  absl::Status Scales(const char* p, uint64_t count);
  void ChannelInt8s(const char* p, uint64_t count);
  absl::Status TopKCount(const char* p);
  absl::Status TopKPairs(const char* p, uint64_t count);
  absl::Status MaskBytes(const char* p, uint64_t count);
  void MaskValues(const char* p, uint64_t count);

  const uint64_t data_len_;
  float* const out_;
  const int64_t num_elements_;
  int64_t slice_elements_ = 1;  // Elements per slice along dim 0.

  Section section_ = Section::kDone;
  size_t item_bytes_ = 1;
  uint64_t section_items_ = 0;  // Items in the current section...
  uint64_t items_done_ = 0;     // ...and how many are decoded.
  char carry_[8];               // An item split between Feed() calls.
  size_t carry_bytes_ = 0;
  float scale_ = 0.0f;       // Of the tensor, or of the slice being decoded.
  int64_t last_index_ = -1;  // Top-k: the previous pair's index.
  // Top-k (mask): the mask marks its elements in the output with a NaN
  // pattern no finite value has, which the values then replace in order.
  const bool mask_ = false;
  uint64_t topk_k_ = 0;
  uint64_t mask_bits_ = 0;  // Set bits seen so far.
  int64_t cursor_ = 0;      // Where the next value's element is searched.
};

}  // namespace fedge

#endif  // FEDGE_COMMON_UPDATE_CODEC_H_
