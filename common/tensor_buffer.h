// Named tensor buffers: the core's own tensor type (no LibTorch), used by
// aggregation, codecs, checkpoints and the wire protocol.
//
// A TensorBuffer owns one contiguous, row-major block of elements with a name,
// a dtype and a shape. A ModelState is an ordered list of them (parameters and
// buffers of one model). Both are move-only: copies of a model are explicit
// (Clone()). Not thread-safe; hand them between threads by moving.
#ifndef FEDGE_COMMON_TENSOR_BUFFER_H_
#define FEDGE_COMMON_TENSOR_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace fedge {

// Element type. Values are stable: they appear in files and on the wire.
enum class DType : uint8_t {
  kFloat32 = 1,  // Parameters and running statistics; weighted-mean.
  kInt64 = 2,    // Counters (e.g. BatchNorm's num_batches_tracked); max.
};

// Bytes per element of `dtype`.
size_t DTypeSize(DType dtype);
// "float32" or "int64".
const char* DTypeName(DType dtype);
// True when `value` is the number of a known DType.
bool IsValidDType(int value);

// Hard limits on what a TensorBuffer may describe, checked before any
// allocation so that untrusted sizes cannot exhaust memory.
inline constexpr int kMaxTensorRank = 8;
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 31;  // 8 GiB fp32

// Number of elements of `shape`, or INVALID_ARGUMENT when a dimension is
// negative, the rank exceeds kMaxTensorRank or the count exceeds
// kMaxTensorElements.
absl::StatusOr<int64_t> CheckedNumElements(absl::Span<const int64_t> shape);

class TensorBuffer {
 public:
  // A zero-filled tensor. INVALID_ARGUMENT for an empty name or a bad shape.
  static absl::StatusOr<TensorBuffer> Zeros(std::string name, DType dtype,
                                            std::vector<int64_t> shape);
  // Like Zeros, but the contents are left uninitialized: for buffers that
  // are about to be overwritten whole (decoding, copies), saving a pass.
  static absl::StatusOr<TensorBuffer> Uninitialized(std::string name,
                                                    DType dtype,
                                                    std::vector<int64_t> shape);
  // A float32 tensor holding `values`; INVALID_ARGUMENT when the shape's
  // element count differs from values.size().
  static absl::StatusOr<TensorBuffer> FromFloats(
      std::string name, std::vector<int64_t> shape,
      absl::Span<const float> values);

  TensorBuffer() = default;
  TensorBuffer(TensorBuffer&&) = default;
  TensorBuffer& operator=(TensorBuffer&&) = default;
  TensorBuffer(const TensorBuffer&) = delete;
  TensorBuffer& operator=(const TensorBuffer&) = delete;

  // A deep copy.
  TensorBuffer Clone() const;

  const std::string& name() const { return name_; }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t num_elements() const { return num_elements_; }
  size_t num_bytes() const { return num_bytes_; }

  // Raw bytes (host byte order), num_bytes() long.
  const uint8_t* data() const { return bytes_.get(); }
  uint8_t* mutable_data() {
    known_finite_ = false;
    return bytes_.get();
  }

  // True when every float32 value was found finite by whoever wrote them
  // (the model decoder checks the values it copies in, while they are in
  // cache): CheckFinite does not read them again. Any mutable access clears
  // it; Clone keeps it.
  bool known_finite() const { return known_finite_; }
  void set_known_finite() { known_finite_ = true; }

  // Typed views; the dtype must match (checked: a mismatch is a bug).
  absl::Span<const float> floats() const;
  absl::Span<float> mutable_floats();
  absl::Span<const int64_t> int64s() const;
  absl::Span<int64_t> mutable_int64s();

  // "name float32[200,784]".
  std::string DebugString() const;

 private:
  std::string name_;
  DType dtype_ = DType::kFloat32;
  std::vector<int64_t> shape_;
  int64_t num_elements_ = 0;
  size_t num_bytes_ = 0;
  std::unique_ptr<uint8_t[]> bytes_;
  bool known_finite_ = false;
};

// The largest |x| of `count` float32 values at `data` (any alignment), as
// IEEE bits: at least 0x7f800000 when one of them is infinite or NaN. No
// branch per element (the compiler vectorizes it).
uint32_t MaxAbsFloatBits(const void* data, size_t count);

// The sum of x[i]^2 over `count` floats, in double: eight interleaved
// partial sums (element i goes to sum i % 8), added at the end, so that it
// vectorizes; the same result on every machine.
double SumOfSquares(const float* x, size_t count);

// An ordered list of named tensors: one model's parameters and buffers, or an
// update (delta) shaped like them.
class ModelState {
 public:
  ModelState() = default;
  explicit ModelState(std::vector<TensorBuffer> tensors)
      : tensors_(std::move(tensors)) {}
  ModelState(ModelState&&) = default;
  ModelState& operator=(ModelState&&) = default;
  ModelState(const ModelState&) = delete;
  ModelState& operator=(const ModelState&) = delete;

  ModelState Clone() const;

  const std::vector<TensorBuffer>& tensors() const { return tensors_; }
  std::vector<TensorBuffer>& mutable_tensors() { return tensors_; }
  size_t size() const { return tensors_.size(); }
  const TensorBuffer& tensor(size_t i) const { return tensors_[i]; }
  TensorBuffer& mutable_tensor(size_t i) { return tensors_[i]; }
  void Add(TensorBuffer t) { tensors_.push_back(std::move(t)); }

  // The tensor called `name`, or nullptr.
  const TensorBuffer* Find(absl::string_view name) const;

  // Sum of num_elements() / num_bytes() over all tensors.
  int64_t NumElements() const;
  size_t NumBytes() const;

 private:
  std::vector<TensorBuffer> tensors_;
};

// What a tensor is, without its values.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
};
using ModelSchema = std::vector<TensorSpec>;

// The specs of `state`'s tensors, in order.
ModelSchema SchemaOf(const ModelState& state);

// OK when `candidate` matches `schema`: same count, and at each position the
// same name, dtype and shape. Otherwise INVALID_ARGUMENT naming the first
// difference.
absl::Status CheckSchema(const ModelSchema& schema,
                         const ModelState& candidate);

// OK when `candidate` has the same tensors as `reference`: same count, and at
// each position the same name, dtype and shape. Otherwise INVALID_ARGUMENT
// naming the first difference.
absl::Status CheckSameSchema(const ModelState& reference,
                             const ModelState& candidate);

// OK when every float32 element of `state` is finite; otherwise
// INVALID_ARGUMENT naming the tensor and the element index.
absl::Status CheckFinite(const ModelState& state);

// out = a - b, elementwise (float32: difference; int64: a's value). The two
// must share a schema (checked; INVALID_ARGUMENT otherwise).
absl::StatusOr<ModelState> Subtract(const ModelState& a, const ModelState& b);

// a += scale * delta for float32 tensors; int64 tensors take delta's value.
// INVALID_ARGUMENT (a unchanged) when the schemas differ.
absl::Status AddScaledInPlace(ModelState& a, const ModelState& delta,
                              float scale);

}  // namespace fedge

#endif  // FEDGE_COMMON_TENSOR_BUFFER_H_
