// Tensors and a small model from literal values, for the core's unit tests
// (strategies, aggregation, the coordinator's round engine).
#ifndef FEDGE_TESTS_COMMON_TEST_TENSORS_H_
#define FEDGE_TESTS_COMMON_TEST_TENSORS_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor_buffer.h"
#include "gtest/gtest.h"

namespace fedge::testing {

// float32 `name` [values.size()].
inline TensorBuffer Floats(const std::string& name, std::vector<float> values) {
  absl::StatusOr<TensorBuffer> t = TensorBuffer::FromFloats(
      name, {static_cast<int64_t>(values.size())}, values);
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(t).value();
}

// int64 `name` [values.size()].
inline TensorBuffer Int64s(const std::string& name,
                           std::vector<int64_t> values) {
  absl::StatusOr<TensorBuffer> t = TensorBuffer::Zeros(
      name, DType::kInt64, {static_cast<int64_t>(values.size())});
  EXPECT_TRUE(t.ok()) << t.status();
  std::copy(values.begin(), values.end(), t->mutable_int64s().begin());
  return std::move(t).value();
}

// float32 "w" [2], an int64 counter "count" [1] (like BatchNorm's
// num_batches_tracked), float32 "b" [1].
inline ModelState Model(float w0, float w1, float b, int64_t count = 0) {
  ModelState m;
  m.Add(Floats("w", {w0, w1}));
  m.Add(Int64s("count", {count}));
  m.Add(Floats("b", {b}));
  return m;
}

}  // namespace fedge::testing

#endif  // FEDGE_TESTS_COMMON_TEST_TENSORS_H_
