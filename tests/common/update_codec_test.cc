#include "common/update_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "common/model_codec.h"
#include "common/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TensorBuffer FloatTensor(const std::string& name, std::vector<int64_t> shape,
                         const std::vector<float>& values) {
  return *TensorBuffer::FromFloats(name, std::move(shape), values);
}

// `n` values with a spread of magnitudes (normal, about -scale..scale).
std::vector<float> RandomValues(int64_t n, uint64_t seed, float scale = 1) {
  DeterministicRng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.Normal()) * scale;
  return v;
}

// A delta-like model: a conv weight, a matrix, a bias, an int64 counter and
// an empty tensor.
ModelState DeltaModel() {
  ModelState m;
  m.Add(FloatTensor("conv.weight", {8, 3, 3, 3}, RandomValues(216, 1, 0.1f)));
  std::vector<float> fc = RandomValues(40 * 30, 2, 0.01f);
  for (int64_t i = 0; i < 30; ++i) fc[5 * 30 + i] = 0;  // An all-zero row.
  m.Add(FloatTensor("fc.weight", {40, 30}, fc));
  m.Add(FloatTensor("fc.bias", {40}, RandomValues(40, 3, 0.02f)));
  TensorBuffer steps = *TensorBuffer::Zeros("bn.steps", DType::kInt64, {});
  steps.mutable_int64s()[0] = 12345;
  m.Add(std::move(steps));
  m.Add(*TensorBuffer::Zeros("empty", DType::kFloat32, {0, 4}));
  return m;
}

EncodingOptions Options(UpdateEncoding kind) {
  EncodingOptions options;
  options.kind = kind;
  options.seed = 7;
  return options;
}

std::vector<EncodingOptions> AllOptions() {
  std::vector<EncodingOptions> all;
  for (UpdateEncoding kind : {UpdateEncoding::kFp32, UpdateEncoding::kFp16,
                              UpdateEncoding::kInt8, UpdateEncoding::kTopK}) {
    all.push_back(Options(kind));
  }
  all.push_back(Options(UpdateEncoding::kInt8));
  all.back().per_channel = true;
  all.push_back(Options(UpdateEncoding::kInt8));
  all.back().stochastic_rounding = false;
  return all;
}

std::string Describe(const EncodingOptions& o) {
  return std::string(UpdateEncodingName(o.kind)) +
         (o.per_channel ? " per_channel" : "") +
         (o.stochastic_rounding ? "" : " nearest");
}

// Encodes and decodes through the wire bytes (against the model's schema).
ModelState RoundTrip(const ModelState& model, const EncodingOptions& options,
                     ModelState* residual = nullptr) {
  absl::StatusOr<EncodedModel> encoded =
      EncodeForWire(model, options, residual);
  EXPECT_TRUE(encoded.ok()) << encoded.status();
  absl::StatusOr<ModelState> decoded =
      DecodeModel(EncodeModel(*encoded), {}, SchemaOf(model));
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  return *std::move(decoded);
}

TensorEncoding EncodingOf(const EncodedModel& model, size_t i) {
  return model.tensors[i].encoding;
}

// The int8 scale(s) as sent: the first float(s) of the tensor's data.
float ScaleOf(const EncodedTensor& t, int64_t slice = 0) {
  float scale;
  std::memcpy(&scale, t.data.get() + 4 * slice, 4);
  return scale;
}

bool SameBits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

TEST(UpdateEncodingTest, NamesRoundTrip) {
  for (UpdateEncoding kind : {UpdateEncoding::kFp32, UpdateEncoding::kFp16,
                              UpdateEncoding::kInt8, UpdateEncoding::kTopK}) {
    absl::StatusOr<UpdateEncoding> parsed =
        ParseUpdateEncoding(UpdateEncodingName(kind));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, kind);
  }
  EXPECT_STREQ(UpdateEncodingName(UpdateEncoding::kTopK), "topk");
}

TEST(UpdateEncodingTest, UnknownName_ListsValidNames) {
  absl::StatusOr<UpdateEncoding> parsed = ParseUpdateEncoding("FP16");
  ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(parsed.status().message(), HasSubstr("'FP16'"));
  EXPECT_THAT(parsed.status().message(),
              HasSubstr("valid: fp32, fp16, int8, topk"));
  EXPECT_FALSE(ParseUpdateEncoding("").ok());
}

TEST(UpdateEncodingTest, BadTopKFraction_Rejected) {
  EncodingOptions options = Options(UpdateEncoding::kTopK);
  for (double bad : {0.0, -0.5, 1.5, std::nan("")}) {
    options.topk_fraction = bad;
    EXPECT_THAT(ValidateEncodingOptions(options).message(),
                HasSubstr("topk_fraction"));
    EXPECT_EQ(EncodeForWire(DeltaModel(), options).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  options.topk_fraction = 1.0;
  EXPECT_TRUE(ValidateEncodingOptions(options).ok());
}

// ---------------------------------------------------------------------------
// fp16 conversions.

// binary16 -> double from the definition.
double ReferenceHalf(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  if (exponent == 31) return mantissa == 0 ? sign * HUGE_VAL : std::nan("");
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

// float -> binary16 from the definition: round to nearest even, clamped.
uint16_t ReferenceToHalf(float f) {
  if (std::isnan(f)) return 0x7e00;
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  if (a >= 65504.0) return sign | 0x7bff;
  int exponent = std::max(std::ilogb(a), -14);  // 2^e <= a, or subnormal.
  if (a == 0) exponent = -14;
  const double ulp = std::ldexp(1.0, exponent - 10);
  const double units = std::nearbyint(a / ulp);  // Exact quotient; RNE.
  const uint32_t bits =
      exponent == -14 && units < 1024
          ? static_cast<uint32_t>(units)
          : static_cast<uint32_t>(((exponent + 15) << 10) +
                                  static_cast<int>(units) - 1024);
  return sign | std::min<uint32_t>(bits, 0x7bff);
}

TEST(Fp16Test, HalfToFloat_ExactForEveryHalf) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    const double want = ReferenceHalf(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(f)) << h;
    } else {
      ASSERT_EQ(static_cast<double>(f), want) << h;
      ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << h;
    }
  }
}

TEST(Fp16Test, FloatToHalf_InvertsEveryFiniteHalf) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;  // Infinity, NaN.
    ASSERT_EQ(FloatToHalf(HalfToFloat(static_cast<uint16_t>(h))), h) << h;
  }
}

TEST(Fp16Test, FloatToHalf_MatchesReferenceOnSampledFloats) {
  // Every 4099th bit pattern: all exponents, many mantissas, both signs.
  for (uint64_t bits = 0; bits <= 0xffffffffu; bits += 4099) {
    const uint32_t b = static_cast<uint32_t>(bits);
    float f;
    std::memcpy(&f, &b, 4);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(f))));
      continue;
    }
    ASSERT_EQ(FloatToHalf(f), ReferenceToHalf(f)) << f << " bits " << b;
  }
}

TEST(Fp16Test, FloatToHalf_TiesToEven_SubnormalsAndClamping) {
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: to even (1).
  EXPECT_EQ(FloatToHalf(1.0f + 0x1p-11f), 0x3c00);
  // 1 + 3 * 2^-11 is halfway between odd 1 + 2^-10 and 1 + 2^-9: up.
  EXPECT_EQ(FloatToHalf(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(FloatToHalf(0x1p-24f), 0x0001);      // Smallest subnormal.
  EXPECT_EQ(FloatToHalf(0x1p-25f), 0x0000);      // Tie to even: zero.
  EXPECT_EQ(FloatToHalf(0x1.8p-25f), 0x0001);    // Above the tie: up.
  EXPECT_EQ(FloatToHalf(0x1.ff8p-15f), 0x03ff);  // Largest subnormal.
  EXPECT_EQ(FloatToHalf(0x1.ffcp-15f), 0x0400);  // Tie: up to even 2^-14.
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7bff);  // Would round to 65504 anyway.
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7bff);  // Would round to infinity.
  EXPECT_EQ(FloatToHalf(1e30f), 0x7bff);
  EXPECT_EQ(FloatToHalf(-1e30f), 0xfbff);
  EXPECT_EQ(FloatToHalf(kInf), 0x7bff);
  EXPECT_EQ(FloatToHalf(-kInf), 0xfbff);
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(kNaN))));
}

// ---------------------------------------------------------------------------
// Round trips.

TEST(EncodeForWireTest, Fp32_BytesIdenticalToTheRawEncoding) {
  const ModelState model = DeltaModel();
  ModelState residual;
  absl::StatusOr<EncodedModel> encoded =
      EncodeForWire(model, Options(UpdateEncoding::kFp32), &residual);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(EncodeModel(*encoded), EncodeModel(model));
  EXPECT_EQ(ModelDigest(*encoded), ModelDigest(model));
  EXPECT_EQ(EncodedSize(*encoded), EncodedSize(model));
  for (const TensorBuffer& t : residual.tensors()) {
    for (size_t b = 0; b < t.num_bytes(); ++b) ASSERT_EQ(t.data()[b], 0);
  }
}

TEST(EncodeForWireTest, Fp16_RelativeErrorWithinHalfUlp) {
  ModelState model;
  std::vector<float> v = RandomValues(5000, 11, 100.0f);
  v[0] = 1e-6f;  // Subnormal in fp16.
  v[1] = -3e-5f;
  model.Add(FloatTensor("w", {50, 100}, v));
  absl::StatusOr<EncodedModel> encoded =
      EncodeForWire(model, Options(UpdateEncoding::kFp16));
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(EncodingOf(*encoded, 0), TensorEncoding::kFp16);
  EXPECT_EQ(encoded->tensors[0].data_len, 10000u);
  const ModelState decoded = RoundTrip(model, Options(UpdateEncoding::kFp16));
  const absl::Span<const float> out = decoded.tensor(0).floats();
  for (size_t i = 0; i < v.size(); ++i) {
    const double error = std::fabs(double{out[i]} - v[i]);
    if (std::fabs(v[i]) >= 0x1p-14) {
      ASSERT_LE(error, std::fabs(v[i]) * 0x1p-11) << i;
    } else {
      ASSERT_LE(error, 0x1p-25) << i;
    }
  }
}

TEST(EncodeForWireTest, Fp16_OverflowClampsToLargestHalf) {
  ModelState model;
  model.Add(FloatTensor("w", {4}, {1e6f, -1e6f, 65519.0f, 70000.0f}));
  const ModelState decoded = RoundTrip(model, Options(UpdateEncoding::kFp16));
  EXPECT_THAT(decoded.tensor(0).floats(),
              ::testing::ElementsAre(65504.0f, -65504.0f, 65504.0f, 65504.0f));
}

TEST(EncodeForWireTest, Int8Nearest_ErrorAtMostHalfAScale) {
  ModelState model;
  model.Add(FloatTensor("w", {64, 50}, RandomValues(3200, 21, 0.5f)));
  EncodingOptions options = Options(UpdateEncoding::kInt8);
  options.stochastic_rounding = false;
  absl::StatusOr<EncodedModel> encoded = EncodeForWire(model, options);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  ASSERT_EQ(EncodingOf(*encoded, 0), TensorEncoding::kInt8);
  EXPECT_EQ(encoded->tensors[0].data_len, 4u + 3200u);
  const float scale = ScaleOf(encoded->tensors[0]);
  const absl::Span<const float> x = model.tensor(0).floats();
  float max_abs = 0;
  for (float value : x) max_abs = std::max(max_abs, std::fabs(value));
  EXPECT_EQ(scale, max_abs / 127.0f);
  const ModelState decoded = RoundTrip(model, options);
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_LE(std::fabs(decoded.tensor(0).floats()[i] - x[i]),
              scale / 2 * (1 + 1e-5))
        << i;
  }
}

TEST(EncodeForWireTest, Int8Stochastic_ErrorBelowOneScale) {
  ModelState model;
  model.Add(FloatTensor("w", {64, 50}, RandomValues(3200, 22, 0.5f)));
  const EncodingOptions options = Options(UpdateEncoding::kInt8);
  absl::StatusOr<EncodedModel> encoded = EncodeForWire(model, options);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  const float scale = ScaleOf(encoded->tensors[0]);
  const ModelState decoded = RoundTrip(model, options);
  const absl::Span<const float> x = model.tensor(0).floats();
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_LT(std::fabs(decoded.tensor(0).floats()[i] - x[i]), scale) << i;
  }
}

// Values all at 0.3 of a quantization step above a grid point: rounding to
// nearest is biased by -0.3 steps, stochastic rounding is not.
TEST(EncodeForWireTest, Int8Stochastic_IsUnbiased) {
  constexpr int64_t kCount = 1 << 20;
  constexpr float kScale = 1.0f / 127;
  std::vector<float> v(kCount);
  for (int64_t i = 0; i < kCount; ++i) {
    v[i] = ((i % 200) - 100 + 0.3f) * kScale;
  }
  v[0] = 1.0f;  // Pins the scale at 1/127.
  ModelState model;
  model.Add(FloatTensor("w", {kCount}, v));
  for (bool stochastic : {true, false}) {
    EncodingOptions options = Options(UpdateEncoding::kInt8);
    options.stochastic_rounding = stochastic;
    const ModelState decoded = RoundTrip(model, options);
    double sum = 0;
    for (int64_t i = 1; i < kCount; ++i) {
      sum += double{decoded.tensor(0).floats()[i]} - v[i];
    }
    const double mean = sum / (kCount - 1);
    // Each error is within a scale and has variance <= scale^2 / 4, so the
    // mean's standard deviation is <= scale / (2 sqrt(n)); allow 5 of them.
    const double tolerance = 5 * kScale / (2 * std::sqrt(double{kCount}));
    if (stochastic) {
      EXPECT_LE(std::fabs(mean), tolerance) << "mean error " << mean;
    } else {
      EXPECT_NEAR(mean, -0.3 * kScale, 1e-3 * kScale);
    }
  }
}

TEST(EncodeForWireTest, Int8Stochastic_SameSeedSameBytes) {
  const ModelState model = DeltaModel();
  EncodingOptions options = Options(UpdateEncoding::kInt8);
  const std::string a = EncodeModel(*EncodeForWire(model, options));
  EXPECT_EQ(EncodeModel(*EncodeForWire(model, options)), a);
  options.seed = 8;
  EXPECT_NE(EncodeModel(*EncodeForWire(model, options)), a);
}

TEST(EncodeForWireTest, Int8PerChannel_OneScalePerSlice) {
  // Rows of very different magnitudes: per-channel scales follow each row.
  std::vector<float> v(4 * 100);
  for (int row = 0; row < 4; ++row) {
    for (int i = 0; i < 100; ++i) {
      v[row * 100 + i] = (i - 50) * std::pow(10.0f, -row) / 50;
    }
  }
  for (float& x : absl::MakeSpan(v).subspan(200, 100)) x = 0;  // Row 2.
  ModelState model;
  model.Add(FloatTensor("w", {4, 10, 10}, v));
  EncodingOptions options = Options(UpdateEncoding::kInt8);
  options.per_channel = true;
  absl::StatusOr<EncodedModel> encoded = EncodeForWire(model, options);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  ASSERT_EQ(EncodingOf(*encoded, 0), TensorEncoding::kInt8PerChannel);
  EXPECT_EQ(encoded->tensors[0].data_len, 4u * 4 + 400);
  EXPECT_FLOAT_EQ(ScaleOf(encoded->tensors[0], 0), 1.0f / 127);
  EXPECT_FLOAT_EQ(ScaleOf(encoded->tensors[0], 1), 0.1f / 127);
  EXPECT_EQ(ScaleOf(encoded->tensors[0], 2), 0.0f);
  EXPECT_FLOAT_EQ(ScaleOf(encoded->tensors[0], 3), 0.001f / 127);
  const ModelState decoded = RoundTrip(model, options);
  for (int row = 0; row < 4; ++row) {
    const float scale = ScaleOf(encoded->tensors[0], row);
    for (int i = 0; i < 100; ++i) {
      const int at = row * 100 + i;
      ASSERT_LT(std::fabs(decoded.tensor(0).floats()[at] - v[at]),
                std::max(scale, 1e-30f))
          << at;
    }
  }
  for (int i = 200; i < 300; ++i) EXPECT_EQ(decoded.tensor(0).floats()[i], 0);
}

TEST(EncodeForWireTest, Int8_AllZeroTensorHasScaleZero) {
  ModelState model;
  model.Add(*TensorBuffer::Zeros("w", DType::kFloat32, {10, 10}));
  absl::StatusOr<EncodedModel> encoded =
      EncodeForWire(model, Options(UpdateEncoding::kInt8));
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(ScaleOf(encoded->tensors[0]), 0.0f);
  const ModelState decoded = RoundTrip(model, Options(UpdateEncoding::kInt8));
  for (float x : decoded.tensor(0).floats()) EXPECT_EQ(x, 0.0f);
}

TEST(EncodeForWireTest, Int8_ExtremeMagnitudesStayFinite) {
  constexpr float kMax = std::numeric_limits<float>::max();
  constexpr float kTiny = std::numeric_limits<float>::denorm_min();
  ModelState model;
  model.Add(FloatTensor("huge", {4}, {kMax, -kMax, 1e38f, 0}));
  model.Add(FloatTensor("tiny", {4}, {kTiny, -kTiny, 10 * kTiny, 0}));
  for (bool stochastic : {true, false}) {
    EncodingOptions options = Options(UpdateEncoding::kInt8);
    options.stochastic_rounding = stochastic;
    absl::StatusOr<EncodedModel> encoded = EncodeForWire(model, options);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    const float scale = ScaleOf(encoded->tensors[0]);
    EXPECT_EQ(scale, kMax / 128);  // Capped: 127 * (kMax / 127) is inf.
    EXPECT_EQ(ScaleOf(encoded->tensors[1]), 0.0f);  // Would be subnormal.
    ModelState residual;
    const ModelState decoded = RoundTrip(model, options, &residual);
    for (int i = 0; i < 4; ++i) {
      const float x = model.tensor(0).floats()[i];
      const float d = decoded.tensor(0).floats()[i];
      EXPECT_TRUE(std::isfinite(d)) << i;
      EXPECT_LE(std::fabs(double{d} - x), scale * (1 + 1e-6)) << i;
      EXPECT_EQ(decoded.tensor(1).floats()[i], 0.0f);
      EXPECT_EQ(residual.tensor(1).floats()[i], model.tensor(1).floats()[i]);
    }
  }
}

// Decoded int8 tensors are marked finite (CheckFinite skips them): every
// value is, even at the largest scale the decoder accepts and q = -128.
TEST(EncodeForWireTest, Int8Decoded_KnownFinite) {
  constexpr float kMax = std::numeric_limits<float>::max();
  ModelState model;
  model.Add(FloatTensor("huge", {4}, {kMax, -kMax, 1, 0}));
  absl::StatusOr<EncodedModel> encoded =
      EncodeForWire(model, Options(UpdateEncoding::kInt8));
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  ASSERT_EQ(ScaleOf(encoded->tensors[0]), kMax / 128);
  encoded->tensors[0].data[4] = 0x80;  // q = -128 (the encoder sends +-127).
  absl::StatusOr<ModelState> decoded =
      DecodeModel(EncodeModel(*encoded), {}, SchemaOf(model));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(decoded->tensor(0).known_finite());
  EXPECT_EQ(decoded->tensor(0).floats()[0], -kMax);
  // fp16 has infinities: its tensors are checked.
  const ModelState fp16 = RoundTrip(model, Options(UpdateEncoding::kFp16));
  EXPECT_FALSE(fp16.tensor(0).known_finite());
}

TEST(EncodeForWireTest, TopK_KeepsExactlyTheKLargest) {
  constexpr int64_t kCount = 10000;
  const std::vector<float> v = RandomValues(kCount, 31);
  ModelState model;
  model.Add(FloatTensor("w", {100, 100}, v));
  EncodingOptions options = Options(UpdateEncoding::kTopK);
  options.topk_fraction = 0.05;
  absl::StatusOr<EncodedModel> encoded = EncodeForWire(model, options);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  // 500 of 10000: a mask (1250 bytes) is smaller than 500 indices.
  ASSERT_EQ(EncodingOf(*encoded, 0), TensorEncoding::kTopKMask);
  EXPECT_EQ(encoded->tensors[0].data_len, 4u + 1250 + 4 * 500);
  std::vector<int64_t> order(kCount);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return std::fabs(v[a]) > std::fabs(v[b]);
  });
  const ModelState decoded = RoundTrip(model, options);
  const absl::Span<const float> out = decoded.tensor(0).floats();
  for (int64_t rank = 0; rank < kCount; ++rank) {
    const int64_t i = order[rank];
    ASSERT_EQ(out[i], rank < 500 ? v[i] : 0.0f) << "rank " << rank;
  }
}

// Pairs while k <= n / 32, a mask above: whichever is smaller; both decode
// to exactly the k largest entries.
TEST(EncodeForWireTest, TopK_PairsWhenSparseMaskWhenDense) {
  const std::vector<float> v = RandomValues(3200, 37);
  ModelState model;
  model.Add(FloatTensor("w", {3200}, v));
  for (const auto& [fraction, want] :
       std::vector<std::pair<double, TensorEncoding>>{
           {0.01, TensorEncoding::kTopK},          // k 32: 260 vs 532.
           {100.0 / 3200, TensorEncoding::kTopK},  // k 100: 804 both.
           {0.05, TensorEncoding::kTopKMask},      // k 160: 1284 vs 1044.
           {0.5, TensorEncoding::kTopKMask}}) {
    EncodingOptions options = Options(UpdateEncoding::kTopK);
    options.topk_fraction = fraction;
    absl::StatusOr<EncodedModel> encoded = EncodeForWire(model, options);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    const int64_t k = static_cast<int64_t>(std::ceil(fraction * 3200 - 1e-9));
    const uint64_t pairs = 4 + 8 * k, mask = 4 + 400 + 4 * k;
    EXPECT_EQ(EncodingOf(*encoded, 0), want) << fraction;
    EXPECT_EQ(encoded->tensors[0].data_len, std::min(pairs, mask)) << fraction;
    const ModelState decoded = RoundTrip(model, options);
    std::vector<float> sorted(v.size());
    for (size_t i = 0; i < v.size(); ++i) sorted[i] = std::fabs(v[i]);
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    int64_t sent = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      const float d = decoded.tensor(0).floats()[i];
      ASSERT_TRUE(d == 0 || d == v[i]) << i;
      if (d != 0) {
        ++sent;
        EXPECT_GE(std::fabs(v[i]), sorted[k - 1]) << i;
      }
    }
    EXPECT_EQ(sent, k) << fraction;
  }
}

TEST(EncodeForWireTest, TopK_TiesGoToLowerIndices) {
  std::vector<float> v(100, 1.0f);
  for (int i = 0; i < 100; i += 2) v[i] = -1.0f;
  v[70] = 2.0f;
  ModelState model;
  model.Add(FloatTensor("w", {100}, v));
  EncodingOptions options = Options(UpdateEncoding::kTopK);
  options.topk_fraction = 0.04;
  const ModelState decoded = RoundTrip(model, options);
  std::vector<float> want(100, 0.0f);
  want[0] = -1.0f, want[1] = 1.0f, want[2] = -1.0f, want[70] = 2.0f;
  EXPECT_THAT(decoded.tensor(0).floats(), ::testing::ElementsAreArray(want));
}

TEST(EncodeForWireTest, TopK_CountIsCeilOfFractionAtLeastOne) {
  ModelState model;
  model.Add(FloatTensor("ten", {10}, RandomValues(10, 41)));
  model.Add(FloatTensor("many", {1000}, RandomValues(1000, 42)));
  EncodingOptions options = Options(UpdateEncoding::kTopK);
  options.topk_fraction = 0.3;  // 3 of 10 exactly, though 0.3 * 10 > 3.
  absl::StatusOr<EncodedModel> encoded = EncodeForWire(model, options);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  // Dense: a mask and the values.
  EXPECT_EQ(encoded->tensors[0].data_len, 4u + 2 + 4 * 3);
  EXPECT_EQ(encoded->tensors[1].data_len, 4u + 125 + 4 * 300);
  options.topk_fraction = 1e-9;  // Rounds up to one entry.
  encoded = EncodeForWire(model, options);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(encoded->tensors[0].data_len, 4u + 2 + 4);
  EXPECT_EQ(EncodingOf(*encoded, 1), TensorEncoding::kTopK);  // 1 of 1000.
  EXPECT_EQ(encoded->tensors[1].data_len, 4u + 8);
  options.topk_fraction = 0.0011;  // 1.1 of 1000: 2.
  encoded = EncodeForWire(model, options);
  EXPECT_EQ(encoded->tensors[1].data_len, 4u + 8 * 2);
}

TEST(EncodeForWireTest, Int64EmptyAndTinyTensors_StayRaw) {
  const ModelState model = DeltaModel();
  for (const EncodingOptions& options : AllOptions()) {
    absl::StatusOr<EncodedModel> encoded = EncodeForWire(model, options);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    EXPECT_EQ(EncodingOf(*encoded, 3), TensorEncoding::kRaw);  // int64
    EXPECT_EQ(EncodingOf(*encoded, 4), TensorEncoding::kRaw);  // empty
  }
  ModelState tiny;
  tiny.Add(FloatTensor("scalar", {}, {0.5f}));
  tiny.Add(FloatTensor("pair", {2}, {0.5f, -1.0f}));
  // int8 of one element (5 bytes) and top-k of 1 of 2 (12 bytes) are no
  // smaller than raw.
  EncodingOptions topk = Options(UpdateEncoding::kTopK);
  topk.topk_fraction = 0.5;
  for (const EncodingOptions& options :
       {Options(UpdateEncoding::kInt8), topk}) {
    absl::StatusOr<EncodedModel> encoded = EncodeForWire(tiny, options);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    EXPECT_EQ(EncodingOf(*encoded, 0), TensorEncoding::kRaw);
    EXPECT_LE(EncodedSize(*encoded), EncodedSize(tiny));
  }
}

TEST(EncodeForWireTest, Int8PerChannel_RankOneUsesOneScale) {
  ModelState model;
  model.Add(FloatTensor("bias", {64}, RandomValues(64, 51)));
  EncodingOptions options = Options(UpdateEncoding::kInt8);
  options.per_channel = true;
  absl::StatusOr<EncodedModel> encoded = EncodeForWire(model, options);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(EncodingOf(*encoded, 0), TensorEncoding::kInt8);
}

TEST(EncodeForWireTest, Residual_EqualsDeltaMinusDecoded) {
  const ModelState model = DeltaModel();
  for (const EncodingOptions& options : AllOptions()) {
    SCOPED_TRACE(Describe(options));
    ModelState residual;
    const ModelState decoded = RoundTrip(model, options, &residual);
    ASSERT_TRUE(CheckSameSchema(model, residual).ok());
    for (size_t t = 0; t < model.size(); ++t) {
      if (model.tensor(t).dtype() == DType::kInt64) {
        EXPECT_EQ(residual.tensor(t).int64s()[0], 0);
        EXPECT_EQ(decoded.tensor(t).int64s()[0], 12345);
        continue;
      }
      const absl::Span<const float> x = model.tensor(t).floats();
      for (size_t i = 0; i < x.size(); ++i) {
        const float want = x[i] - decoded.tensor(t).floats()[i];
        ASSERT_TRUE(SameBits(residual.tensor(t).floats()[i], want))
            << model.tensor(t).name() << "[" << i << "]";
      }
    }
  }
}

TEST(EncodeForWireTest, TopKResidual_IsTheUnsentEntries) {
  ModelState model;
  model.Add(FloatTensor("w", {1000}, RandomValues(1000, 61)));
  ModelState residual;
  const ModelState decoded =
      RoundTrip(model, Options(UpdateEncoding::kTopK), &residual);
  int sent = 0;
  for (int i = 0; i < 1000; ++i) {
    const float x = model.tensor(0).floats()[i];
    const float d = decoded.tensor(0).floats()[i];
    const float r = residual.tensor(0).floats()[i];
    EXPECT_TRUE((d == x && r == 0) || (d == 0 && r == x)) << i;
    sent += d != 0;
  }
  EXPECT_EQ(sent, 100);
}

// Error feedback: over rounds, what was sent plus what is still held back
// is exactly what was to be sent (nothing lost, nothing sent twice).
TEST(EncodeWithErrorFeedbackTest, TopK_SentPlusResidualIsTheSumOfDeltas) {
  EncodingOptions options = Options(UpdateEncoding::kTopK);
  options.topk_fraction = 0.05;
  ModelState residual;
  std::vector<double> total(1000, 0), sent(1000, 0);
  for (int round = 0; round < 6; ++round) {
    ModelState delta;
    delta.Add(FloatTensor("w", {1000}, RandomValues(1000, 100 + round)));
    for (int i = 0; i < 1000; ++i) total[i] += delta.tensor(0).floats()[i];
    absl::StatusOr<EncodedModel> encoded =
        EncodeWithErrorFeedback(delta, options, &residual);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    absl::StatusOr<ModelState> decoded =
        DecodeModel(EncodeModel(*encoded), {}, SchemaOf(delta));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    int nonzero = 0;
    for (int i = 0; i < 1000; ++i) {
      sent[i] += decoded->tensor(0).floats()[i];
      nonzero += decoded->tensor(0).floats()[i] != 0;
    }
    EXPECT_EQ(nonzero, 50);
    ASSERT_EQ(residual.size(), 1u);
    for (int i = 0; i < 1000; ++i) {
      ASSERT_NEAR(sent[i] + residual.tensor(0).floats()[i], total[i], 1e-4)
          << "round " << round << " entry " << i;
    }
  }
}

TEST(EncodeWithErrorFeedbackTest, TopK_ResidualOfAnotherSchemaIsDropped) {
  ModelState residual;
  residual.Add(FloatTensor("other", {3}, {1, 2, 3}));
  ModelState delta;
  delta.Add(FloatTensor("w", {100}, RandomValues(100, 5)));
  absl::StatusOr<EncodedModel> encoded =
      EncodeWithErrorFeedback(delta, Options(UpdateEncoding::kTopK), &residual);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  ASSERT_TRUE(CheckSameSchema(delta, residual).ok());
}

TEST(EncodeWithErrorFeedbackTest, OtherEncodings_ClearTheResidual) {
  for (UpdateEncoding kind : {UpdateEncoding::kFp16, UpdateEncoding::kInt8}) {
    ModelState residual;
    residual.Add(FloatTensor("w", {4}, {1, 2, 3, 4}));
    absl::StatusOr<EncodedModel> encoded =
        EncodeWithErrorFeedback(DeltaModel(), Options(kind), &residual);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    EXPECT_EQ(residual.size(), 0u) << UpdateEncodingName(kind);
    EXPECT_EQ(encoded->tensors.size(), DeltaModel().size());
  }
}

TEST(EncodeForWireTest, NonFiniteValues_RejectedByLossyKinds) {
  std::vector<float> v(100, 0.5f);
  v[37] = kNaN;
  ModelState model = DeltaModel();
  model.Add(FloatTensor("bad", {10, 10}, v));
  for (const EncodingOptions& options : AllOptions()) {
    ModelState residual;
    absl::StatusOr<EncodedModel> encoded =
        EncodeForWire(model, options, &residual);
    if (options.kind == UpdateEncoding::kFp32) {
      EXPECT_TRUE(encoded.ok());
      continue;
    }
    ASSERT_EQ(encoded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(encoded.status().message(),
                HasSubstr("tensor 'bad': element 37 is nan"));
    EXPECT_EQ(residual.size(), 0u);  // Untouched.
  }
  model.mutable_tensors().back().mutable_floats()[37] = -kInf;
  EXPECT_THAT(
      EncodeForWire(model, Options(UpdateEncoding::kFp16)).status().message(),
      HasSubstr("element 37 is -inf"));
}

TEST(EncodeForWireTest, FullModelDownload_Fp16HalvesTheBytes) {
  ModelState model;
  model.Add(FloatTensor("fc1.weight", {256, 128}, RandomValues(32768, 71)));
  model.Add(FloatTensor("fc1.bias", {256}, RandomValues(256, 72)));
  absl::StatusOr<EncodedModel> encoded =
      EncodeForWire(model, Options(UpdateEncoding::kFp16));
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(EncodedSize(*encoded), 12 + (2 + 10 + 3 + 16 + 8) + 2 * 32768 +
                                       (2 + 8 + 3 + 8 + 8) + 2 * 256);
  EXPECT_LT(EncodedSize(*encoded), EncodedSize(model) / 2 + 100);
}

TEST(DownloadEncodingTest, OnlyFp32AndFp16) {
  EXPECT_EQ(*ParseDownloadEncoding("fp32"), UpdateEncoding::kFp32);
  EXPECT_EQ(*ParseDownloadEncoding("fp16"), UpdateEncoding::kFp16);
  for (const char* name : {"int8", "topk", "FP16", ""}) {
    absl::Status s = ParseDownloadEncoding(name).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(s.message(), HasSubstr("valid: fp32, fp16")) << name;
  }
}

TEST(DownloadEncodingTest, AsDownloaded_IsWhatAnAgentDecodes) {
  const ModelState model = DeltaModel();
  int64_t bytes = 0;
  absl::StatusOr<ModelState> fp16 =
      AsDownloaded(model, UpdateEncoding::kFp16, &bytes);
  ASSERT_TRUE(fp16.ok()) << fp16.status();
  const EncodedModel wire =
      *EncodeForWire(model, Options(UpdateEncoding::kFp16));
  EXPECT_EQ(bytes, EncodedSize(wire));
  EXPECT_EQ(ModelDigest(*fp16),
            ModelDigest(RoundTrip(model, Options(UpdateEncoding::kFp16))));
  // Downloaded again as fp16, the rounded model gives the same bytes: the
  // hash an agent caches it under is the one the coordinator announced.
  EXPECT_EQ(ModelDigest(*EncodeForWire(*fp16, Options(UpdateEncoding::kFp16))),
            ModelDigest(wire));

  absl::StatusOr<ModelState> fp32 =
      AsDownloaded(model, UpdateEncoding::kFp32, &bytes);
  ASSERT_TRUE(fp32.ok()) << fp32.status();
  EXPECT_EQ(ModelDigest(*fp32), ModelDigest(model));
  EXPECT_EQ(bytes, EncodedSize(model));
  EXPECT_EQ(AsDownloaded(model, UpdateEncoding::kInt8).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// Streaming of encoded models.

TEST(EncodedModelTest, EncoderChunksSizeAndDigest_AreThoseOfTheWireBytes) {
  const ModelState model = DeltaModel();
  for (const EncodingOptions& options : AllOptions()) {
    SCOPED_TRACE(Describe(options));
    const EncodedModel encoded = *EncodeForWire(model, options);
    const std::string whole = EncodeModel(encoded);
    EXPECT_EQ(EncodedSize(encoded), static_cast<int64_t>(whole.size()));
    EXPECT_EQ(ModelDigest(encoded), Sha256Of(whole));
    EXPECT_EQ(ModelChecksum(encoded), Xxh3_128Of(whole));
    for (size_t chunk : {1, 7, 64, 100000}) {
      ModelEncoder encoder(encoded, chunk);
      std::string joined, piece;
      while (encoder.Next(&piece)) joined += piece;
      EXPECT_EQ(joined, whole) << chunk;
    }
    ModelEncoder encoder(encoded, 13);
    encoder.Seek(static_cast<int64_t>(whole.size() / 3));
    std::string rest, piece;
    while (encoder.Next(&piece)) rest += piece;
    EXPECT_EQ(rest, whole.substr(whole.size() / 3));
  }
}

TEST(EncodedModelTest, StreamingDecode_EveryChunkSizeGivesTheSameModel) {
  const ModelState model = DeltaModel();
  for (const EncodingOptions& options : AllOptions()) {
    SCOPED_TRACE(Describe(options));
    const std::string bytes = EncodeModel(*EncodeForWire(model, options));
    const absl::StatusOr<ModelState> whole = DecodeModel(bytes);
    ASSERT_TRUE(whole.ok()) << whole.status();
    const std::string want = EncodeModel(*whole);
    for (size_t chunk = 1; chunk <= 17; ++chunk) {
      ModelDecoder decoder(DecodeLimits{}, SchemaOf(model));
      for (size_t at = 0; at < bytes.size(); at += chunk) {
        ASSERT_TRUE(
            decoder.Feed(absl::string_view(bytes).substr(at, chunk)).ok())
            << chunk;
      }
      absl::StatusOr<ModelState> decoded = decoder.Finish();
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      EXPECT_EQ(EncodeModel(*decoded), want) << "chunk " << chunk;
    }
  }
}

}  // namespace
}  // namespace fedge
