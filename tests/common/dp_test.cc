#include "common/dp.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/random.h"
#include "common/tensor_buffer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/test_tensors.h"

namespace fedge {
namespace {

using testing::Floats;
using testing::Int64s;

using ::testing::HasSubstr;

TensorBuffer Zeros(const std::string& name, int64_t n) {
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::Zeros(name, DType::kFloat32, {n});
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(t).value();
}

// A state with float tensors "w" = {3, 4}, "b" = {12} (norm 13) and an int64
// counter.
ModelState ThreeFourTwelve() {
  ModelState s;
  s.Add(Floats("w", {3.0f, 4.0f}));
  s.Add(Int64s("count", {7}));
  s.Add(Floats("b", {12.0f}));
  return s;
}

// A random update with `n` elements of scale `scale` over two tensors.
ModelState RandomUpdate(uint64_t seed, int64_t n, double scale) {
  DeterministicRng rng(seed);
  ModelState s;
  s.Add(Zeros("a", n / 3));
  s.Add(Zeros("b", n - n / 3));
  for (TensorBuffer& t : s.mutable_tensors()) {
    for (float& v : t.mutable_floats()) {
      v = static_cast<float>(scale * rng.Normal());
    }
  }
  return s;
}

// All float32 elements of `s`, in order.
std::vector<double> Elements(const ModelState& s) {
  std::vector<double> out;
  for (const TensorBuffer& t : s.tensors()) {
    if (t.dtype() != DType::kFloat32) continue;
    for (float v : t.floats()) out.push_back(v);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Options and calibration.

TEST(DpFedAvgOptionsTest, DefaultsAreValid) {
  EXPECT_TRUE(DpFedAvgOptions{}.Validate().ok());
}

TEST(DpFedAvgOptionsTest, RejectsOutOfRangeFields) {
  const double nan = std::nan("");
  const double inf = std::numeric_limits<double>::infinity();
  for (double bad : {0.0, -1.0, nan, inf}) {
    DpFedAvgOptions o;
    o.clip_norm = bad;
    absl::Status s = o.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("clip_norm must be > 0 and finite"));
    o = DpFedAvgOptions{};
    o.noise_multiplier = bad;
    s = o.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(),
                HasSubstr("noise_multiplier must be > 0 and finite"));
  }
}

TEST(DpFedAvgOptionsTest, NoiseCalibration) {
  DpFedAvgOptions o;
  o.clip_norm = 0.5;
  o.noise_multiplier = 1.2;
  // Sum of clipped updates (central) or one update (local): z * S.
  EXPECT_DOUBLE_EQ(NoiseStddev(o), 0.6);
  // Mean over the expected 10 agents (fixed denominator): z * S / n.
  EXPECT_DOUBLE_EQ(MeanNoiseStddev(o, 10), 0.06);
}

TEST(DpFedAvgDeathTest, CalibrationChecksArguments) {
  DpFedAvgOptions o;
  EXPECT_DEATH(MeanNoiseStddev(o, 0), "expected_agents");
  o.clip_norm = -1;
  EXPECT_DEATH(NoiseStddev(o), "clip_norm");
}

// ---------------------------------------------------------------------------
// Clipping.

TEST(ClipUpdateTest, L2NormIsOverFloatTensorsOnly) {
  EXPECT_DOUBLE_EQ(L2Norm(ThreeFourTwelve()), 13.0);
  EXPECT_EQ(L2Norm(ModelState()), 0.0);
}

TEST(ClipUpdateTest, WithinBound_IsUnchanged) {
  ModelState s = ThreeFourTwelve();
  EXPECT_DOUBLE_EQ(ClipUpdate(s, 13.0), 13.0);
  EXPECT_DOUBLE_EQ(ClipUpdate(s, 100.0), 13.0);
  EXPECT_EQ(Elements(s), (std::vector<double>{3, 4, 12}));
}

TEST(ClipUpdateTest, AboveBound_ScalesToBoundKeepingDirection) {
  ModelState s = ThreeFourTwelve();
  EXPECT_DOUBLE_EQ(ClipUpdate(s, 1.0), 13.0);  // The norm before clipping.
  const std::vector<double> v = Elements(s);
  EXPECT_NEAR(v[0], 3.0 / 13, 1e-6);
  EXPECT_NEAR(v[1], 4.0 / 13, 1e-6);
  EXPECT_NEAR(v[2], 12.0 / 13, 1e-6);
  EXPECT_LE(L2Norm(s), 1.0);
  EXPECT_GT(L2Norm(s), 1.0 - 2e-6);
  EXPECT_EQ(s.tensor(1).int64s()[0], 7);  // int64 tensors pass through.
}

TEST(ClipUpdateTest, RandomUpdates_NeverExceedBound) {
  // The guarantee rests on ||clipped|| <= S exactly, despite float32
  // rounding; checked over many sizes, scales and bounds.
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    const int64_t n = 1 + static_cast<int64_t>(seed * 37 % 5000);
    const double scale = std::pow(10.0, static_cast<double>(seed % 9) - 4);
    const double clip = std::pow(10.0, static_cast<double>(seed % 5) - 2);
    ModelState s = RandomUpdate(seed, n, scale);
    const double before = L2Norm(s);
    EXPECT_DOUBLE_EQ(ClipUpdate(s, clip), before);
    const double after = L2Norm(s);
    EXPECT_LE(after, clip) << seed;
    EXPECT_NEAR(after, std::min(before, clip), 2e-6 * clip) << seed;
  }
}

TEST(ClipUpdateTest, NonFiniteUpdate_BecomesZero) {
  for (float bad : {std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    ModelState s = ThreeFourTwelve();
    s.mutable_tensor(0).mutable_floats()[1] = bad;
    EXPECT_FALSE(std::isfinite(ClipUpdate(s, 1.0)));
    EXPECT_EQ(Elements(s), (std::vector<double>{0, 0, 0}));
    EXPECT_EQ(s.tensor(1).int64s()[0], 7);
  }
}

TEST(ClipUpdateTest, SumSensitivityIsClipNorm) {
  // Central-DP calibration: with every update clipped to S, adding or
  // removing one agent changes the sum of updates by at most S.
  const double clip = 0.5;
  std::vector<ModelState> updates;
  for (uint64_t agent = 0; agent < 10; ++agent) {
    updates.push_back(RandomUpdate(100 + agent, 300, 1.0));
    ClipUpdate(updates.back(), clip);
  }
  std::vector<double> sum(300, 0.0), sum_without_last(300, 0.0);
  for (size_t a = 0; a < updates.size(); ++a) {
    const std::vector<double> v = Elements(updates[a]);
    for (size_t i = 0; i < v.size(); ++i) {
      sum[i] += v[i];
      if (a + 1 < updates.size()) sum_without_last[i] += v[i];
    }
  }
  double diff2 = 0.0;
  for (size_t i = 0; i < sum.size(); ++i) {
    diff2 += (sum[i] - sum_without_last[i]) * (sum[i] - sum_without_last[i]);
  }
  EXPECT_LE(std::sqrt(diff2), clip * (1 + 1e-9));
}

TEST(ClipUpdateDeathTest, ChecksClipNorm) {
  ModelState s = ThreeFourTwelve();
  EXPECT_DEATH(ClipUpdate(s, 0.0), "clip_norm");
  EXPECT_DEATH(ClipUpdate(s, std::nan("")), "clip_norm");
}

// ---------------------------------------------------------------------------
// Gaussian noise.

TEST(AddGaussianNoiseTest, SameSeed_SameNoise) {
  ModelState a = ThreeFourTwelve();
  ModelState b = ThreeFourTwelve();
  ModelState c = ThreeFourTwelve();
  AddGaussianNoise(a, 0.1, 42);
  AddGaussianNoise(b, 0.1, 42);
  AddGaussianNoise(c, 0.1, 43);
  EXPECT_EQ(Elements(a), Elements(b));
  EXPECT_NE(Elements(a), Elements(c));
  EXPECT_NE(Elements(a), Elements(ThreeFourTwelve()));
  EXPECT_EQ(a.tensor(1).int64s()[0], 7);  // int64 tensors pass through.
}

TEST(AddGaussianNoiseTest, ZeroStddev_IsNoOp) {
  ModelState a = ThreeFourTwelve();
  AddGaussianNoise(a, 0.0, 42);
  EXPECT_EQ(Elements(a), (std::vector<double>{3, 4, 12}));
}

TEST(AddGaussianNoiseTest, TensorsGetDifferentNoise) {
  ModelState s;
  s.Add(Zeros("a", 100));
  s.Add(Zeros("b", 100));
  AddGaussianNoise(s, 1.0, 7);
  EXPECT_NE(std::vector<float>(s.tensor(0).floats().begin(),
                               s.tensor(0).floats().end()),
            std::vector<float>(s.tensor(1).floats().begin(),
                               s.tensor(1).floats().end()));
}

// Standard normal CDF.
double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

TEST(AddGaussianNoiseTest, NoiseHasGaussianMoments) {
  // 10^6 draws of N(0, 2.5^2) added to a constant 1.5. Bounds are five
  // standard errors of each estimator (seeded, so the test is exact):
  // mean 5 s/sqrt(n), variance 5 s^2 sqrt(2/n), skewness 5 sqrt(6/n),
  // excess kurtosis 5 sqrt(24/n), lag-1 autocorrelation 5/sqrt(n); and the
  // Kolmogorov-Smirnov distance to the normal CDF below its 0.1% critical
  // value 1.95 / sqrt(n).
  constexpr int64_t kN = 1000000;
  constexpr double kSigma = 2.5;
  constexpr double kOffset = 1.5;
  ModelState s;
  s.Add(Zeros("a", kN / 4));
  s.Add(Zeros("b", kN - kN / 4));
  for (TensorBuffer& t : s.mutable_tensors()) {
    for (float& v : t.mutable_floats()) v = kOffset;
  }
  AddGaussianNoise(s, kSigma, MixSeed({2024, 1}));
  std::vector<double> x = Elements(s);
  ASSERT_EQ(x.size(), static_cast<size_t>(kN));
  double mean = 0.0;
  for (double v : x) mean += v;
  mean /= kN;
  double m2 = 0.0, m3 = 0.0, m4 = 0.0, lag1 = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = x[i] - mean;
    m2 += d * d;
    m3 += d * d * d;
    m4 += d * d * d * d;
    if (i > 0) lag1 += d * (x[i - 1] - mean);
  }
  m2 /= kN;
  m3 /= kN;
  m4 /= kN;
  const double sqrt_n = std::sqrt(static_cast<double>(kN));
  EXPECT_NEAR(mean, kOffset, 5 * kSigma / sqrt_n);
  EXPECT_NEAR(m2, kSigma * kSigma,
              5 * kSigma * kSigma * std::sqrt(2.0) / sqrt_n);
  EXPECT_NEAR(m3 / std::pow(m2, 1.5), 0.0, 5 * std::sqrt(6.0) / sqrt_n);
  EXPECT_NEAR(m4 / (m2 * m2) - 3.0, 0.0, 5 * std::sqrt(24.0) / sqrt_n);
  EXPECT_NEAR(lag1 / (m2 * kN), 0.0, 5 / sqrt_n);

  std::sort(x.begin(), x.end());
  double ks = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double cdf = Phi((x[i] - kOffset) / kSigma);
    ks = std::max({ks, cdf - static_cast<double>(i) / kN,
                   static_cast<double>(i + 1) / kN - cdf});
  }
  EXPECT_LT(ks, 1.95 / sqrt_n);
  // Tails: P(|Z| > 4) = 6.33e-5, i.e. ~63 of 10^6 draws.
  const int64_t beyond4 = std::count_if(x.begin(), x.end(), [&](double v) {
    return std::fabs(v - kOffset) > 4 * kSigma;
  });
  EXPECT_GT(beyond4, 63 - 5 * 8);
  EXPECT_LT(beyond4, 63 + 5 * 8);
}

TEST(AddGaussianNoiseDeathTest, ChecksStddev) {
  ModelState s = ThreeFourTwelve();
  EXPECT_DEATH(AddGaussianNoise(s, -1.0, 1), "stddev");
  EXPECT_DEATH(AddGaussianNoise(s, std::nan(""), 1), "stddev");
}

}  // namespace
}  // namespace fedge
