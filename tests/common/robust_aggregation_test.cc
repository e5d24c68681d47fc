#include "common/robust_aggregation.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/aggregation.h"
#include "common/tensor_buffer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TensorBuffer Floats(const std::string& name, std::vector<int64_t> shape,
                    std::vector<float> values) {
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::FromFloats(name, std::move(shape), values);
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(t).value();
}

TensorBuffer Int64s(const std::string& name, std::vector<int64_t> values) {
  absl::StatusOr<TensorBuffer> t = TensorBuffer::Zeros(
      name, DType::kInt64, {static_cast<int64_t>(values.size())});
  EXPECT_TRUE(t.ok()) << t.status();
  std::copy(values.begin(), values.end(), t->mutable_int64s().begin());
  return std::move(t).value();
}

// A model with a float32 "w" (2 values), an int64 "count" (1 value) and a
// float32 "b" (1 value).
ModelState Model(float w0, float w1, int64_t count, float b) {
  ModelState m;
  m.Add(Floats("w", {2}, {w0, w1}));
  m.Add(Int64s("count", {count}));
  m.Add(Floats("b", {1}, {b}));
  return m;
}

// A model with one float32 tensor "x" holding `values`.
ModelState Vector(std::vector<float> values) {
  ModelState m;
  m.Add(Floats("x", {static_cast<int64_t>(values.size())}, values));
  return m;
}

std::vector<const ModelState*> Pointers(const std::vector<ModelState>& ms) {
  std::vector<const ModelState*> out;
  for (const ModelState& m : ms) out.push_back(&m);
  return out;
}

std::vector<float> FloatsOf(const ModelState& m, size_t index) {
  absl::Span<const float> v = m.tensor(index).floats();
  return std::vector<float>(v.begin(), v.end());
}

TEST(CoordinateMedianTest, OddCount_MiddleValuePerCoordinate) {
  std::vector<ModelState> ms;
  ms.push_back(Model(1, 30, 5, -1));
  ms.push_back(Model(3, 10, 9, -3));
  ms.push_back(Model(2, 20, 7, 100));
  absl::StatusOr<ModelState> median = CoordinateMedian(Pointers(ms));
  ASSERT_TRUE(median.ok()) << median.status();
  EXPECT_THAT(FloatsOf(*median, 0), ElementsAre(2.0f, 20.0f));
  EXPECT_THAT(median->tensor(1).int64s(), ElementsAre(9));  // Maximum.
  EXPECT_THAT(FloatsOf(*median, 2), ElementsAre(-1.0f));
  EXPECT_TRUE(CheckSameSchema(ms[0], *median).ok());
}

TEST(CoordinateMedianTest, EvenCount_MeanOfTheTwoMiddleValues) {
  std::vector<ModelState> ms;
  ms.push_back(Vector({4, 1, -7}));
  ms.push_back(Vector({1, 1, 5}));
  ms.push_back(Vector({3, 1, 0}));
  ms.push_back(Vector({10, 2, -1}));
  absl::StatusOr<ModelState> median = CoordinateMedian(Pointers(ms));
  ASSERT_TRUE(median.ok()) << median.status();
  // Sorted: {1,3,4,10} -> 3.5; {1,1,1,2} -> 1; {-7,-1,0,5} -> -0.5.
  EXPECT_THAT(FloatsOf(*median, 0), ElementsAre(3.5f, 1.0f, -0.5f));
}

TEST(CoordinateMedianTest, SingleUpdate_IsItself) {
  std::vector<ModelState> ms;
  ms.push_back(Model(0.25f, -8, 3, 1e-3f));
  absl::StatusOr<ModelState> median = CoordinateMedian(Pointers(ms));
  ASSERT_TRUE(median.ok()) << median.status();
  EXPECT_THAT(FloatsOf(*median, 0), ElementsAre(0.25f, -8.0f));
  EXPECT_THAT(median->tensor(1).int64s(), ElementsAre(3));
  EXPECT_THAT(FloatsOf(*median, 2), ElementsAre(1e-3f));
}

// n updates of one float32 tensor of `size` values: normal noise, with a
// third of the values rounded to a few levels so that ties are common.
std::vector<ModelState> RandomUpdates(int n, size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<ModelState> ms;
  for (int k = 0; k < n; ++k) {
    std::vector<float> values(size);
    for (size_t j = 0; j < size; ++j) {
      values[j] = normal(rng);
      if (j % 3 == 0) values[j] = std::round(values[j]);
    }
    ms.push_back(Vector(values));
  }
  return ms;
}

// Coordinate j's values across `ms`, sorted ascending.
std::vector<float> SortedColumn(const std::vector<ModelState>& ms, size_t j) {
  std::vector<float> column;
  for (const ModelState& m : ms) column.push_back(m.tensor(0).floats()[j]);
  std::sort(column.begin(), column.end());
  return column;
}

constexpr int kCounts[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,
                           10, 11, 16, 17, 31, 33, 64, 100};

TEST(CoordinateMedianTest, RandomModels_MatchSortingReference) {
  // Many counts (sorting-network shapes), several blocks of coordinates.
  for (int n : kCounts) {
    const size_t size = 5000;
    const std::vector<ModelState> ms = RandomUpdates(n, size, n);
    absl::StatusOr<ModelState> median = CoordinateMedian(Pointers(ms));
    ASSERT_TRUE(median.ok()) << median.status();
    absl::Span<const float> got = median->tensor(0).floats();
    for (size_t j = 0; j < size; ++j) {
      const std::vector<float> column = SortedColumn(ms, j);
      const float want =
          n % 2 == 1
              ? column[n / 2]
              : static_cast<float>(
                    (static_cast<double>(column[n / 2 - 1]) + column[n / 2]) /
                    2);
      ASSERT_EQ(got[j], want) << "n = " << n << ", coordinate " << j;
    }
  }
}

TEST(TrimmedMeanTest, RandomModels_MatchSortingReference) {
  for (int n : kCounts) {
    for (double beta : {0.0, 0.1, 0.25, 0.49}) {
      const size_t size = 3000;
      const std::vector<ModelState> ms = RandomUpdates(n, size, 1000 + n);
      absl::StatusOr<ModelState> mean = TrimmedMean(Pointers(ms), beta);
      ASSERT_TRUE(mean.ok()) << mean.status();
      const size_t trim = static_cast<size_t>(std::floor(beta * n));
      absl::Span<const float> got = mean->tensor(0).floats();
      for (size_t j = 0; j < size; ++j) {
        const std::vector<float> column = SortedColumn(ms, j);
        double sum = 0;
        for (size_t r = trim; r < n - trim; ++r) sum += column[r];
        const float want = static_cast<float>(sum / (n - 2 * trim));
        ASSERT_EQ(got[j], want)
            << "n = " << n << ", beta = " << beta << ", coordinate " << j;
      }
    }
  }
}

TEST(TrimmedMeanTest, DropsTheExtremesPerCoordinate) {
  // n = 5, beta = 0.2: one value trimmed from each side.
  std::vector<ModelState> ms;
  ms.push_back(Vector({1, -100}));
  ms.push_back(Vector({2, 4}));
  ms.push_back(Vector({3, 5}));
  ms.push_back(Vector({4, 6}));
  ms.push_back(Vector({1000, 0}));
  absl::StatusOr<ModelState> mean = TrimmedMean(Pointers(ms), 0.2);
  ASSERT_TRUE(mean.ok()) << mean.status();
  // {2,3,4} -> 3; {0,4,5} -> 3.
  EXPECT_THAT(FloatsOf(*mean, 0), ElementsAre(3.0f, 3.0f));
}

TEST(TrimmedMeanTest, TrimCountIsFloorOfBetaTimesN) {
  // n = 5, beta = 0.39: floor(1.95) = 1 trimmed each side.
  std::vector<ModelState> ms;
  for (float x : {10.0f, 1.0f, 2.0f, 6.0f, -50.0f}) ms.push_back(Vector({x}));
  absl::StatusOr<ModelState> mean = TrimmedMean(Pointers(ms), 0.39);
  ASSERT_TRUE(mean.ok()) << mean.status();
  EXPECT_THAT(FloatsOf(*mean, 0), ElementsAre(3.0f));  // (1 + 2 + 6) / 3.
}

TEST(TrimmedMeanTest, BetaZero_IsThePlainMean) {
  std::vector<ModelState> ms;
  ms.push_back(Model(1, 2, 4, 0.5f));
  ms.push_back(Model(2, 4, 1, 0.25f));
  ms.push_back(Model(6, 0, 2, 0.0f));
  absl::StatusOr<ModelState> mean = TrimmedMean(Pointers(ms), 0.0);
  ASSERT_TRUE(mean.ok()) << mean.status();
  EXPECT_THAT(FloatsOf(*mean, 0), ElementsAre(3.0f, 2.0f));
  EXPECT_THAT(mean->tensor(1).int64s(), ElementsAre(4));
  EXPECT_THAT(FloatsOf(*mean, 2), ElementsAre(0.25f));
}

TEST(TrimmedMeanTest, BetaOutOfRange_Rejected) {
  std::vector<ModelState> ms;
  ms.push_back(Vector({1}));
  ms.push_back(Vector({2}));
  for (double beta :
       {-0.1, 0.5, 0.7, std::numeric_limits<double>::quiet_NaN()}) {
    absl::StatusOr<ModelState> mean = TrimmedMean(Pointers(ms), beta);
    EXPECT_EQ(mean.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(mean.status().message(), HasSubstr("beta"));
    EXPECT_THAT(mean.status().message(), HasSubstr("[0, 0.5)"));
  }
}

TEST(MultiKrumSelectTest, HandComputedScores) {
  // n = 5, f = 1: each score sums the n - f - 2 = 2 nearest squared
  // distances. Points on a line: 0, 1, 3, 4, 10.
  //   0: d^2 to others 1, 9, 16, 100  -> 1 + 9 = 10
  //   1: 1, 4, 9, 81                  -> 1 + 4 = 5
  //   3: 9, 4, 1, 49                  -> 4 + 1 = 5
  //   4: 16, 9, 1, 36                 -> 1 + 9 = 10
  //   10: 100, 81, 49, 36             -> 36 + 49 = 85
  std::vector<ModelState> ms;
  for (float x : {0.0f, 1.0f, 3.0f, 4.0f, 10.0f}) ms.push_back(Vector({x}));
  absl::StatusOr<std::vector<size_t>> krum =
      MultiKrumSelect(Pointers(ms), 1, 1);
  ASSERT_TRUE(krum.ok()) << krum.status();
  EXPECT_THAT(*krum, ElementsAre(1));  // Tie 5 = 5 goes to the lower index.
  absl::StatusOr<std::vector<size_t>> all = MultiKrumSelect(Pointers(ms), 1, 5);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(*all, ElementsAre(1, 2, 0, 3, 4));
}

TEST(MultiKrumSelectTest, DistancesSpanAllFloatTensorsAndIgnoreCounters) {
  // Update 2 is close to 0 and 1 in "w" but far away in "b"; the counter,
  // which differs wildly, must not matter. n = 3, f = 0: 1 neighbour.
  std::vector<ModelState> ms;
  ms.push_back(Model(0, 0, 1, 0));
  ms.push_back(Model(0, 1, 1000000, 0));
  ms.push_back(Model(0, 0, 1, 5));
  // d^2: (0,1) = 1, (0,2) = 25, (1,2) = 1 + 25 = 26.
  // Scores: 0 -> 1, 1 -> 1, 2 -> 25.
  absl::StatusOr<std::vector<size_t>> sel = MultiKrumSelect(Pointers(ms), 0, 3);
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_THAT(*sel, ElementsAre(0, 1, 2));
}

TEST(MultiKrumSelectTest, LargeModel_SelectsTheCluster) {
  // Updates longer than one block: 6 near +1, 2 far away at -1000 (f = 2,
  // n = 8 >= 2f + 3). The honest ones must be selected first.
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.0f, 0.01f);
  const size_t size = 70000;
  std::vector<ModelState> ms;
  for (int k = 0; k < 8; ++k) {
    const bool byzantine = k == 2 || k == 5;
    std::vector<float> values(size);
    for (float& x : values) x = (byzantine ? -1000.0f : 1.0f) + noise(rng);
    ms.push_back(Vector(values));
  }
  absl::StatusOr<std::vector<size_t>> sel = MultiKrumSelect(Pointers(ms), 2, 6);
  ASSERT_TRUE(sel.ok()) << sel.status();
  std::vector<size_t> sorted = *sel;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_THAT(sorted, ElementsAre(0, 1, 3, 4, 6, 7));
}

TEST(MultiKrumSelectTest, BadParameters_Rejected) {
  std::vector<ModelState> ms;
  for (int k = 0; k < 5; ++k) ms.push_back(Vector({static_cast<float>(k)}));
  // n = 5 < 2 * 2 + 3.
  absl::StatusOr<std::vector<size_t>> sel = MultiKrumSelect(Pointers(ms), 2, 1);
  EXPECT_EQ(sel.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sel.status().message(), HasSubstr("n = 5"));
  EXPECT_THAT(sel.status().message(), HasSubstr("f = 2"));
  for (int m : {0, 6, -1}) {
    sel = MultiKrumSelect(Pointers(ms), 1, m);
    EXPECT_EQ(sel.status().code(), absl::StatusCode::kInvalidArgument) << m;
    EXPECT_THAT(sel.status().message(), HasSubstr("m ")) << m;
  }
  sel = MultiKrumSelect(Pointers(ms), -1, 1);
  EXPECT_EQ(sel.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sel.status().message(), HasSubstr("f "));
  // 2f + 3 must not overflow.
  sel = MultiKrumSelect(Pointers(ms), std::numeric_limits<int>::max(), 1);
  EXPECT_EQ(sel.status().code(), absl::StatusCode::kInvalidArgument);
}

// 8 honest updates near 1.0 and 2 Byzantine ones at -1000: the robust rules
// stay near 1.0 where the plain mean is dragged to about -199.
TEST(RobustAggregationTest, OutlierRobustness) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> jitter(-0.05f, 0.05f);
  std::vector<ModelState> ms;
  for (int k = 0; k < 10; ++k) {
    const bool byzantine = k == 3 || k == 8;
    std::vector<float> values(50);
    for (float& x : values) x = byzantine ? -1000.0f : 1.0f + jitter(rng);
    ms.push_back(Vector(values));
  }
  const std::vector<const ModelState*> updates = Pointers(ms);

  WeightedMeanAccumulator plain(ms[0]);
  for (const ModelState& m : ms) ASSERT_TRUE(plain.Add(m, 1.0).ok());
  absl::StatusOr<ModelState> mean = plain.Mean();
  ASSERT_TRUE(mean.ok());
  for (float x : mean->tensor(0).floats()) EXPECT_LT(x, -150.0f);

  absl::StatusOr<ModelState> median = CoordinateMedian(updates);
  ASSERT_TRUE(median.ok()) << median.status();
  for (float x : median->tensor(0).floats()) EXPECT_NEAR(x, 1.0f, 0.05f);

  absl::StatusOr<ModelState> trimmed = TrimmedMean(updates, 0.2);
  ASSERT_TRUE(trimmed.ok()) << trimmed.status();
  for (float x : trimmed->tensor(0).floats()) EXPECT_NEAR(x, 1.0f, 0.05f);

  absl::StatusOr<std::vector<size_t>> krum = MultiKrumSelect(updates, 2, 6);
  ASSERT_TRUE(krum.ok()) << krum.status();
  ASSERT_EQ(krum->size(), 6u);
  for (size_t i : *krum) EXPECT_TRUE(i != 3 && i != 8) << i;
}

TEST(RobustAggregationTest, InvalidUpdates_Rejected) {
  std::vector<const ModelState*> none;
  EXPECT_EQ(CoordinateMedian(none).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TrimmedMean(none, 0.1).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Schema mismatch (a different shape) in update #2.
  std::vector<ModelState> ms;
  for (int k = 0; k < 4; ++k) ms.push_back(Model(k, k, k, k));
  ms.push_back(Model(0, 0, 0, 0));
  ms[2].mutable_tensors()[2] = Floats("b", {2}, {0, 0});
  absl::StatusOr<ModelState> median = CoordinateMedian(Pointers(ms));
  EXPECT_EQ(median.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(median.status().message(), HasSubstr("update #2"));
  EXPECT_EQ(TrimmedMean(Pointers(ms), 0.2).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<size_t>> sel = MultiKrumSelect(Pointers(ms), 1, 1);
  EXPECT_EQ(sel.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sel.status().message(), HasSubstr("update #2"));

  // A non-finite value in update #4.
  ms[2] = Model(0, 0, 0, 0);
  ms[4].mutable_tensor(0).mutable_floats()[1] =
      std::numeric_limits<float>::quiet_NaN();
  median = CoordinateMedian(Pointers(ms));
  EXPECT_EQ(median.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(median.status().message(), HasSubstr("update #4"));
  ms[4].mutable_tensor(0).mutable_floats()[1] =
      std::numeric_limits<float>::infinity();
  sel = MultiKrumSelect(Pointers(ms), 1, 1);
  EXPECT_EQ(sel.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sel.status().message(), HasSubstr("update #4"));
}

TEST(L2NormTest, OverFloatTensorsOnly) {
  // 3^2 + 4^2 + 12^2 = 169; the counter is ignored.
  EXPECT_DOUBLE_EQ(L2Norm(Model(3, 4, 1000, 12)), 13.0);
  EXPECT_DOUBLE_EQ(L2Norm(Model(0, 0, 7, 0)), 0.0);
  EXPECT_DOUBLE_EQ(L2Norm(ModelState()), 0.0);
}

TEST(ClipToL2NormTest, ScalesDownAboveTheBound) {
  ModelState m = Model(3, 4, 9, 12);  // Norm 13.
  const double factor = ClipToL2Norm(m, 6.5);
  EXPECT_DOUBLE_EQ(factor, 0.5);
  EXPECT_THAT(FloatsOf(m, 0), ElementsAre(1.5f, 2.0f));
  EXPECT_THAT(m.tensor(1).int64s(), ElementsAre(9));
  EXPECT_THAT(FloatsOf(m, 2), ElementsAre(6.0f));
  EXPECT_NEAR(L2Norm(m), 6.5, 1e-6);
}

TEST(ClipToL2NormTest, UnchangedAtOrBelowTheBound) {
  for (double bound : {13.0, 20.0, std::numeric_limits<double>::infinity()}) {
    ModelState m = Model(3, 4, 9, 12);
    EXPECT_EQ(ClipToL2Norm(m, bound), 1.0);
    EXPECT_THAT(FloatsOf(m, 0), ElementsAre(3.0f, 4.0f));
    EXPECT_THAT(FloatsOf(m, 2), ElementsAre(12.0f));
  }
}

TEST(ClipToL2NormTest, ZeroBound_ZeroesTheUpdate) {
  ModelState m = Model(3, 4, 9, 12);
  EXPECT_EQ(ClipToL2Norm(m, 0.0), 0.0);
  EXPECT_THAT(FloatsOf(m, 0), ElementsAre(0.0f, 0.0f));
  EXPECT_THAT(m.tensor(1).int64s(), ElementsAre(9));
}

TEST(ClipToL2NormTest, NonFiniteUpdate_LeftUnchanged) {
  ModelState m = Model(3, std::numeric_limits<float>::infinity(), 9, 12);
  EXPECT_EQ(ClipToL2Norm(m, 1.0), 1.0);
  EXPECT_THAT(FloatsOf(m, 0),
              ElementsAre(3.0f, std::numeric_limits<float>::infinity()));
}

TEST(ClipToL2NormDeathTest, NegativeBound_Crashes) {
  ModelState m = Model(3, 4, 9, 12);
  EXPECT_DEATH(ClipToL2Norm(m, -1.0), "max_norm");
}

}  // namespace
}  // namespace fedge
