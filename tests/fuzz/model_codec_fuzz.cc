// libFuzzer entry point for the model codec, in two parts run on every
// input. A crash, a sanitizer report, a large allocation or a broken
// property (std::abort) is a bug.
//
// 1. Decoding arbitrary bytes: the input is fed in two parts split at
//    data[0], so that chunk boundaries are fuzzed too, and also whole. Both
//    must agree; a model that decodes is canonical when all its tensors are
//    raw (it re-encodes to the same bytes).
// 2. Round trip through the lossy encodings, which random bytes seldom
//    reach with a valid structure: the input is read as EncodingOptions and
//    float values, encoded with EncodeForWire, decoded (in chunks), and
//    checked against each encoding's error bound and the residual; then
//    one byte of the encoding, chosen by the input, is changed and the
//    result must decode or fail cleanly, like any input.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/model_codec.h"
#include "common/update_codec.h"
#include "tests/fuzz/fuzz_util.h"

namespace fedge {
namespace {

DecodeLimits FuzzLimits() {
  DecodeLimits limits;
  limits.max_total_bytes = 1 << 20;  // Keeps every allocation small.
  limits.max_decoded_bytes = 1 << 22;
  return limits;
}

void Check(bool condition) {
  if (!condition) std::abort();
}

// Reads the little-endian value of `bytes` bytes at `*at`, advancing it.
uint64_t Take(absl::string_view in, size_t* at, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) {
    value |= uint64_t{static_cast<uint8_t>(in[*at + i])} << (8 * i);
  }
  *at += bytes;
  return value;
}

// True when every tensor of a valid encoding is raw (encoding byte 0).
bool AllRaw(absl::string_view in) {
  size_t at = 8;
  const uint64_t count = Take(in, &at, 4);
  for (uint64_t t = 0; t < count; ++t) {
    const uint64_t name_len = Take(in, &at, 2);
    at += name_len + 1;  // Name, dtype.
    if (Take(in, &at, 1) != 0) return false;
    const uint64_t rank = Take(in, &at, 1);
    at += 8 * rank;
    const uint64_t data_len = Take(in, &at, 8);
    at += data_len;
  }
  return true;
}

absl::StatusOr<ModelState> DecodeInTwo(absl::string_view input, size_t split) {
  ModelDecoder decoder(FuzzLimits());
  absl::Status fed = decoder.Feed(input.substr(0, split));
  if (fed.ok()) fed = decoder.Feed(input.substr(split));
  absl::StatusOr<ModelState> model = decoder.Finish();
  Check(fed.ok() || model.status() == fed);
  return model;
}

void FuzzDecode(absl::string_view input) {
  const size_t split = input.empty() ? 0 : input[0] % (input.size() + 1);
  absl::StatusOr<ModelState> streamed = DecodeInTwo(input, split);
  absl::StatusOr<ModelState> whole = DecodeModel(input, FuzzLimits());
  Check(streamed.ok() == whole.ok());
  if (!streamed.ok()) return;
  const std::string reencoded = EncodeModel(*streamed);
  Check(reencoded == EncodeModel(*whole));
  if (AllRaw(input)) Check(reencoded == input);
}

// The most |decoded - x| may be for x in a tensor with largest magnitude
// `max_abs`.
double ErrorBound(const EncodingOptions& options, float x, float max_abs) {
  switch (options.kind) {
    case UpdateEncoding::kFp32:
      return 0;
    case UpdateEncoding::kFp16:
      if (std::fabs(x) > 65504) return std::fabs(double{x}) - 65504;
      return std::max(std::fabs(double{x}) * 0x1p-11, 0x1p-25);
    case UpdateEncoding::kInt8: {
      // A slice's scale is at most the tensor's; a slice whose scale would
      // be subnormal (max|x| < 127 * 2^-126) is sent as zeros; a capped
      // scale (FLT_MAX / 128) may leave an error of one scale.
      const double scale = double{max_abs} / 127;
      const bool capped = scale > std::numeric_limits<float>::max() / 128.0;
      const double factor =
          options.stochastic_rounding || capped ? 1 + 1e-4 : 0.5 + 1e-4;
      return std::max(scale * factor, 127 * 0x1p-126);
    }
    case UpdateEncoding::kTopK:
      return std::fabs(x);  // Sent exactly or not at all.
  }
  return 0;
}

void FuzzRoundTrip(absl::string_view input) {
  if (input.size() < 4) return;
  EncodingOptions options;
  options.kind = static_cast<UpdateEncoding>(input[0] & 3);
  options.per_channel = (input[0] & 4) != 0;
  options.stochastic_rounding = (input[0] & 8) == 0;
  options.topk_fraction = (static_cast<uint8_t>(input[1]) + 1) / 256.0;
  options.seed = static_cast<uint8_t>(input[2]);
  const int rows = 1 + static_cast<uint8_t>(input[3]) % 8;
  std::vector<float> values((input.size() - 4) / 4);
  if (!values.empty()) {
    std::memcpy(values.data(), input.data() + 4, 4 * values.size());
  }
  bool finite = true;
  for (float v : values) finite &= std::isfinite(v);
  const int64_t n = static_cast<int64_t>(values.size());
  ModelState model;
  if (n % rows == 0) {
    model.Add(*TensorBuffer::FromFloats("w", {rows, n / rows}, values));
  } else {
    model.Add(*TensorBuffer::FromFloats("w", {n}, values));
  }
  model.Add(*TensorBuffer::Zeros("steps", DType::kInt64, {2}));

  ModelState residual;
  absl::StatusOr<EncodedModel> encoded =
      EncodeForWire(model, options, &residual);
  if (!encoded.ok()) {  // Only for non-finite values under a lossy kind.
    Check(!finite && options.kind != UpdateEncoding::kFp32);
    return;
  }
  // Unless the tensor was too small to gain from a lossy encoding.
  if (!finite) Check(encoded->tensors[0].encoding == TensorEncoding::kRaw);
  const std::string wire = EncodeModel(*encoded);
  Check(static_cast<int64_t>(wire.size()) == EncodedSize(*encoded));
  absl::StatusOr<ModelState> decoded =
      DecodeInTwo(wire, static_cast<uint8_t>(input[1]) % (wire.size() + 1));
  Check(decoded.ok());
  Check(CheckSchema(SchemaOf(model), *decoded).ok());

  const absl::Span<const float> x = model.tensor(0).floats();
  const absl::Span<const float> out = decoded->tensor(0).floats();
  const absl::Span<const float> r = residual.tensor(0).floats();
  float max_abs = 0;
  for (float v : x) max_abs = std::max(max_abs, std::fabs(v));
  for (int64_t i = 0; i < n && finite; ++i) {
    Check(std::fabs(double{out[i]} - x[i]) <=
          ErrorBound(options, x[i], max_abs));
    const float want = x[i] - out[i];
    Check(std::memcmp(&r[i], &want, 4) == 0);
  }

  // One changed byte, at a position and to a value the input chooses.
  size_t at = 0;
  std::string mutated = wire;
  mutated[Take(input, &at, 2) % mutated.size()] ^=
      static_cast<char>(input[3] | 1);
  FuzzDecode(mutated);
}

// A model of a float32 matrix (64 values, enough for the lossy encodings
// to pay off), a float32 vector and an int64 counter.
ModelState SeedModel() {
  std::vector<float> w(64);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.25f * i - 3;
  ModelState model;
  model.Add(*TensorBuffer::FromFloats("w", {8, 8}, w));
  model.Add(*TensorBuffer::FromFloats("b", {3}, {1.5f, -2, 0}));
  model.Add(*TensorBuffer::Zeros("steps", DType::kInt64, {1}));
  return model;
}

// Canonical encodings in every wire encoding (for FuzzDecode), and option
// bytes followed by floats (for FuzzRoundTrip).
std::vector<std::string> Seeds() {
  const ModelState model = SeedModel();
  std::vector<std::string> seeds = {EncodeModel(model)};
  for (UpdateEncoding kind :
       {UpdateEncoding::kFp16, UpdateEncoding::kInt8, UpdateEncoding::kTopK}) {
    EncodingOptions options;
    options.kind = kind;
    options.per_channel = true;
    options.topk_fraction = 0.25;
    absl::StatusOr<EncodedModel> encoded = EncodeForWire(model, options);
    Check(encoded.ok());
    seeds.push_back(EncodeModel(*encoded));
  }
  for (uint8_t kind = 0; kind < 4; ++kind) {
    std::string seed = {static_cast<char>(kind | 4), 63, 7, 4};
    const absl::Span<const float> w = model.tensor(0).floats();
    seed.append(reinterpret_cast<const char*>(w.data()), 4 * w.size());
    seeds.push_back(seed);
  }
  return seeds;
}

}  // namespace
}  // namespace fedge

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fedge::fuzz::QuietLogs();
  fedge::fuzz::MaybeWriteSeeds(fedge::Seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  fedge::FuzzDecode(input);
  fedge::FuzzRoundTrip(input);
  return 0;
}
