#include "common/tensor_buffer.h"

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

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

TensorBuffer Floats(std::string name, std::vector<int64_t> shape,
                    std::vector<float> values) {
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::FromFloats(std::move(name), std::move(shape), values);
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(t).value();
}

TensorBuffer Int64s(std::string name, std::vector<int64_t> shape,
                    std::vector<int64_t> values) {
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::Zeros(std::move(name), DType::kInt64, std::move(shape));
  EXPECT_TRUE(t.ok()) << t.status();
  absl::Span<int64_t> v = t->mutable_int64s();
  EXPECT_EQ(v.size(), values.size());
  for (size_t i = 0; i < v.size() && i < values.size(); ++i) v[i] = values[i];
  return std::move(t).value();
}

// w: float32[2,2], b: float32[3], n: int64[] (a counter).
ModelState SmallModel(float w0, float b0, int64_t n) {
  ModelState m;
  m.Add(Floats("w", {2, 2}, {w0, w0 + 1, w0 + 2, w0 + 3}));
  m.Add(Floats("b", {3}, {b0, -b0, 2 * b0}));
  m.Add(Int64s("n", {}, {n}));
  return m;
}

std::vector<float> ToVector(absl::Span<const float> s) {
  return std::vector<float>(s.begin(), s.end());
}

// ---------------------------------------------------------------------------
// DType helpers and CheckedNumElements.

TEST(DTypeTest, SizesNamesAndValidity) {
  EXPECT_EQ(DTypeSize(DType::kFloat32), 4u);
  EXPECT_EQ(DTypeSize(DType::kInt64), 8u);
  EXPECT_STREQ(DTypeName(DType::kFloat32), "float32");
  EXPECT_STREQ(DTypeName(DType::kInt64), "int64");
  EXPECT_TRUE(IsValidDType(1));
  EXPECT_TRUE(IsValidDType(2));
  EXPECT_FALSE(IsValidDType(0));
  EXPECT_FALSE(IsValidDType(3));
  EXPECT_FALSE(IsValidDType(-1));
}

TEST(CheckedNumElementsTest, ValidShapes) {
  EXPECT_EQ(CheckedNumElements({}).value(), 1);  // A scalar.
  EXPECT_EQ(CheckedNumElements({0}).value(), 0);
  EXPECT_EQ(CheckedNumElements({3, 0, 5}).value(), 0);
  EXPECT_EQ(CheckedNumElements({200, 784}).value(), 200 * 784);
  EXPECT_EQ(CheckedNumElements({1, 1, 1, 1, 1, 1, 1, 2}).value(), 2);
}

TEST(CheckedNumElementsTest, ExactlyAtElementLimit_IsOk) {
  EXPECT_EQ(CheckedNumElements({kMaxTensorElements}).value(),
            kMaxTensorElements);
  EXPECT_EQ(CheckedNumElements({int64_t{1} << 16, int64_t{1} << 15}).value(),
            kMaxTensorElements);
}

TEST(CheckedNumElementsTest, OverElementLimit_IsInvalidArgument) {
  for (const std::vector<int64_t>& shape : std::vector<std::vector<int64_t>>{
           {kMaxTensorElements + 1},
           {int64_t{1} << 16, int64_t{1} << 15, 2},
           {int64_t{1} << 40, int64_t{1} << 40},  // Would overflow int64.
           {kInt64Max, kInt64Max},
           {kInt64Max},
           {3, kInt64Max / 2},
       }) {
    absl::StatusOr<int64_t> n = CheckedNumElements(shape);
    EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument)
        << "shape[0]=" << shape[0];
    EXPECT_THAT(std::string(n.status().message()), HasSubstr("limit"));
  }
}

TEST(CheckedNumElementsTest, NegativeDimension_IsInvalidArgument) {
  absl::StatusOr<int64_t> n = CheckedNumElements({4, -1});
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(n.status().message()), HasSubstr("negative"));
  EXPECT_EQ(
      CheckedNumElements({std::numeric_limits<int64_t>::min()}).status().code(),
      absl::StatusCode::kInvalidArgument);
  // A zero dimension does not hide a negative one.
  EXPECT_EQ(CheckedNumElements({0, -3}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A shape with a zero dimension holds no elements; whether it is accepted
// must not depend on where the zero is.
TEST(CheckedNumElementsTest, ZeroDimension_ResultDoesNotDependOnOrder) {
  const int64_t big = kMaxTensorElements + 1;
  absl::StatusOr<int64_t> zero_first = CheckedNumElements({0, big});
  absl::StatusOr<int64_t> zero_last = CheckedNumElements({big, 0});
  EXPECT_EQ(zero_first.status().code(), zero_last.status().code())
      << "[0," << big << "]: " << zero_first.status() << " vs [" << big
      << ",0]: " << zero_last.status();
}

TEST(CheckedNumElementsTest, RankLimit) {
  EXPECT_TRUE(CheckedNumElements(std::vector<int64_t>(kMaxTensorRank, 1)).ok());
  absl::StatusOr<int64_t> n =
      CheckedNumElements(std::vector<int64_t>(kMaxTensorRank + 1, 1));
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(n.status().message()), HasSubstr("rank"));
}

// ---------------------------------------------------------------------------
// TensorBuffer construction.

TEST(TensorBufferTest, Zeros_Float32) {
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::Zeros("fc1.weight", DType::kFloat32, {200, 784});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->name(), "fc1.weight");
  EXPECT_EQ(t->dtype(), DType::kFloat32);
  EXPECT_THAT(t->shape(), ElementsAre(200, 784));
  EXPECT_EQ(t->num_elements(), 200 * 784);
  EXPECT_EQ(t->num_bytes(), 200u * 784u * 4u);
  for (float v : t->floats()) ASSERT_EQ(v, 0.0f);
  EXPECT_EQ(t->DebugString(), "fc1.weight float32[200,784]");
}

TEST(TensorBufferTest, Zeros_Int64Scalar) {
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::Zeros("bn.num_batches_tracked", DType::kInt64, {});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->num_elements(), 1);
  EXPECT_EQ(t->num_bytes(), 8u);
  EXPECT_THAT(t->int64s(), ElementsAre(0));
  EXPECT_EQ(t->DebugString(), "bn.num_batches_tracked int64[]");
}

TEST(TensorBufferTest, Zeros_EmptyTensor) {
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::Zeros("empty", DType::kFloat32, {0, 7});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->num_elements(), 0);
  EXPECT_EQ(t->num_bytes(), 0u);
  EXPECT_TRUE(t->floats().empty());
}

TEST(TensorBufferTest, Zeros_EmptyName_IsInvalidArgument) {
  EXPECT_EQ(TensorBuffer::Zeros("", DType::kFloat32, {2}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TensorBufferTest, Zeros_UnknownDType_IsInvalidArgument) {
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::Zeros("x", static_cast<DType>(7), {2});
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("dtype"));
}

TEST(TensorBufferTest, Zeros_NegativeDim_IsInvalidArgumentNamingTensor) {
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::Zeros("conv.weight", DType::kFloat32, {3, -2});
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("conv.weight"));
}

TEST(TensorBufferTest, Zeros_RankOverLimit_IsInvalidArgument) {
  EXPECT_TRUE(TensorBuffer::Zeros("r8", DType::kFloat32,
                                  std::vector<int64_t>(kMaxTensorRank, 1))
                  .ok());
  absl::StatusOr<TensorBuffer> t = TensorBuffer::Zeros(
      "r9", DType::kFloat32, std::vector<int64_t>(kMaxTensorRank + 1, 1));
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("r9"));
}

TEST(TensorBufferTest, Zeros_TooManyElements_FailsWithoutAllocating) {
  const int64_t rss_before = ResidentBytes();
  for (DType dtype : {DType::kFloat32, DType::kInt64}) {
    for (const std::vector<int64_t>& shape : std::vector<std::vector<int64_t>>{
             {kMaxTensorElements + 1},
             {int64_t{1} << 20, int64_t{1} << 20},
             {kInt64Max, 2},
             {65536, 65536, 65536},
         }) {
      absl::StatusOr<TensorBuffer> t =
          TensorBuffer::Zeros("huge", dtype, shape);
      EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(t.status().message()), HasSubstr("huge"));
    }
  }
  const std::vector<float> few(4, 1.0f);
  EXPECT_EQ(TensorBuffer::FromFloats("huge", {kMaxTensorElements + 1}, few)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  const int64_t rss_after = ResidentBytes();
  ASSERT_GT(rss_before, 0);
  EXPECT_LT(rss_after - rss_before, int64_t{64} << 20);
}

TEST(TensorBufferTest, FromFloats_CopiesValues) {
  std::vector<float> values = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f};
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::FromFloats("w", {2, 3}, values);
  ASSERT_TRUE(t.ok()) << t.status();
  values[0] = 99.0f;  // The buffer owns its own copy.
  EXPECT_THAT(t->floats(), ElementsAre(1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f));
  EXPECT_EQ(t->dtype(), DType::kFloat32);
  EXPECT_EQ(t->num_bytes(), 24u);
}

TEST(TensorBufferTest, FromFloats_EmptyShapeZeroValues) {
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::FromFloats("e", {0}, absl::Span<const float>());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->num_elements(), 0);
}

TEST(TensorBufferTest, FromFloats_CountMismatch_IsInvalidArgument) {
  const std::vector<float> values = {1, 2, 3, 4, 5};
  absl::StatusOr<TensorBuffer> t =
      TensorBuffer::FromFloats("w", {2, 3}, values);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("'w'"));
  EXPECT_EQ(TensorBuffer::FromFloats("w", {}, absl::Span<const float>())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);  // A scalar needs one value.
}

TEST(TensorBufferTest, FromFloats_BadNameOrShape_IsInvalidArgument) {
  const std::vector<float> values = {1, 2};
  EXPECT_EQ(TensorBuffer::FromFloats("", {2}, values).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TensorBuffer::FromFloats("w", {-2}, values).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TensorBuffer::FromFloats("w", std::vector<int64_t>(9, 1), values)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// Copies, moves and views.

TEST(TensorBufferTest, Clone_IsDeepCopy) {
  TensorBuffer a = Floats("w", {3}, {1, 2, 3});
  TensorBuffer b = a.Clone();
  EXPECT_EQ(b.name(), "w");
  EXPECT_EQ(b.dtype(), DType::kFloat32);
  EXPECT_EQ(b.shape(), a.shape());
  EXPECT_EQ(b.num_elements(), 3);
  EXPECT_NE(b.data(), a.data());
  b.mutable_floats()[0] = 100.0f;
  EXPECT_THAT(a.floats(), ElementsAre(1, 2, 3));
  EXPECT_THAT(b.floats(), ElementsAre(100, 2, 3));
}

TEST(TensorBufferTest, Move_TransfersStorage) {
  TensorBuffer a = Floats("w", {1024}, std::vector<float>(1024, 2.0f));
  const uint8_t* storage = a.data();
  TensorBuffer b = std::move(a);
  EXPECT_EQ(b.data(), storage);
  EXPECT_EQ(b.num_elements(), 1024);
  EXPECT_EQ(b.floats()[1023], 2.0f);
}

TEST(TensorBufferTest, TypedViews_AliasTheRawBytes) {
  TensorBuffer f = Floats("f", {2}, {0, 0});
  f.mutable_floats()[1] = 3.5f;
  float raw;
  std::memcpy(&raw, f.data() + sizeof(float), sizeof(float));
  EXPECT_EQ(raw, 3.5f);
  EXPECT_EQ(static_cast<const void*>(f.floats().data()),
            static_cast<const void*>(f.data()));

  TensorBuffer n = Int64s("n", {3}, {1, 2, 3});
  n.mutable_int64s()[2] = int64_t{1} << 40;
  EXPECT_THAT(n.int64s(), ElementsAre(1, 2, int64_t{1} << 40));
  int64_t raw64;
  std::memcpy(&raw64, n.data() + 2 * sizeof(int64_t), sizeof(int64_t));
  EXPECT_EQ(raw64, int64_t{1} << 40);

  float via_bytes = 6.0f;
  std::memcpy(f.mutable_data(), &via_bytes, sizeof(float));
  EXPECT_EQ(f.floats()[0], 6.0f);
}

TEST(TensorBufferDeathTest, TypedViewOfWrongDType_Crashes) {
  TensorBuffer f = Floats("f", {2}, {1, 2});
  TensorBuffer n = Int64s("n", {2}, {1, 2});
  EXPECT_DEATH((void)f.int64s(), "not int64");
  EXPECT_DEATH((void)f.mutable_int64s(), "not int64");
  EXPECT_DEATH((void)n.floats(), "not float32");
  EXPECT_DEATH((void)n.mutable_floats(), "not float32");
}

// ---------------------------------------------------------------------------
// ModelState.

TEST(ModelStateTest, AccessorsAndTotals) {
  ModelState m = SmallModel(1, 2, 5);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m.tensor(0).name(), "w");
  EXPECT_EQ(m.tensor(2).name(), "n");
  EXPECT_EQ(m.NumElements(), 4 + 3 + 1);
  EXPECT_EQ(m.NumBytes(), 4u * 4u + 3u * 4u + 8u);
  ASSERT_NE(m.Find("b"), nullptr);
  EXPECT_EQ(m.Find("b"), &m.tensor(1));
  EXPECT_EQ(m.Find("missing"), nullptr);
  EXPECT_EQ(m.Find(""), nullptr);
}

TEST(ModelStateTest, Clone_IsDeepCopy) {
  ModelState a = SmallModel(1, 2, 5);
  ModelState b = a.Clone();
  ASSERT_TRUE(CheckSameSchema(a, b).ok());
  b.mutable_tensor(0).mutable_floats()[0] = -7.0f;
  b.mutable_tensor(2).mutable_int64s()[0] = 99;
  EXPECT_EQ(a.tensor(0).floats()[0], 1.0f);
  EXPECT_EQ(a.tensor(2).int64s()[0], 5);
  EXPECT_EQ(b.tensor(0).floats()[0], -7.0f);
  EXPECT_EQ(b.tensor(2).int64s()[0], 99);
}

TEST(ModelStateTest, SchemaOf_ListsSpecsInOrder) {
  ModelSchema s = SchemaOf(SmallModel(0, 0, 0));
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].name, "w");
  EXPECT_EQ(s[0].dtype, DType::kFloat32);
  EXPECT_THAT(s[0].shape, ElementsAre(2, 2));
  EXPECT_EQ(s[1].name, "b");
  EXPECT_THAT(s[1].shape, ElementsAre(3));
  EXPECT_EQ(s[2].name, "n");
  EXPECT_EQ(s[2].dtype, DType::kInt64);
  EXPECT_TRUE(s[2].shape.empty());
}

// ---------------------------------------------------------------------------
// Schema checks.

TEST(CheckSchemaTest, SameSchemaDifferentValues_IsOk) {
  EXPECT_TRUE(CheckSameSchema(SmallModel(1, 2, 3), SmallModel(-4, 5, 6)).ok());
  EXPECT_TRUE(
      CheckSchema(SchemaOf(SmallModel(1, 2, 3)), SmallModel(0, 0, 0)).ok());
  EXPECT_TRUE(CheckSameSchema(ModelState(), ModelState()).ok());
}

TEST(CheckSchemaTest, WrongTensorCount_IsInvalidArgument) {
  ModelState fewer;
  fewer.Add(Floats("w", {2, 2}, {0, 0, 0, 0}));
  absl::Status s = CheckSameSchema(SmallModel(0, 0, 0), fewer);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("3"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("1"));
  ModelState more = SmallModel(0, 0, 0);
  more.Add(Floats("extra", {1}, {0}));
  EXPECT_EQ(CheckSameSchema(SmallModel(0, 0, 0), more).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CheckSchemaTest, WrongName_IsInvalidArgumentNamingBoth) {
  ModelState other;
  other.Add(Floats("w", {2, 2}, {0, 0, 0, 0}));
  other.Add(Floats("bias", {3}, {0, 0, 0}));
  other.Add(Int64s("n", {}, {0}));
  absl::Status s = CheckSameSchema(SmallModel(0, 0, 0), other);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("#1"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("b float32[3]"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("bias float32[3]"));
}

TEST(CheckSchemaTest, WrongShape_IsInvalidArgument) {
  ModelState other;
  other.Add(Floats("w", {4}, {0, 0, 0, 0}));  // Same element count.
  other.Add(Floats("b", {3}, {0, 0, 0}));
  other.Add(Int64s("n", {}, {0}));
  absl::Status s = CheckSameSchema(SmallModel(0, 0, 0), other);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("float32[2,2]"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("float32[4]"));
}

TEST(CheckSchemaTest, WrongDType_IsInvalidArgument) {
  ModelState other;
  other.Add(Floats("w", {2, 2}, {0, 0, 0, 0}));
  other.Add(Floats("b", {3}, {0, 0, 0}));
  other.Add(Floats("n", {}, {0}));  // float32 instead of int64.
  absl::Status s = CheckSameSchema(SmallModel(0, 0, 0), other);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("int64"));
}

TEST(CheckSchemaTest, WrongOrder_IsInvalidArgument) {
  ModelState other;
  other.Add(Floats("b", {3}, {0, 0, 0}));
  other.Add(Floats("w", {2, 2}, {0, 0, 0, 0}));
  other.Add(Int64s("n", {}, {0}));
  EXPECT_EQ(CheckSameSchema(SmallModel(0, 0, 0), other).code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// CheckFinite.

TEST(CheckFiniteTest, FiniteValues_IsOk) {
  ModelState m =
      SmallModel(1e30f, -1e-30f, std::numeric_limits<int64_t>::min());
  EXPECT_TRUE(CheckFinite(m).ok());
  EXPECT_TRUE(CheckFinite(ModelState()).ok());
}

TEST(CheckFiniteTest, NaN_IsInvalidArgumentNamingTensorAndIndex) {
  ModelState m = SmallModel(1, 2, 3);
  m.mutable_tensor(1).mutable_floats()[2] = std::nanf("");
  absl::Status s = CheckFinite(m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("'b'"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("element 2"));
}

TEST(CheckFiniteTest, Infinity_IsInvalidArgumentNamingTensor) {
  for (float bad : {std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    ModelState m = SmallModel(1, 2, 3);
    m.mutable_tensor(0).mutable_floats()[3] = bad;
    absl::Status s = CheckFinite(m);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr("'w'"));
    EXPECT_THAT(std::string(s.message()), HasSubstr("element 3"));
  }
}

// ---------------------------------------------------------------------------
// Subtract and AddScaledInPlace.

TEST(SubtractTest, FloatsDifferInt64sTakeFirst) {
  ModelState a = SmallModel(10, 4, 7);
  ModelState b = SmallModel(1, 1, 3);
  absl::StatusOr<ModelState> d = Subtract(a, b);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE(CheckSameSchema(a, *d).ok());
  EXPECT_THAT(d->tensor(0).floats(), ElementsAre(9, 9, 9, 9));
  EXPECT_THAT(d->tensor(1).floats(), ElementsAre(3, -3, 6));
  EXPECT_THAT(d->tensor(2).int64s(), ElementsAre(7));
  // Inputs unchanged.
  EXPECT_THAT(a.tensor(0).floats(), ElementsAre(10, 11, 12, 13));
  EXPECT_THAT(b.tensor(0).floats(), ElementsAre(1, 2, 3, 4));
}

TEST(SubtractTest, SchemaMismatch_IsInvalidArgument) {
  ModelState a = SmallModel(0, 0, 0);
  ModelState b;
  b.Add(Floats("w", {2, 2}, {0, 0, 0, 0}));
  EXPECT_EQ(Subtract(a, b).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Subtract(b, a).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AddScaledInPlaceTest, FloatsScaledInt64sTakeDelta) {
  ModelState a = SmallModel(1, 2, 5);
  ModelState delta = SmallModel(2, 1, 9);
  ASSERT_TRUE(AddScaledInPlace(a, delta, 0.5f).ok());
  // w: [1,2,3,4] + 0.5*[2,3,4,5]; b: [2,-2,4] + 0.5*[1,-1,2].
  EXPECT_THAT(a.tensor(0).floats(), ElementsAre(2, 3.5, 5, 6.5));
  EXPECT_THAT(a.tensor(1).floats(), ElementsAre(2.5, -2.5, 5));
  EXPECT_THAT(a.tensor(2).int64s(), ElementsAre(9));
  EXPECT_THAT(delta.tensor(0).floats(), ElementsAre(2, 3, 4, 5));
}

TEST(AddScaledInPlaceTest, NegativeAndZeroScale) {
  ModelState a = SmallModel(1, 2, 5);
  ModelState delta = SmallModel(1, 2, 5);
  ASSERT_TRUE(AddScaledInPlace(a, delta, -1.0f).ok());
  EXPECT_THAT(a.tensor(0).floats(), ElementsAre(0, 0, 0, 0));
  EXPECT_THAT(a.tensor(1).floats(), ElementsAre(0, 0, 0));
  ModelState c = SmallModel(3, 3, 1);
  ASSERT_TRUE(AddScaledInPlace(c, SmallModel(100, 100, 2), 0.0f).ok());
  EXPECT_THAT(c.tensor(0).floats(), ElementsAre(3, 4, 5, 6));
  EXPECT_THAT(c.tensor(2).int64s(), ElementsAre(2));
}

TEST(AddScaledInPlaceTest, InvertsSubtract) {
  ModelState base = SmallModel(0.25f, -1.5f, 4);
  ModelState trained = SmallModel(0.75f, 2.0f, 11);
  absl::StatusOr<ModelState> delta = Subtract(trained, base);
  ASSERT_TRUE(delta.ok()) << delta.status();
  ASSERT_TRUE(AddScaledInPlace(base, *delta, 1.0f).ok());
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(ToVector(base.tensor(i).floats()),
              ToVector(trained.tensor(i).floats()))
        << "tensor " << i;
  }
  EXPECT_THAT(base.tensor(2).int64s(), ElementsAre(11));
}

TEST(AddScaledInPlaceTest,
     SchemaMismatch_IsInvalidArgumentAndLeavesTargetUnchanged) {
  ModelState a = SmallModel(1, 2, 5);
  ModelState wrong;
  wrong.Add(Floats("w", {2, 2}, {9, 9, 9, 9}));
  wrong.Add(Floats("b", {3}, {9, 9, 9}));
  wrong.Add(Floats("n", {}, {9}));  // Wrong dtype in the last tensor.
  absl::Status s = AddScaledInPlace(a, wrong, 1.0f);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(a.tensor(0).floats(), ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(a.tensor(1).floats(), ElementsAre(2, -2, 4));
  EXPECT_THAT(a.tensor(2).int64s(), ElementsAre(5));
}

TEST(TensorBufferTest, KnownFinite_ClearedByAnyMutableAccess_KeptByClone) {
  TensorBuffer t = *TensorBuffer::FromFloats("w", {2}, {1, 2});
  EXPECT_FALSE(t.known_finite());
  t.set_known_finite();
  EXPECT_TRUE(t.Clone().known_finite());
  t.mutable_floats()[0] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(t.known_finite());
  t.set_known_finite();
  t.mutable_data();
  EXPECT_FALSE(t.known_finite());
  ModelState m;
  m.Add(std::move(t));
  EXPECT_EQ(CheckFinite(m).code(), absl::StatusCode::kInvalidArgument);
}

TEST(TensorBufferTest, MaxAbsFloatBits_AnyAlignmentAndNonFinite) {
  const float values[] = {1.5f, -3.0f, 0.25f};
  alignas(4) uint8_t bytes[1 + sizeof(values)];
  std::memcpy(bytes + 1, values, sizeof(values));  // Misaligned.
  uint32_t three;
  const float f = 3.0f;
  std::memcpy(&three, &f, 4);
  EXPECT_EQ(MaxAbsFloatBits(bytes + 1, 3), three);
  EXPECT_EQ(MaxAbsFloatBits(bytes + 1, 0), 0u);
  const float bad[] = {1, -std::numeric_limits<float>::infinity()};
  EXPECT_GE(MaxAbsFloatBits(bad, 2), 0x7f800000u);
  const float nan[] = {std::numeric_limits<float>::quiet_NaN()};
  EXPECT_GE(MaxAbsFloatBits(nan, 1), 0x7f800000u);
}

}  // namespace
}  // namespace fedge
