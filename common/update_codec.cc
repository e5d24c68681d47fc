#include "common/update_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "common/vectorize.h"

namespace fedge {
namespace {

// Data bytes are read and written as they lie in memory (see
// model_codec.cc).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the model encoding assumes a little-endian host");

constexpr const char* kUpdateEncodingNames[] = {"fp32", "fp16", "int8", "topk"};
constexpr int32_t kFloatAbsMask = 0x7fffffff;
constexpr int32_t kFloatInfBits = 0x7f800000;
constexpr uint32_t kMaxHalfBits = 0x7bff;  // 65504.
constexpr float kInt8Max = 127.0f;
// The largest int8 scale: every q * scale (q in [-128, 127]) stays finite.
constexpr float kMaxInt8Scale = std::numeric_limits<float>::max() / 128;

// ---------------------------------------------------------------------------
// Element kernels: branch-free so that the compiler vectorizes the loops.

inline int32_t FloatBits(float f) {
  int32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

inline float BitsFloat(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// All ones when `condition` holds, else zero: selects written as masks, so
// that the loops vectorize without branches.
inline int32_t MaskIf(bool condition) {
  return -static_cast<int32_t>(condition);
}

inline int32_t Select(int32_t mask, int32_t if_set, int32_t if_clear) {
  return (if_set & mask) | (if_clear & ~mask);
}

// After F. Giesen's float_to_half_fast3_rtne, with saturation.
inline uint16_t FloatToHalfBits(float f) {
  const int32_t bits = FloatBits(f);
  const int32_t sign = (bits >> 16) & 0x8000;
  const int32_t x = bits & kFloatAbsMask;
  // Normal halves: rebias the exponent (127 -> 15) and round the mantissa
  // to 10 bits, to nearest even; a carry moves into the exponent.
  const uint32_t ux = static_cast<uint32_t>(x);
  const int32_t normal = static_cast<int32_t>(
      (ux - (112u << 23) + 0xfffu + ((ux >> 13) & 1u)) >> 13);
  // Below 2^-14, halves are subnormal with ulp 2^-24: adding 0.5f (whose
  // ulp is 2^-24) lets the FPU round to nearest even, and the low bits of
  // the sum are the half's bits.
  const int32_t subnormal = FloatBits(BitsFloat(x) + 0.5f) - FloatBits(0.5f);
  int32_t h = Select(MaskIf(x < (113 << 23)), subnormal, normal);
  h = Select(MaskIf(h > static_cast<int32_t>(kMaxHalfBits)), kMaxHalfBits, h);
  h = Select(MaskIf(x > kFloatInfBits), 0x7e00, h);  // NaN: a quiet NaN.
  return static_cast<uint16_t>(h | sign);
}

// After M. Dukhan's fp16_ieee_to_fp32_value: one select.
inline float HalfBitsToFloat(uint16_t half) {
  const int32_t sign = static_cast<int32_t>(half & 0x8000) << 16;
  const int32_t em = static_cast<int32_t>(half & 0x7fff);
  // Normal, infinite and NaN halves: shift the bits into place, add 224 to
  // the exponent (31 becomes 255: infinities and NaNs stay so) and scale
  // by 2^-112, which leaves the exponent rebiased by 112 (15 -> 127).
  const float normal = BitsFloat((em << 13) + (224 << 23)) * 0x1p-112f;
  // Subnormal or zero: 0.5 * (1 + m * 2^-23) - 0.5 = m * 2^-24, exactly.
  const float subnormal = BitsFloat(em | (126 << 23)) - 0.5f;
  return BitsFloat(
      Select(MaskIf(em < 0x400), FloatBits(subnormal), FloatBits(normal)) |
      sign);
}

FEDGE_VECTOR_CLONES
void HalvesToFloats(const char* in, uint64_t count, float* out) {
  for (uint64_t i = 0; i < count; ++i) {
    uint16_t half;
    std::memcpy(&half, in + 2 * i, 2);
    out[i] = HalfBitsToFloat(half);
  }
}

FEDGE_VECTOR_CLONES
void Int8sToFloats(const char* in, uint64_t count, float scale, float* out) {
  for (uint64_t i = 0; i < count; ++i) {
    out[i] = static_cast<float>(static_cast<int8_t>(in[i])) * scale;
  }
}

// The largest |x| as float bits: at or above kFloatInfBits when some
// element is not finite (bit patterns of non-negative floats sort like
// their values).
int32_t MaxAbsBits(const float* x, int64_t count) {
  return static_cast<int32_t>(MaxAbsFloatBits(x, static_cast<size_t>(count)));
}

// INVALID_ARGUMENT naming the first non-finite element of `t`, when
// `max_abs_bits` (over all of it) shows that there is one.
absl::Status CheckFiniteBits(const TensorBuffer& t, int32_t max_abs_bits) {
  if (max_abs_bits < kFloatInfBits) return absl::OkStatus();
  const absl::Span<const float> x = t.floats();
  const size_t bad = static_cast<size_t>(
      std::find_if(x.begin(), x.end(),
                   [](float v) { return !std::isfinite(v); }) -
      x.begin());
  return absl::InvalidArgumentError(
      absl::StrCat("tensor '", t.name(), "': element ", bad, " is ", x[bad],
                   "; lossy encodings need finite values"));
}

void PutFloat(uint8_t* out, float value) { std::memcpy(out, &value, 4); }
void PutUint32(uint8_t* out, uint32_t value) { std::memcpy(out, &value, 4); }

}  // namespace

uint16_t FloatToHalf(float value) { return FloatToHalfBits(value); }
float HalfToFloat(uint16_t half) { return HalfBitsToFloat(half); }

// ---------------------------------------------------------------------------
// Names and options.

const char* UpdateEncodingName(UpdateEncoding encoding) {
  return kUpdateEncodingNames[static_cast<int>(encoding)];
}

absl::StatusOr<UpdateEncoding> ParseUpdateEncoding(absl::string_view name) {
  for (size_t i = 0; i < std::size(kUpdateEncodingNames); ++i) {
    if (name == kUpdateEncodingNames[i]) return static_cast<UpdateEncoding>(i);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown update encoding '", name, "' (valid: fp32, fp16, int8, topk)"));
}

absl::StatusOr<UpdateEncoding> ParseDownloadEncoding(absl::string_view name) {
  if (name == "fp32") return UpdateEncoding::kFp32;
  if (name == "fp16") return UpdateEncoding::kFp16;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown download encoding '", name, "' (valid: fp32, fp16)"));
}

absl::StatusOr<ModelState> AsDownloaded(const ModelState& model,
                                        UpdateEncoding encoding,
                                        int64_t* wire_bytes) {
  if (encoding == UpdateEncoding::kFp32) {
    if (wire_bytes != nullptr) *wire_bytes = EncodedSize(model);
    return model.Clone();
  }
  if (encoding != UpdateEncoding::kFp16) {
    return absl::InvalidArgumentError(
        absl::StrCat("models are not downloaded as ",
                     UpdateEncodingName(encoding), " (valid: fp32, fp16)"));
  }
  EncodingOptions options;
  options.kind = encoding;
  ASSIGN_OR_RETURN(EncodedModel wire, EncodeForWire(model, options));
  if (wire_bytes != nullptr) *wire_bytes = EncodedSize(wire);
  return DecodeModel(EncodeModel(wire));
}

absl::Status ValidateEncodingOptions(const EncodingOptions& options) {
  if (!(options.topk_fraction > 0.0 && options.topk_fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "topk_fraction ", options.topk_fraction, " is outside (0, 1]"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Decoding.

LossyDataDecoder::LossyDataDecoder(TensorEncoding encoding, uint64_t data_len,
                                   TensorBuffer* out)
    : data_len_(data_len),
      out_(out->mutable_floats().data()),
      num_elements_(out->num_elements()),
      mask_(encoding == TensorEncoding::kTopKMask) {
  FEDGE_CHECK(num_elements_ > 0) << "lossy data for an empty tensor";
  switch (encoding) {
    case TensorEncoding::kFp16:
      Enter(Section::kHalves, num_elements_);
      break;
    case TensorEncoding::kInt8:
      Enter(Section::kScale, 1);
      break;
    case TensorEncoding::kInt8PerChannel:
      FEDGE_CHECK(!out->shape().empty()) << "per-channel int8 of a scalar";
      slice_elements_ = num_elements_ / out->shape()[0];
      Enter(Section::kChannelScales, out->shape()[0]);
      break;
    case TensorEncoding::kTopK:
    case TensorEncoding::kTopKMask:
      Enter(Section::kTopKCount, 1);
      break;
    default:
      FEDGE_LOG(FATAL) << "LossyDataDecoder for encoding "
                       << static_cast<int>(encoding);
  }
}

void LossyDataDecoder::Enter(Section section, uint64_t items) {
  static constexpr size_t kItemBytes[] = {2, 4, 4, 1, 1, 4, 8, 1, 4, 1};
  section_ = section;
  item_bytes_ = kItemBytes[static_cast<int>(section)];
  section_items_ = items;
  items_done_ = 0;
}

void LossyDataDecoder::EnterNextSection() {
  switch (section_) {
    case Section::kScale:
      return Enter(Section::kInt8s, num_elements_);
    case Section::kChannelScales:
      return Enter(Section::kChannelInt8s, num_elements_);
    case Section::kMaskBytes:
      return Enter(Section::kMaskValues, topk_k_);
    default:  // kTopKCount enters the pairs itself, having read k.
      return Enter(Section::kDone, 0);
  }
}

absl::Status LossyDataDecoder::Feed(absl::string_view bytes) {
  while (!bytes.empty()) {
    FEDGE_CHECK(section_ != Section::kDone) << "bytes past the data_len";
    if (carry_bytes_ > 0 || bytes.size() < item_bytes_) {
      const size_t n = std::min(item_bytes_ - carry_bytes_, bytes.size());
      std::memcpy(carry_ + carry_bytes_, bytes.data(), n);
      carry_bytes_ += n;
      bytes.remove_prefix(n);
      if (carry_bytes_ < item_bytes_) break;
      carry_bytes_ = 0;
      RETURN_IF_ERROR(Items(carry_, 1));
    } else {
      const size_t item_bytes = item_bytes_;  // Items() may change section.
      const uint64_t n = std::min<uint64_t>(bytes.size() / item_bytes,
                                            section_items_ - items_done_);
      RETURN_IF_ERROR(Items(bytes.data(), n));
      bytes.remove_prefix(n * item_bytes);
    }
  }
  return absl::OkStatus();
}

absl::Status LossyDataDecoder::Items(const char* p, uint64_t count) {
  switch (section_) {
    case Section::kHalves:
      HalvesToFloats(p, count, out_ + items_done_);
      break;
    case Section::kScale:
    case Section::kChannelScales:
      RETURN_IF_ERROR(Scales(p, count));
      break;
    case Section::kInt8s:
      Int8sToFloats(p, count, scale_, out_ + items_done_);
      break;
    case Section::kChannelInt8s:
      ChannelInt8s(p, count);
      break;
    case Section::kTopKCount:
      return TopKCount(p);
    case Section::kTopKPairs:
      RETURN_IF_ERROR(TopKPairs(p, count));
      break;
    case Section::kMaskBytes:
      RETURN_IF_ERROR(MaskBytes(p, count));
      break;
    case Section::kMaskValues:
      MaskValues(p, count);
      break;
    case Section::kDone:
      FEDGE_LOG(FATAL) << "items past the end";
  }
  items_done_ += count;
  if (items_done_ == section_items_) EnterNextSection();
  return absl::OkStatus();
}

// Checks each scale; the tensor's goes to scale_, a slice's waits in the
// slice's first element until ChannelInt8s reaches it.
absl::Status LossyDataDecoder::Scales(const char* p, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    float scale;
    std::memcpy(&scale, p + 4 * i, 4);
    if (!(scale >= 0.0f && scale <= kMaxInt8Scale)) {
      const std::string which =
          section_ == Section::kScale
              ? std::string("int8 scale ")
              : absl::StrCat("int8 scale of channel ", items_done_ + i, " ");
      return absl::InvalidArgumentError(
          absl::StrCat(which, scale, " is outside [0, FLT_MAX / 128]"));
    }
    if (section_ == Section::kScale) {
      scale_ = scale;
    } else {
      out_[(items_done_ + i) * slice_elements_] = scale;
    }
  }
  return absl::OkStatus();
}

void LossyDataDecoder::ChannelInt8s(const char* p, uint64_t count) {
  uint64_t at = items_done_;
  while (count > 0) {
    const uint64_t in_slice = at % slice_elements_;
    if (in_slice == 0) scale_ = out_[at];  // The slice's stashed scale.
    const uint64_t run = std::min<uint64_t>(count, slice_elements_ - in_slice);
    Int8sToFloats(p, run, scale_, out_ + at);
    p += run;
    at += run;
    count -= run;
  }
}

absl::Status LossyDataDecoder::TopKCount(const char* p) {
  uint32_t k;
  std::memcpy(&k, p, 4);
  if (k < 1 || k > static_cast<uint64_t>(num_elements_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("top-k k ", k, " is outside [1, ", num_elements_, "]"));
  }
  const uint64_t mask_bytes = (static_cast<uint64_t>(num_elements_) + 7) / 8;
  const uint64_t want = mask_ ? 4 + mask_bytes + 4 * static_cast<uint64_t>(k)
                              : 4 + 8 * static_cast<uint64_t>(k);
  if (data_len_ != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "top-k k ", k, " does not match data_len ", data_len_,
        mask_ ? " (4 + ceil(n / 8) + 4k = " : " (4 + 8k = ", want, ")"));
  }
  topk_k_ = k;
  if (mask_) {
    Enter(Section::kMaskBytes, mask_bytes);
  } else {
    Enter(Section::kTopKPairs, k);
  }
  return absl::OkStatus();
}

namespace {
// Marks an element a top-k mask selects until its value arrives: a NaN, so
// no finite value (all that an encoder sends) has these bits.
constexpr uint32_t kMaskMarkBits = 0x7fa5f00du;
}  // namespace

absl::Status LossyDataDecoder::MaskBytes(const char* p, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    const uint8_t byte = static_cast<uint8_t>(p[i]);
    if (byte == 0) continue;
    const int64_t base = 8 * static_cast<int64_t>(items_done_ + i);
    for (int b = 0; b < 8; ++b) {
      if ((byte >> b & 1) == 0) continue;
      if (base + b >= num_elements_) {
        return absl::InvalidArgumentError(
            absl::StrCat("top-k mask sets bit ", base + b, " past the ",
                         num_elements_, " elements"));
      }
      std::memcpy(out_ + base + b, &kMaskMarkBits, 4);
      ++mask_bits_;
    }
  }
  if (mask_bits_ > topk_k_ ||
      (items_done_ + count == section_items_ && mask_bits_ != topk_k_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("top-k mask sets ", mask_bits_,
                     mask_bits_ > topk_k_ ? " bits or more" : " bits",
                     ", not k = ", topk_k_));
  }
  return absl::OkStatus();
}

void LossyDataDecoder::MaskValues(const char* p, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t bits;
    while (std::memcpy(&bits, out_ + cursor_, 4), bits != kMaskMarkBits) {
      ++cursor_;  // The mask had exactly k bits: there is one ahead.
    }
    std::memcpy(out_ + cursor_, p + 4 * i, 4);
    ++cursor_;
  }
}

absl::Status LossyDataDecoder::TopKPairs(const char* p, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t index;
    std::memcpy(&index, p + 8 * i, 4);
    const int64_t at = index;
    if (at >= num_elements_ || at <= last_index_) {
      const uint64_t pair = items_done_ + i;
      if (at >= num_elements_) {
        return absl::InvalidArgumentError(
            absl::StrCat("top-k index ", index, " of pair #", pair,
                         " is out of range for ", num_elements_, " elements"));
      }
      return absl::InvalidArgumentError(
          absl::StrCat("top-k index ", index, " of pair #", pair,
                       " is not above the previous index ", last_index_,
                       " (indices must increase strictly)"));
    }
    std::memcpy(out_ + at, p + 8 * i + 4, 4);
    last_index_ = at;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Encoding.

namespace {

// The encoding a tensor gets under `options` before the size comparison
// with raw.
TensorEncoding ChooseEncoding(const TensorBuffer& t,
                              const EncodingOptions& options) {
  if (t.dtype() != DType::kFloat32 || t.num_elements() == 0) {
    return TensorEncoding::kRaw;
  }
  switch (options.kind) {
    case UpdateEncoding::kFp32:
      return TensorEncoding::kRaw;
    case UpdateEncoding::kFp16:
      return TensorEncoding::kFp16;
    case UpdateEncoding::kInt8:
      return options.per_channel && t.shape().size() >= 2
                 ? TensorEncoding::kInt8PerChannel
                 : TensorEncoding::kInt8;
    case UpdateEncoding::kTopK:
      return TensorEncoding::kTopK;
  }
  return TensorEncoding::kRaw;
}

// k = max(1, ceil(fraction * n)), products within 1e-9 of an integer
// taken as that integer.
int64_t TopKCount(double fraction, int64_t n) {
  const double exact = fraction * static_cast<double>(n);
  const double nearest = std::round(exact);
  const double rounded =
      std::fabs(exact - nearest) <= 1e-9 ? nearest : std::ceil(exact);
  return std::clamp<int64_t>(static_cast<int64_t>(rounded), 1, n);
}

// What one tensor's encoding works on: its values, its encoded data and,
// optionally, its residual (all n elements long, the data as laid out).
struct TensorJob {
  const float* x;
  int64_t n;
  uint8_t* data;
  float* residual;       // May be null.
  int32_t max_abs_bits;  // MaxAbsBits(x, n), finite.
};

void EncodeFp16(const TensorJob& job) {
  for (int64_t i = 0; i < job.n; ++i) {
    const uint16_t half = FloatToHalfBits(job.x[i]);
    std::memcpy(job.data + 2 * i, &half, 2);
  }
  if (job.residual == nullptr) return;
  HalvesToFloats(reinterpret_cast<const char*>(job.data), job.n, job.residual);
  for (int64_t i = 0; i < job.n; ++i) {
    job.residual[i] = job.x[i] - job.residual[i];
  }
}

// The int8 scale for values of magnitude up to `max_abs`: max_abs / 127,
// capped at kMaxInt8Scale, and 0 when it would be below FLT_MIN (max_abs <
// 127 * 2^-126: values that are zero in all but name), so that 1 / scale
// is finite.
float Int8Scale(float max_abs) {
  const float scale = max_abs / kInt8Max;
  if (scale < std::numeric_limits<float>::min()) return 0.0f;
  return std::min(scale, kMaxInt8Scale);
}

// 32 random bits for element `i` of a block keyed by `key`: murmur3's
// finalizer over a Weyl sequence, which is cheap and vectorizes (a
// generator call per element would dominate the encoding).
inline uint32_t BlockRandom(uint64_t key, uint32_t i) {
  uint32_t x = (static_cast<uint32_t>(key) + i * 0x9e3779b9u) ^
               static_cast<uint32_t>(key >> 32);
  x ^= x >> 16;
  x *= 0x85ebca6bu;
  x ^= x >> 13;
  x *= 0xc2b2ae35u;
  return x ^ (x >> 16);
}

// q = floor(v) + 1 with probability frac(v), else floor(v), for v = x /
// scale: E[q] = v. The probability is drawn as u < frac(v) with u uniform
// on multiples of 2^-24 in [0, 1): exact for |v| >= 1, whose fractions are
// multiples of 2^-23, and off by less than 2^-24 below. With Stochastic =
// false, u = 1/2 rounds to nearest (ties down).
template <bool Stochastic>
inline __attribute__((always_inline)) void QuantizeBlock(
    const float* x, int64_t n, float inverse, uint64_t key, int8_t* q) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i] * inverse;
    int32_t floor_v = static_cast<int32_t>(v);               // Truncated...
    floor_v -= MaskIf(v < static_cast<float>(floor_v)) & 1;  // ...floored.
    const float fraction = v - static_cast<float>(floor_v);
    const float u =
        Stochastic ? static_cast<float>(BlockRandom(key, i) >> 8) * 0x1p-24f
                   : 0.5f;
    const int32_t rounded = floor_v + (MaskIf(u < fraction) & 1);
    q[i] = static_cast<int8_t>(std::clamp(rounded, -127, 127));
  }
}

// Quantizes n values with `scale` (> 0) into q, in blocks of 4096 keyed by
// successive draws of `rng`.
FEDGE_VECTOR_CLONES
void QuantizeInt8(const float* x, int64_t n, float scale, bool stochastic,
                  DeterministicRng& rng, int8_t* q) {
  constexpr int64_t kBlock = 4096;
  const float inverse = 1.0f / scale;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t block = std::min(kBlock, n - start);
    if (stochastic) {
      QuantizeBlock<true>(x + start, block, inverse, rng.NextBits(), q + start);
    } else {
      QuantizeBlock<false>(x + start, block, inverse, 0, q + start);
    }
  }
}

// int8 over `slices` equal slices (1: per tensor): the scales, then the
// values.
void EncodeInt8(const TensorJob& job, int64_t slices, bool stochastic,
                uint64_t seed) {
  DeterministicRng rng(seed);
  const int64_t slice_n = job.n / slices;
  int8_t* q = reinterpret_cast<int8_t*>(job.data + 4 * slices);
  for (int64_t s = 0; s < slices; ++s) {
    const float* x = job.x + s * slice_n;
    const float scale = Int8Scale(
        BitsFloat(slices == 1 ? job.max_abs_bits : MaxAbsBits(x, slice_n)));
    PutFloat(job.data + 4 * s, scale);
    if (scale > 0.0f) {
      QuantizeInt8(x, slice_n, scale, stochastic, rng, q + s * slice_n);
    } else {
      std::fill_n(q + s * slice_n, slice_n, int8_t{0});
    }
    if (job.residual == nullptr) continue;
    float* r = job.residual + s * slice_n;
    for (int64_t i = 0; i < slice_n; ++i) {
      const float decoded = static_cast<float>(q[s * slice_n + i]) * scale;
      r[i] = x[i] - decoded;
    }
  }
}

// Bytes of top-k data for k of n elements, as pairs or with a mask.
uint64_t EncodedTopKBytes(int64_t n, int64_t k, bool mask) {
  const uint64_t un = static_cast<uint64_t>(n), uk = static_cast<uint64_t>(k);
  return mask ? 4 + (un + 7) / 8 + 4 * uk : 4 + 8 * uk;
}

// The k entries of largest magnitude, ties to the lower index, in index
// order: the k-th largest magnitude is found by nth_element on a copy of
// the magnitudes, then one pass takes everything above it and the first
// ties.
void EncodeTopK(const TensorJob& job, int64_t k, bool mask) {
  std::vector<int32_t> magnitudes(job.n);
  for (int64_t i = 0; i < job.n; ++i) {
    magnitudes[i] = FloatBits(job.x[i]) & kFloatAbsMask;
  }
  std::nth_element(magnitudes.begin(), magnitudes.begin() + (k - 1),
                   magnitudes.end(), std::greater<int32_t>());
  const int32_t threshold = magnitudes[k - 1];
  int64_t ties =
      k - std::count_if(magnitudes.begin(), magnitudes.begin() + (k - 1),
                        [&](int32_t m) { return m > threshold; });
  magnitudes = {};
  PutUint32(job.data, static_cast<uint32_t>(k));
  uint8_t* const bits = job.data + 4;  // The mask, when `mask`.
  if (mask) std::fill_n(bits, (job.n + 7) / 8, uint8_t{0});
  uint8_t* out = mask ? bits + (job.n + 7) / 8 : job.data + 4;
  for (int64_t i = 0; i < job.n; ++i) {
    const int32_t m = FloatBits(job.x[i]) & kFloatAbsMask;
    const bool take = m > threshold || (m == threshold && ties > 0);
    if (job.residual != nullptr) job.residual[i] = take ? 0.0f : job.x[i];
    if (!take) continue;
    ties -= m == threshold ? 1 : 0;
    if (mask) {
      bits[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
    } else {
      PutUint32(out, static_cast<uint32_t>(i));
      out += 4;
    }
    PutFloat(out, job.x[i]);
    out += 4;
  }
  FEDGE_CHECK(out == job.data + EncodedTopKBytes(job.n, k, mask))
      << "top-k selected a wrong count";
}

// Encodes `t`; with `residual`, also makes its residual there.
absl::StatusOr<EncodedTensor> EncodeTensor(const TensorBuffer& t,
                                           const EncodingOptions& options,
                                           uint64_t seed,
                                           TensorBuffer* residual) {
  EncodedTensor out;
  out.spec = {t.name(), t.dtype(), t.shape()};
  out.encoding = ChooseEncoding(t, options);
  const int64_t k = out.encoding == TensorEncoding::kTopK
                        ? TopKCount(options.topk_fraction, t.num_elements())
                        : 0;
  // The mask costs n / 8 bytes, indices 4k: the smaller goes.
  if (k > 0 && EncodedTopKBytes(t.num_elements(), k, true) <
                   EncodedTopKBytes(t.num_elements(), k, false)) {
    out.encoding = TensorEncoding::kTopKMask;
  }
  ASSIGN_OR_RETURN(out.data_len,
                   EncodedDataLen(out.encoding, t.dtype(), t.shape(), k));
  if (out.data_len >= t.num_bytes()) {  // Lossy would not save anything.
    out.encoding = TensorEncoding::kRaw;
    out.data_len = t.num_bytes();
  }
  const bool raw = out.encoding == TensorEncoding::kRaw;
  const int32_t max_abs_bits =
      raw ? 0 : MaxAbsBits(t.floats().data(), t.num_elements());
  if (!raw) RETURN_IF_ERROR(CheckFiniteBits(t, max_abs_bits));
  if (residual != nullptr) {
    // Raw is exact: its residual is zero; lossy residuals are written whole.
    ASSIGN_OR_RETURN(
        *residual,
        raw ? TensorBuffer::Zeros(t.name(), t.dtype(), t.shape())
            : TensorBuffer::Uninitialized(t.name(), t.dtype(), t.shape()));
  }
  out.data.reset(new uint8_t[std::max<size_t>(1, out.data_len)]);
  if (raw) {
    if (t.num_bytes() > 0) std::memcpy(out.data.get(), t.data(), t.num_bytes());
    return out;
  }
  const TensorJob job = {
      t.floats().data(), t.num_elements(), out.data.get(),
      residual == nullptr ? nullptr : residual->mutable_floats().data(),
      max_abs_bits};
  switch (out.encoding) {
    case TensorEncoding::kFp16:
      EncodeFp16(job);
      break;
    case TensorEncoding::kInt8:
      EncodeInt8(job, 1, options.stochastic_rounding, seed);
      break;
    case TensorEncoding::kInt8PerChannel:
      EncodeInt8(job, t.shape()[0], options.stochastic_rounding, seed);
      break;
    case TensorEncoding::kTopK:
    case TensorEncoding::kTopKMask:
      EncodeTopK(job, k, out.encoding == TensorEncoding::kTopKMask);
      break;
    case TensorEncoding::kRaw:
      break;
  }
  return out;
}

}  // namespace

absl::StatusOr<EncodedModel> EncodeForWire(const ModelState& model,
                                           const EncodingOptions& options,
                                           ModelState* residual) {
  RETURN_IF_ERROR(ValidateEncodingOptions(options));
  EncodedModel out;
  out.tensors.reserve(model.size());
  std::vector<TensorBuffer> residuals(residual == nullptr ? 0 : model.size());
  for (size_t i = 0; i < model.size(); ++i) {
    ASSIGN_OR_RETURN(
        EncodedTensor tensor,
        EncodeTensor(model.tensor(i), options, MixSeed({options.seed, i}),
                     residual == nullptr ? nullptr : &residuals[i]));
    out.tensors.push_back(std::move(tensor));
  }
  if (residual != nullptr) *residual = ModelState(std::move(residuals));
  return out;
}

absl::StatusOr<EncodedModel> EncodeWithErrorFeedback(
    const ModelState& delta, const EncodingOptions& options,
    ModelState* residual) {
  if (options.kind == UpdateEncoding::kFp32) return EncodedModel();
  if (options.kind != UpdateEncoding::kTopK || residual == nullptr) {
    if (residual != nullptr) *residual = ModelState();
    return EncodeForWire(delta, options, nullptr);
  }
  const ModelState* to_send = &delta;
  ModelState corrected;
  if (residual->size() > 0 && CheckSameSchema(delta, *residual).ok()) {
    corrected = delta.Clone();
    RETURN_IF_ERROR(AddScaledInPlace(corrected, *residual, 1.0f));
    // Counters (int64) are the delta's, not sums.
    for (size_t i = 0; i < corrected.size(); ++i) {
      if (corrected.tensor(i).dtype() != DType::kInt64) continue;
      std::copy(delta.tensor(i).int64s().begin(),
                delta.tensor(i).int64s().end(),
                corrected.mutable_tensor(i).mutable_int64s().begin());
    }
    to_send = &corrected;
  }
  ModelState left;
  ASSIGN_OR_RETURN(EncodedModel encoded,
                   EncodeForWire(*to_send, options, &left));
  *residual = std::move(left);
  return encoded;
}

}  // namespace fedge
