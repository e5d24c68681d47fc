#include "common/tensor_buffer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/vectorize.h"

namespace fedge {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 4;
    case DType::kInt64:
      return 8;
  }
  FEDGE_LOG(FATAL) << "bad dtype " << static_cast<int>(dtype);
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kInt64:
      return "int64";
  }
  return "invalid";
}

bool IsValidDType(int value) {
  return value == static_cast<int>(DType::kFloat32) ||
         value == static_cast<int>(DType::kInt64);
}

absl::StatusOr<int64_t> CheckedNumElements(absl::Span<const int64_t> shape) {
  if (shape.size() > static_cast<size_t>(kMaxTensorRank)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor rank ", shape.size(),
                                                   " exceeds the limit of ",
                                                   kMaxTensorRank));
  }
  bool has_zero = false;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("negative dimension ", d, " in shape [",
                       absl::StrJoin(shape, ","), "]"));
    }
    has_zero |= d == 0;
  }
  if (has_zero) return 0;
  int64_t n = 1;
  for (int64_t d : shape) {
    if (n > kMaxTensorElements / d) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape [", absl::StrJoin(shape, ","), "] exceeds the limit of ",
          kMaxTensorElements, " elements"));
    }
    n *= d;
  }
  return n;
}

absl::StatusOr<TensorBuffer> TensorBuffer::Zeros(std::string name, DType dtype,
                                                 std::vector<int64_t> shape) {
  ASSIGN_OR_RETURN(TensorBuffer t,
                   Uninitialized(std::move(name), dtype, std::move(shape)));
  if (t.num_bytes_ > 0) std::memset(t.bytes_.get(), 0, t.num_bytes_);
  return t;
}

absl::StatusOr<TensorBuffer> TensorBuffer::Uninitialized(
    std::string name, DType dtype, std::vector<int64_t> shape) {
  if (name.empty()) return absl::InvalidArgumentError("tensor name is empty");
  if (!IsValidDType(static_cast<int>(dtype))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "': unknown dtype ", static_cast<int>(dtype)));
  }
  auto n = CheckedNumElements(shape);
  if (!n.ok()) return Annotate(n.status(), absl::StrCat("tensor '", name, "'"));
  TensorBuffer t;
  t.name_ = std::move(name);
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.num_elements_ = *n;
  t.num_bytes_ = static_cast<size_t>(*n) * DTypeSize(dtype);
  t.bytes_.reset(new uint8_t[t.num_bytes_]);  // Default-init: not zeroed.
  return t;
}

absl::StatusOr<TensorBuffer> TensorBuffer::FromFloats(
    std::string name, std::vector<int64_t> shape,
    absl::Span<const float> values) {
  ASSIGN_OR_RETURN(TensorBuffer t,
                   Zeros(std::move(name), DType::kFloat32, std::move(shape)));
  if (static_cast<size_t>(t.num_elements()) != values.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", t.name(), "': shape holds ", t.num_elements(),
                     " elements but ", values.size(), " values were given"));
  }
  if (!values.empty()) {
    std::memcpy(t.bytes_.get(), values.data(), values.size() * sizeof(float));
  }
  return t;
}

TensorBuffer TensorBuffer::Clone() const {
  TensorBuffer t;
  t.name_ = name_;
  t.dtype_ = dtype_;
  t.shape_ = shape_;
  t.num_elements_ = num_elements_;
  t.num_bytes_ = num_bytes_;
  t.bytes_.reset(new uint8_t[num_bytes_]);
  if (num_bytes_ > 0) std::memcpy(t.bytes_.get(), bytes_.get(), num_bytes_);
  t.known_finite_ = known_finite_;
  return t;
}

absl::Span<const float> TensorBuffer::floats() const {
  FEDGE_CHECK(dtype_ == DType::kFloat32) << name_ << " is not float32";
  return {reinterpret_cast<const float*>(bytes_.get()),
          static_cast<size_t>(num_elements_)};
}

absl::Span<float> TensorBuffer::mutable_floats() {
  FEDGE_CHECK(dtype_ == DType::kFloat32) << name_ << " is not float32";
  known_finite_ = false;
  return {reinterpret_cast<float*>(bytes_.get()),
          static_cast<size_t>(num_elements_)};
}

absl::Span<const int64_t> TensorBuffer::int64s() const {
  FEDGE_CHECK(dtype_ == DType::kInt64) << name_ << " is not int64";
  return {reinterpret_cast<const int64_t*>(bytes_.get()),
          static_cast<size_t>(num_elements_)};
}

absl::Span<int64_t> TensorBuffer::mutable_int64s() {
  FEDGE_CHECK(dtype_ == DType::kInt64) << name_ << " is not int64";
  return {reinterpret_cast<int64_t*>(bytes_.get()),
          static_cast<size_t>(num_elements_)};
}

std::string TensorBuffer::DebugString() const {
  return absl::StrCat(name_, " ", DTypeName(dtype_), "[",
                      absl::StrJoin(shape_, ","), "]");
}

ModelState ModelState::Clone() const {
  std::vector<TensorBuffer> copy;
  copy.reserve(tensors_.size());
  for (const TensorBuffer& t : tensors_) copy.push_back(t.Clone());
  return ModelState(std::move(copy));
}

const TensorBuffer* ModelState::Find(absl::string_view name) const {
  for (const TensorBuffer& t : tensors_) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

int64_t ModelState::NumElements() const {
  int64_t n = 0;
  for (const TensorBuffer& t : tensors_) n += t.num_elements();
  return n;
}

size_t ModelState::NumBytes() const {
  size_t n = 0;
  for (const TensorBuffer& t : tensors_) n += t.num_bytes();
  return n;
}

ModelSchema SchemaOf(const ModelState& state) {
  ModelSchema schema;
  schema.reserve(state.size());
  for (const TensorBuffer& t : state.tensors()) {
    schema.push_back({t.name(), t.dtype(), t.shape()});
  }
  return schema;
}

namespace {
std::string SpecString(const TensorSpec& s) {
  return absl::StrCat(s.name, " ", DTypeName(s.dtype), "[",
                      absl::StrJoin(s.shape, ","), "]");
}
}  // namespace

absl::Status CheckSchema(const ModelSchema& schema,
                         const ModelState& candidate) {
  if (schema.size() != candidate.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected ", schema.size(), " tensors, got ", candidate.size()));
  }
  for (size_t i = 0; i < schema.size(); ++i) {
    const TensorSpec& want = schema[i];
    const TensorBuffer& got = candidate.tensor(i);
    if (want.name != got.name() || want.dtype != got.dtype() ||
        want.shape != got.shape()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor #", i, ": expected ", SpecString(want), ", got ",
                       got.DebugString()));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSameSchema(const ModelState& reference,
                             const ModelState& candidate) {
  return CheckSchema(SchemaOf(reference), candidate);
}

namespace {

constexpr uint32_t kInfBits = 0x7f800000u;

// Index of the first value of `v` that is not finite, v.size() when all
// are. Blocks are scanned without a branch per element: every update is
// checked, at memory speed.
size_t FirstNonFinite(absl::Span<const float> v) {
  constexpr size_t kBlock = 4096;
  for (size_t start = 0; start < v.size(); start += kBlock) {
    const size_t end = std::min(v.size(), start + kBlock);
    if (MaxAbsFloatBits(&v[start], end - start) < kInfBits) continue;
    for (size_t i = start; i < end; ++i) {
      if (!std::isfinite(v[i])) return i;
    }
  }
  return v.size();
}

}  // namespace

// Signed compares of the masked bits (which are non-negative): SSE2 has
// them, not unsigned ones.
FEDGE_VECTOR_CLONES
uint32_t MaxAbsFloatBits(const void* data, size_t count) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  int32_t most = 0;
  for (size_t i = 0; i < count; ++i) {
    int32_t bits;
    std::memcpy(&bits, bytes + 4 * i, sizeof(bits));
    bits &= 0x7fffffff;
    most = bits > most ? bits : most;
  }
  return static_cast<uint32_t>(most);
}

FEDGE_VECTOR_CLONES
double SumOfSquares(const float* x, size_t count) {
  constexpr size_t kLanes = 8;
  double sums[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
    for (size_t k = 0; k < kLanes; ++k) {
      sums[k] += static_cast<double>(x[i + k]) * x[i + k];
    }
  }
  for (size_t k = 0; i + k < count; ++k) {
    sums[k] += static_cast<double>(x[i + k]) * x[i + k];
  }
  double total = 0;
  for (double s : sums) total += s;
  return total;
}

absl::Status CheckFinite(const ModelState& state) {
  for (const TensorBuffer& t : state.tensors()) {
    if (t.dtype() != DType::kFloat32 || t.known_finite()) continue;
    absl::Span<const float> v = t.floats();
    const size_t i = FirstNonFinite(v);
    if (i < v.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", t.name(), "' element ", i, " is ", v[i],
                       "; all values must be finite"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelState> Subtract(const ModelState& a, const ModelState& b) {
  RETURN_IF_ERROR(CheckSameSchema(a, b));
  ModelState out = a.Clone();
  for (size_t i = 0; i < out.size(); ++i) {
    TensorBuffer& t = out.mutable_tensor(i);
    if (t.dtype() != DType::kFloat32) continue;
    absl::Span<float> o = t.mutable_floats();
    absl::Span<const float> bv = b.tensor(i).floats();
    for (size_t j = 0; j < o.size(); ++j) o[j] -= bv[j];
  }
  return out;
}

absl::Status AddScaledInPlace(ModelState& a, const ModelState& delta,
                              float scale) {
  RETURN_IF_ERROR(CheckSameSchema(a, delta));
  for (size_t i = 0; i < a.size(); ++i) {
    TensorBuffer& t = a.mutable_tensor(i);
    const TensorBuffer& d = delta.tensor(i);
    if (t.dtype() == DType::kFloat32) {
      absl::Span<float> o = t.mutable_floats();
      absl::Span<const float> dv = d.floats();
      for (size_t j = 0; j < o.size(); ++j) o[j] += scale * dv[j];
    } else if (t.num_bytes() > 0) {
      std::memcpy(t.mutable_data(), d.data(), t.num_bytes());
    }
  }
  return absl::OkStatus();
}

}  // namespace fedge
