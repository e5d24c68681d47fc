#include "common/aggregation.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor_buffer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Resident set size of this process in bytes, from /proc/self/statm.
int64_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long size_pages = 0, resident_pages = 0;
  const int n = std::fscanf(f, "%ld %ld", &size_pages, &resident_pages);
  std::fclose(f);
  if (n != 2) return -1;
  return static_cast<int64_t>(resident_pages) * sysconf(_SC_PAGESIZE);
}

TensorBuffer Zeros(const std::string& name, DType dtype,
                   std::vector<int64_t> shape) {
  absl::StatusOr<TensorBuffer> t = TensorBuffer::Zeros(name, dtype, shape);
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(t).value();
}

TensorBuffer Floats(const std::string& name, std::vector<int64_t> shape,
                    std::vector<float> values) {
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::FromFloats(name, shape, values);
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(t).value();
}

TensorBuffer Int64s(const std::string& name, std::vector<int64_t> shape,
                    std::vector<int64_t> values) {
  TensorBuffer t = Zeros(name, DType::kInt64, std::move(shape));
  absl::Span<int64_t> v = t.mutable_int64s();
  EXPECT_EQ(v.size(), values.size());
  std::copy(values.begin(), values.end(), v.begin());
  return t;
}

// A small model with tensors of several shapes and an int64 counter:
// conv.weight f32[4,3,3], conv.bias f32[4], bn.num_batches_tracked i64[],
// fc.weight f32[10,7], fc.bias f32[10].
ModelState ZeroModel() {
  ModelState m;
  m.Add(Zeros("conv.weight", DType::kFloat32, {4, 3, 3}));
  m.Add(Zeros("conv.bias", DType::kFloat32, {4}));
  m.Add(Zeros("bn.num_batches_tracked", DType::kInt64, {}));
  m.Add(Zeros("fc.weight", DType::kFloat32, {10, 7}));
  m.Add(Zeros("fc.bias", DType::kFloat32, {10}));
  return m;
}

// Float tensors get values around a per-tensor offset (so that means are not
// all near zero, and scales differ); the counter a random value.
ModelState RandomModel(std::mt19937_64& rng) {
  static const float kOffsets[] = {0.5f, -2.0f, 0.0f, 10.0f, 1e-3f};
  static const float kScales[] = {1.0f, 0.5f, 0.0f, 3.0f, 1e-3f};
  ModelState m = ZeroModel();
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int64_t> counter(0, int64_t{1} << 40);
  for (size_t i = 0; i < m.size(); ++i) {
    TensorBuffer& t = m.mutable_tensor(i);
    if (t.dtype() == DType::kInt64) {
      for (int64_t& v : t.mutable_int64s()) v = counter(rng);
    } else {
      for (float& v : t.mutable_floats()) {
        v = kOffsets[i] + kScales[i] * normal(rng);
      }
    }
  }
  return m;
}

// Expects `a` and `b` to hold bit-identical values (same schema assumed).
void ExpectIdentical(const ModelState& a, const ModelState& b) {
  ASSERT_TRUE(CheckSameSchema(a, b).ok()) << CheckSameSchema(a, b);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a.tensor(i).num_bytes(), b.tensor(i).num_bytes());
    EXPECT_EQ(std::memcmp(a.tensor(i).data(), b.tensor(i).data(),
                          a.tensor(i).num_bytes()),
              0)
        << "tensor " << a.tensor(i).name();
  }
}

TEST(WeightedMeanAccumulatorTest, ThousandUpdates_MatchesFloat64Reference) {
  std::mt19937_64 rng(20260101);
  std::uniform_int_distribution<int> num_examples(1, 1000);
  const ModelState schema = ZeroModel();
  WeightedMeanAccumulator acc(schema);

  // Reference: per-element sum of weight * value in long double, and the
  // running maximum of the counter.
  std::vector<std::vector<long double>> ref_sums(schema.size());
  for (size_t i = 0; i < schema.size(); ++i) {
    ref_sums[i].assign(schema.tensor(i).num_elements(), 0.0L);
  }
  int64_t ref_max = std::numeric_limits<int64_t>::min();
  long double ref_weight = 0.0L;

  constexpr int kUpdates = 1000;
  for (int u = 0; u < kUpdates; ++u) {
    ModelState update = RandomModel(rng);
    const double weight = num_examples(rng);
    for (size_t i = 0; i < update.size(); ++i) {
      const TensorBuffer& t = update.tensor(i);
      if (t.dtype() == DType::kInt64) {
        ref_max = std::max(ref_max, t.int64s()[0]);
        continue;
      }
      for (size_t j = 0; j < t.floats().size(); ++j) {
        ref_sums[i][j] += static_cast<long double>(weight) * t.floats()[j];
      }
    }
    ref_weight += weight;
    ASSERT_TRUE(acc.Add(update, weight).ok()) << "update " << u;
  }

  EXPECT_EQ(acc.num_updates(), kUpdates);
  EXPECT_DOUBLE_EQ(acc.total_weight(), static_cast<double>(ref_weight));
  absl::StatusOr<ModelState> mean = acc.Mean();
  ASSERT_TRUE(mean.ok()) << mean.status();
  ASSERT_TRUE(CheckSameSchema(schema, *mean).ok())
      << CheckSameSchema(schema, *mean);
  for (size_t i = 0; i < mean->size(); ++i) {
    const TensorBuffer& t = mean->tensor(i);
    if (t.dtype() == DType::kInt64) {
      EXPECT_THAT(t.int64s(), ElementsAre(ref_max)) << t.name();
      continue;
    }
    for (size_t j = 0; j < t.floats().size(); ++j) {
      const double ref = static_cast<double>(ref_sums[i][j] / ref_weight);
      const double got = t.floats()[j];
      ASSERT_NEAR(got, ref, 1e-6 * std::abs(ref) + 1e-30)
          << t.name() << "[" << j << "]";
    }
  }
}

TEST(WeightedMeanAccumulatorTest, TwoUpdates_WeightedByExampleCount) {
  ModelState schema;
  schema.Add(Floats("w", {2}, {0, 0}));
  schema.Add(Int64s("n", {2}, {0, 0}));
  WeightedMeanAccumulator acc(schema);
  ModelState a;
  a.Add(Floats("w", {2}, {1, 10}));
  a.Add(Int64s("n", {2}, {5, 100}));
  ModelState b;
  b.Add(Floats("w", {2}, {5, -2}));
  b.Add(Int64s("n", {2}, {7, 3}));
  ASSERT_TRUE(acc.Add(a, 1).ok());
  ASSERT_TRUE(acc.Add(b, 3).ok());
  EXPECT_EQ(acc.num_updates(), 2);
  EXPECT_EQ(acc.total_weight(), 4.0);
  absl::StatusOr<ModelState> mean = acc.Mean();
  ASSERT_TRUE(mean.ok()) << mean.status();
  // (1*1 + 3*5)/4 = 4; (1*10 + 3*-2)/4 = 1. Counters: elementwise max.
  EXPECT_THAT(mean->tensor(0).floats(), ElementsAre(4.0f, 1.0f));
  EXPECT_THAT(mean->tensor(1).int64s(), ElementsAre(7, 100));
}

TEST(WeightedMeanAccumulatorTest, SingleUpdate_MeanEqualsUpdate) {
  std::mt19937_64 rng(3);
  ModelState update = RandomModel(rng);
  WeightedMeanAccumulator acc(ZeroModel());
  ASSERT_TRUE(acc.Add(update, 37.0).ok());
  absl::StatusOr<ModelState> mean = acc.Mean();
  ASSERT_TRUE(mean.ok()) << mean.status();
  ExpectIdentical(*mean, update);
}

TEST(WeightedMeanAccumulatorTest, SchemaValuesAreIgnored) {
  std::mt19937_64 rng(5);
  ModelState schema = RandomModel(rng);  // Nonzero values, big counter.
  ModelState update = ZeroModel();
  update.mutable_tensor(2).mutable_int64s()[0] = -5;
  WeightedMeanAccumulator acc(schema);
  ASSERT_TRUE(acc.Add(update, 2.0).ok());
  absl::StatusOr<ModelState> mean = acc.Mean();
  ASSERT_TRUE(mean.ok()) << mean.status();
  ExpectIdentical(*mean, update);
}

TEST(WeightedMeanAccumulatorTest, NegativeCounters_MaxIsLargestNegative) {
  ModelState schema;
  schema.Add(Int64s("n", {2}, {0, 0}));
  WeightedMeanAccumulator acc(schema);
  ModelState a;
  a.Add(Int64s("n", {2}, {-10, std::numeric_limits<int64_t>::min()}));
  ModelState b;
  b.Add(Int64s("n", {2}, {-20, std::numeric_limits<int64_t>::min()}));
  ASSERT_TRUE(acc.Add(a, 1).ok());
  ASSERT_TRUE(acc.Add(b, 1).ok());
  absl::StatusOr<ModelState> mean = acc.Mean();
  ASSERT_TRUE(mean.ok()) << mean.status();
  EXPECT_THAT(mean->tensor(0).int64s(),
              ElementsAre(-10, std::numeric_limits<int64_t>::min()));
}

TEST(WeightedMeanAccumulatorTest, FractionalWeights) {
  ModelState schema;
  schema.Add(Floats("w", {1}, {0}));
  WeightedMeanAccumulator acc(schema);
  ModelState a;
  a.Add(Floats("w", {1}, {2}));
  ModelState b;
  b.Add(Floats("w", {1}, {4}));
  ASSERT_TRUE(acc.Add(a, 0.25).ok());
  ASSERT_TRUE(acc.Add(b, 0.75).ok());
  EXPECT_EQ(acc.total_weight(), 1.0);
  EXPECT_THAT(acc.Mean()->tensor(0).floats(), ElementsAre(3.5f));
}

TEST(WeightedMeanAccumulatorTest, EmptyModel) {
  WeightedMeanAccumulator acc{ModelState()};
  ASSERT_TRUE(acc.Add(ModelState(), 1.0).ok());
  absl::StatusOr<ModelState> mean = acc.Mean();
  ASSERT_TRUE(mean.ok()) << mean.status();
  EXPECT_EQ(mean->size(), 0u);
}

TEST(WeightedMeanAccumulatorTest, MeanWithoutUpdates_IsFailedPrecondition) {
  WeightedMeanAccumulator acc(ZeroModel());
  EXPECT_EQ(acc.num_updates(), 0);
  EXPECT_EQ(acc.total_weight(), 0.0);
  EXPECT_EQ(acc.Mean().status().code(), absl::StatusCode::kFailedPrecondition);
}

// MeanPlus(base, s) is base.Clone() then AddMeanTo(s), bit for bit, and
// leaves base as it was; errors as AddMeanTo's.
TEST(WeightedMeanAccumulatorTest, MeanPlus_EqualsCloneThenAddMeanTo) {
  std::mt19937_64 rng(5);
  WeightedMeanAccumulator acc(ZeroModel());
  EXPECT_EQ(acc.MeanPlus(ZeroModel(), 1.0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  for (double w : {3.0, 0.25, 7.0})
    ASSERT_TRUE(acc.Add(RandomModel(rng), w).ok());
  const ModelState base = RandomModel(rng);
  const ModelState base_before = base.Clone();
  for (double scale : {1.0, 0.1, -2.5}) {
    ModelState expected = base.Clone();
    ASSERT_TRUE(acc.AddMeanTo(expected, scale).ok());
    absl::StatusOr<ModelState> got = acc.MeanPlus(base, scale);
    ASSERT_TRUE(got.ok()) << got.status();
    ExpectIdentical(*got, expected);
  }
  ExpectIdentical(base, base_before);
  ModelState other;
  other.Add(Zeros("w", DType::kFloat32, {3}));
  EXPECT_EQ(acc.MeanPlus(other, 1.0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WeightedMeanAccumulatorTest, MeanIsRepeatableAndAddCanContinue) {
  std::mt19937_64 rng(11);
  ModelState u1 = RandomModel(rng);
  ModelState u2 = RandomModel(rng);
  WeightedMeanAccumulator acc(ZeroModel());
  ASSERT_TRUE(acc.Add(u1, 3).ok());
  absl::StatusOr<ModelState> m1 = acc.Mean();
  absl::StatusOr<ModelState> m1_again = acc.Mean();
  ASSERT_TRUE(m1.ok() && m1_again.ok());
  ExpectIdentical(*m1, *m1_again);
  ASSERT_TRUE(acc.Add(u2, 5).ok());

  WeightedMeanAccumulator fresh(ZeroModel());
  ASSERT_TRUE(fresh.Add(u1, 3).ok());
  ASSERT_TRUE(fresh.Add(u2, 5).ok());
  ExpectIdentical(acc.Mean().value(), fresh.Mean().value());
}

// One way to make an update invalid; `update` starts as a valid update.
struct InvalidCase {
  std::string label;
  std::function<void(ModelState& update, double& weight)> corrupt;
};

std::vector<InvalidCase> InvalidCases() {
  const float kNaN = std::numeric_limits<float>::quiet_NaN();
  const float kInf = std::numeric_limits<float>::infinity();
  // Last float tensor: fc.bias (index 4); earlier tensors stay valid, so a
  // partially applied Add would show.
  return {
      {"wrong name",
       [](ModelState& u, double&) {
         std::vector<float> v(u.tensor(4).floats().begin(),
                              u.tensor(4).floats().end());
         u.mutable_tensor(4) = Floats("fc.b", {10}, v);
       }},
      {"wrong shape",
       [](ModelState& u, double&) {
         std::vector<float> v(u.tensor(3).floats().begin(),
                              u.tensor(3).floats().end());
         u.mutable_tensor(3) = Floats("fc.weight", {7, 10}, v);
       }},
      {"wrong dtype",
       [](ModelState& u, double&) {
         u.mutable_tensor(2) = Floats("bn.num_batches_tracked", {}, {1e9f});
       }},
      {"missing tensor",
       [](ModelState& u, double&) { u.mutable_tensors().pop_back(); }},
      {"extra tensor",
       [](ModelState& u, double&) { u.Add(Floats("extra", {1}, {1})); }},
      {"NaN value",
       [kNaN](ModelState& u, double&) {
         u.mutable_tensor(4).mutable_floats()[9] = kNaN;
       }},
      {"+Inf value",
       [kInf](ModelState& u, double&) {
         u.mutable_tensor(4).mutable_floats()[0] = kInf;
       }},
      {"-Inf value",
       [kInf](ModelState& u, double&) {
         u.mutable_tensor(0).mutable_floats()[35] = -kInf;
       }},
      {"zero weight", [](ModelState&, double& w) { w = 0.0; }},
      {"negative weight", [](ModelState&, double& w) { w = -5.0; }},
      {"NaN weight",
       [](ModelState&, double& w) {
         w = std::numeric_limits<double>::quiet_NaN();
       }},
      {"Inf weight",
       [](ModelState&, double& w) {
         w = std::numeric_limits<double>::infinity();
       }},
  };
}

TEST(WeightedMeanAccumulatorTest,
     InvalidUpdate_IsInvalidArgumentAndChangesNothing) {
  for (const InvalidCase& c : InvalidCases()) {
    SCOPED_TRACE(c.label);
    std::mt19937_64 rng(42);
    ModelState u1 = RandomModel(rng);
    ModelState u2 = RandomModel(rng);
    // The invalid update has large values and a counter above every valid
    // one, so that any effect on the sums or maxima would show.
    ModelState bad = RandomModel(rng);
    for (size_t i = 0; i < bad.size(); ++i) {
      if (bad.tensor(i).dtype() == DType::kInt64) {
        bad.mutable_tensor(i).mutable_int64s()[0] = int64_t{1} << 60;
      } else {
        for (float& v : bad.mutable_tensor(i).mutable_floats()) v = 1e6f;
      }
    }
    double bad_weight = 1000.0;
    c.corrupt(bad, bad_weight);

    WeightedMeanAccumulator acc(ZeroModel());
    WeightedMeanAccumulator reference(ZeroModel());
    ASSERT_TRUE(acc.Add(u1, 10).ok());
    ASSERT_TRUE(reference.Add(u1, 10).ok());

    absl::Status validated = acc.Validate(bad, bad_weight);
    EXPECT_EQ(validated.code(), absl::StatusCode::kInvalidArgument)
        << validated;
    absl::Status added = acc.Add(bad, bad_weight);
    EXPECT_EQ(added.code(), absl::StatusCode::kInvalidArgument) << added;
    EXPECT_EQ(acc.num_updates(), 1);
    EXPECT_EQ(acc.total_weight(), 10.0);
    ExpectIdentical(acc.Mean().value(), reference.Mean().value());

    ASSERT_TRUE(acc.Add(u2, 20).ok());
    ASSERT_TRUE(reference.Add(u2, 20).ok());
    EXPECT_EQ(acc.num_updates(), reference.num_updates());
    EXPECT_EQ(acc.total_weight(), reference.total_weight());
    ExpectIdentical(acc.Mean().value(), reference.Mean().value());
  }
}

TEST(WeightedMeanAccumulatorTest,
     InvalidFirstUpdate_MeanStaysFailedPrecondition) {
  for (const InvalidCase& c : InvalidCases()) {
    SCOPED_TRACE(c.label);
    std::mt19937_64 rng(8);
    ModelState bad = RandomModel(rng);
    double bad_weight = 4.0;
    c.corrupt(bad, bad_weight);
    WeightedMeanAccumulator acc(ZeroModel());
    EXPECT_EQ(acc.Add(bad, bad_weight).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(acc.num_updates(), 0);
    EXPECT_EQ(acc.total_weight(), 0.0);
    EXPECT_EQ(acc.Mean().status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

TEST(WeightedMeanAccumulatorTest, InvalidUpdate_MessageNamesTheProblem) {
  std::mt19937_64 rng(9);
  WeightedMeanAccumulator acc(ZeroModel());
  ModelState nan = RandomModel(rng);
  nan.mutable_tensor(1).mutable_floats()[2] = std::nanf("");
  EXPECT_THAT(std::string(acc.Add(nan, 1).message()), HasSubstr("conv.bias"));
  ModelState ok = RandomModel(rng);
  EXPECT_THAT(std::string(acc.Add(ok, 0).message()), HasSubstr("weight"));
  ModelState renamed = ZeroModel();
  renamed.mutable_tensor(1) = Floats("conv.b", {4}, {0, 0, 0, 0});
  EXPECT_THAT(std::string(acc.Add(renamed, 1).message()), HasSubstr("conv.b"));
}

TEST(WeightedMeanAccumulatorTest, Reset_ForgetsUpdatesAndKeepsSchema) {
  std::mt19937_64 rng(13);
  ModelState u1 = RandomModel(rng);
  ModelState u2 = RandomModel(rng);
  ModelState u3 = RandomModel(rng);
  u1.mutable_tensor(2).mutable_int64s()[0] = int64_t{1} << 50;  // Big max.
  u3.mutable_tensor(2).mutable_int64s()[0] = 3;

  WeightedMeanAccumulator acc(ZeroModel());
  ASSERT_TRUE(acc.Add(u1, 100).ok());
  ASSERT_TRUE(acc.Add(u2, 7).ok());
  acc.Reset();
  EXPECT_EQ(acc.num_updates(), 0);
  EXPECT_EQ(acc.total_weight(), 0.0);
  EXPECT_EQ(acc.Mean().status().code(), absl::StatusCode::kFailedPrecondition);

  ASSERT_TRUE(acc.Add(u3, 2).ok());
  EXPECT_EQ(acc.num_updates(), 1);
  EXPECT_EQ(acc.total_weight(), 2.0);
  absl::StatusOr<ModelState> mean = acc.Mean();
  ASSERT_TRUE(mean.ok()) << mean.status();
  ExpectIdentical(*mean, u3);  // Nothing of u1 or u2 left, counter included.

  // Still refuses other schemas after Reset.
  ModelState other;
  other.Add(Floats("w", {1}, {1}));
  EXPECT_EQ(acc.Add(other, 1).code(), absl::StatusCode::kInvalidArgument);
}

// Reset does not sweep the sums: the next round's first fold overwrites
// them. Rounds after a Reset, whatever folded them (updates, a refused
// update, a secure-aggregation sum), equal a fresh accumulator's.
TEST(WeightedMeanAccumulatorTest, RoundsAfterReset_EqualFreshAccumulators) {
  std::mt19937_64 rng(29);
  ModelState u1 = RandomModel(rng);
  ModelState u2 = RandomModel(rng);
  ModelState u3 = RandomModel(rng);
  ModelState sum = RandomModel(rng);
  WeightedMeanAccumulator acc(ZeroModel());
  ASSERT_TRUE(acc.Add(u1, 100).ok());
  ASSERT_TRUE(acc.Add(u2, 7).ok());
  acc.Reset();

  // A refused update is the first one after the Reset: nothing changes.
  ModelState bad = u3.Clone();
  bad.mutable_tensor(0).mutable_floats()[0] = std::nanf("");
  ASSERT_EQ(acc.Add(bad, 1).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(acc.Add(u3, 2).ok());
  ASSERT_TRUE(acc.Add(u1, 5).ok());
  WeightedMeanAccumulator fresh(ZeroModel());
  ASSERT_TRUE(fresh.Add(u3, 2).ok());
  ASSERT_TRUE(fresh.Add(u1, 5).ok());
  ExpectIdentical(acc.Mean().value(), fresh.Mean().value());
  ExpectIdentical(acc.MeanPlus(u2, 0.5).value(),
                  fresh.MeanPlus(u2, 0.5).value());

  // A round whose first fold is a weighted sum, then an update.
  acc.Reset();
  ASSERT_TRUE(acc.AddWeightedSum(sum, 9, 3).ok());
  ASSERT_TRUE(acc.Add(u2, 4).ok());
  WeightedMeanAccumulator fresh_sum(ZeroModel());
  ASSERT_TRUE(fresh_sum.AddWeightedSum(sum, 9, 3).ok());
  ASSERT_TRUE(fresh_sum.Add(u2, 4).ok());
  EXPECT_EQ(acc.num_updates(), 4);
  ExpectIdentical(acc.Mean().value(), fresh_sum.Mean().value());
}

TEST(WeightedMeanAccumulatorTest, MoveKeepsState) {
  std::mt19937_64 rng(17);
  ModelState u = RandomModel(rng);
  WeightedMeanAccumulator acc(ZeroModel());
  ASSERT_TRUE(acc.Add(u, 4).ok());
  WeightedMeanAccumulator moved = std::move(acc);
  EXPECT_EQ(moved.num_updates(), 1);
  EXPECT_EQ(moved.total_weight(), 4.0);
  ExpectIdentical(moved.Mean().value(), u);
}

TEST(WeightedMeanAccumulatorTest,
     ThousandUpdatesOfOneMegabyteModel_MemoryStaysFlat) {
  // 1 MiB of float32 in three tensors, plus a counter.
  ModelState schema;
  schema.Add(Zeros("a", DType::kFloat32, {512, 256}));  // 512 KiB
  schema.Add(Zeros("b", DType::kFloat32, {256, 256}));  // 256 KiB
  schema.Add(Zeros("c", DType::kFloat32, {64, 1024}));  // 256 KiB
  schema.Add(Zeros("n", DType::kInt64, {1}));
  ASSERT_EQ(schema.NumBytes(), (size_t{1} << 20) + 8);

  // Two alternating updates: x (all 1) and y (all 3).
  ModelState x = schema.Clone();
  ModelState y = schema.Clone();
  for (size_t i = 0; i < 3; ++i) {
    for (float& v : x.mutable_tensor(i).mutable_floats()) v = 1.0f;
    for (float& v : y.mutable_tensor(i).mutable_floats()) v = 3.0f;
  }

  WeightedMeanAccumulator acc(schema);
  ASSERT_TRUE(acc.Add(x, 1).ok());
  const int64_t rss_before = ResidentBytes();
  ASSERT_GT(rss_before, 0);
  constexpr int kUpdates = 1000;
  for (int u = 1; u < kUpdates; ++u) {
    ModelState& update = (u % 2 == 0) ? x : y;
    update.mutable_tensor(3).mutable_int64s()[0] = u;
    ASSERT_TRUE(acc.Add(update, 1).ok()) << "update " << u;
  }
  const int64_t rss_after = ResidentBytes();
  EXPECT_LT(rss_after - rss_before, int64_t{20} << 20)
      << "RSS grew from " << rss_before << " to " << rss_after << " bytes";

  EXPECT_EQ(acc.num_updates(), kUpdates);
  absl::StatusOr<ModelState> mean = acc.Mean();
  ASSERT_TRUE(mean.ok()) << mean.status();
  // 500 ones and 500 threes.
  for (size_t i = 0; i < 3; ++i) {
    for (float v : mean->tensor(i).floats()) ASSERT_EQ(v, 2.0f);
  }
  EXPECT_THAT(mean->tensor(3).int64s(), ElementsAre(kUpdates - 1));
}

}  // namespace
}  // namespace fedge
