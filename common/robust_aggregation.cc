#include "common/robust_aggregation.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

// Coordinates are processed in blocks whose values, across all updates, fit
// in this many bytes (well inside a core's L2 cache).
constexpr size_t kBlockBytes = 128 * 1024;

// Elements per block for `n` updates.
size_t BlockElements(size_t n) {
  return std::max<size_t>(16, kBlockBytes / (n * sizeof(float)));
}

// OK when `updates` is non-empty and every update has the first one's
// schema and finite values; INVALID_ARGUMENT naming the update otherwise.
absl::Status ValidateUpdates(absl::Span<const ModelState* const> updates) {
  if (updates.empty()) {
    return absl::InvalidArgumentError("no updates to aggregate");
  }
  for (size_t i = 0; i < updates.size(); ++i) {
    FEDGE_CHECK(updates[i] != nullptr) << "update #" << i << " is null";
  }
  const ModelSchema schema = SchemaOf(*updates[0]);
  for (size_t i = 0; i < updates.size(); ++i) {
    absl::Status status = CheckSchema(schema, *updates[i]);
    if (status.ok()) status = CheckFinite(*updates[i]);
    if (!status.ok()) return Annotate(status, absl::StrCat("update #", i));
  }
  return absl::OkStatus();
}

// A model shaped like `reference` with unspecified values.
ModelState UninitializedLike(const ModelState& reference) {
  ModelState out;
  for (const TensorBuffer& t : reference.tensors()) {
    absl::StatusOr<TensorBuffer> buffer =
        TensorBuffer::Uninitialized(t.name(), t.dtype(), t.shape());
    // The shape is valid: `t` already has it.
    FEDGE_CHECK(buffer.ok()) << buffer.status();
    out.Add(*std::move(buffer));
  }
  return out;
}

// out = element-wise maximum of tensor `index` over all updates (int64).
void MaxOfInt64(absl::Span<const ModelState* const> updates, size_t index,
                absl::Span<int64_t> out) {
  absl::Span<const int64_t> first = updates[0]->tensor(index).int64s();
  std::copy(first.begin(), first.end(), out.begin());
  for (size_t k = 1; k < updates.size(); ++k) {
    absl::Span<const int64_t> in = updates[k]->tensor(index).int64s();
    for (size_t j = 0; j < out.size(); ++j) out[j] = std::max(out[j], in[j]);
  }
}

// Batcher's odd-even merge sort network for n inputs (Knuth, TAOCP 5.3.4),
// in its form for arbitrary n: applying the comparators (a, b), a < b, in
// order, each putting the smaller value at a, sorts any n values.
std::vector<std::pair<uint32_t, uint32_t>> SortingNetwork(size_t n) {
  std::vector<std::pair<uint32_t, uint32_t>> network;
  for (size_t p = 1; p < n; p *= 2) {
    for (size_t k = p; k >= 1; k /= 2) {
      for (size_t j = k % p; j + k < n; j += 2 * k) {
        for (size_t i = 0; i < std::min(k, n - j - k); ++i) {
          if ((i + j) / (2 * p) == (i + j + k) / (2 * p)) {
            network.emplace_back(i + j, i + j + k);
          }
        }
      }
    }
  }
  return network;
}

// Sorts each column of the n x len matrix whose row r starts at
// rows + r * stride. Each comparator runs along two whole rows, so the work
// is branch-free and vectorizes across the columns (coordinates).
void SortColumns(absl::Span<const std::pair<uint32_t, uint32_t>> network,
                 float* rows, size_t stride, size_t len) {
  for (const auto& [a, b] : network) {
    float* __restrict lo = rows + a * stride;
    float* __restrict hi = rows + b * stride;
    for (size_t j = 0; j < len; ++j) {
      const float x = lo[j];
      const float y = hi[j];
      lo[j] = std::min(x, y);
      hi[j] = std::max(x, y);
    }
  }
}

// Builds the model whose float32 coordinates are computed from their n
// values sorted ascending, and whose int64 coordinates are the maxima.
// Coordinates go in blocks: each update's block is copied into one row of a
// scratch matrix (sequential reads), the columns are sorted, and
// finish(rows, stride, len, out) writes out[0, len) from the sorted rows
// (row r, holding the r-th smallest values, starts at rows + r * stride).
// `updates` must be validated.
template <typename Finish>
ModelState ReduceSortedCoordinates(absl::Span<const ModelState* const> updates,
                                   Finish finish) {
  const size_t n = updates.size();
  const size_t block = BlockElements(n);
  const std::vector<std::pair<uint32_t, uint32_t>> network = SortingNetwork(n);
  ModelState out = UninitializedLike(*updates[0]);
  std::vector<float> scratch(n * block);
  std::vector<const float*> src(n);
  for (size_t t = 0; t < out.size(); ++t) {
    TensorBuffer& tensor = out.mutable_tensor(t);
    if (tensor.dtype() != DType::kFloat32) {
      MaxOfInt64(updates, t, tensor.mutable_int64s());
      continue;
    }
    for (size_t k = 0; k < n; ++k) {
      src[k] = updates[k]->tensor(t).floats().data();
    }
    float* dst = tensor.mutable_floats().data();
    const size_t size = tensor.num_elements();
    for (size_t begin = 0; begin < size; begin += block) {
      const size_t len = std::min(block, size - begin);
      for (size_t k = 0; k < n; ++k) {
        std::memcpy(&scratch[k * block], src[k] + begin, len * sizeof(float));
      }
      SortColumns(network, scratch.data(), block, len);
      finish(scratch.data(), block, len, dst + begin);
    }
  }
  return out;
}

// Sum over j < len of (a[j] - b[j])^2 in float64, with four accumulators
// so that the additions pipeline.
double SquaredDistance(const float* a, const float* b, size_t len) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t j = 0;
  for (; j + 4 <= len; j += 4) {
    const double e0 = static_cast<double>(a[j]) - b[j];
    const double e1 = static_cast<double>(a[j + 1]) - b[j + 1];
    const double e2 = static_cast<double>(a[j + 2]) - b[j + 2];
    const double e3 = static_cast<double>(a[j + 3]) - b[j + 3];
    s0 += e0 * e0;
    s1 += e1 * e1;
    s2 += e2 * e2;
    s3 += e3 * e3;
  }
  for (; j < len; ++j) {
    const double e = static_cast<double>(a[j]) - b[j];
    s0 += e * e;
  }
  return (s0 + s1) + (s2 + s3);
}

// The n x n matrix (row-major) of squared L2 distances between the
// validated updates' float32 values. Each pair is computed once, block by
// block, so that the n updates' blocks stay in cache across the pairs.
std::vector<double> PairwiseSquaredDistances(
    absl::Span<const ModelState* const> updates) {
  const size_t n = updates.size();
  const size_t block = BlockElements(n);
  std::vector<double> dist(n * n, 0.0);
  std::vector<const float*> src(n);
  for (size_t t = 0; t < updates[0]->size(); ++t) {
    const TensorBuffer& first = updates[0]->tensor(t);
    if (first.dtype() != DType::kFloat32) continue;
    for (size_t k = 0; k < n; ++k) {
      src[k] = updates[k]->tensor(t).floats().data();
    }
    const size_t size = first.num_elements();
    for (size_t begin = 0; begin < size; begin += block) {
      const size_t len = std::min(block, size - begin);
      for (size_t i = 0; i < n; ++i) {
        for (size_t j = i + 1; j < n; ++j) {
          dist[i * n + j] +=
              SquaredDistance(src[i] + begin, src[j] + begin, len);
        }
      }
    }
  }
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < i; ++j) dist[i * n + j] = dist[j * n + i];
  }
  return dist;
}

}  // namespace

absl::StatusOr<ModelState> CoordinateMedian(
    absl::Span<const ModelState* const> updates) {
  RETURN_IF_ERROR(ValidateUpdates(updates));
  const size_t n = updates.size();
  return ReduceSortedCoordinates(updates, [n](const float* rows, size_t stride,
                                              size_t len, float* out) {
    const float* upper = rows + (n / 2) * stride;
    if (n % 2 == 1) {
      std::copy(upper, upper + len, out);
      return;
    }
    const float* lower = upper - stride;
    for (size_t j = 0; j < len; ++j) {
      out[j] =
          static_cast<float>((static_cast<double>(lower[j]) + upper[j]) / 2);
    }
  });
}

absl::StatusOr<ModelState> TrimmedMean(
    absl::Span<const ModelState* const> updates, double beta) {
  if (!(beta >= 0 && beta < 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("beta must be in [0, 0.5), got ", beta));
  }
  RETURN_IF_ERROR(ValidateUpdates(updates));
  const size_t n = updates.size();
  const size_t trim =
      static_cast<size_t>(std::floor(beta * static_cast<double>(n)));
  if (2 * trim >= n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "beta = ", beta, " trims ", trim, " values from each side of ", n,
        "; at least one must remain"));
  }
  const double kept = static_cast<double>(n - 2 * trim);
  std::vector<double> sums(BlockElements(n));
  return ReduceSortedCoordinates(
      updates, [&](const float* rows, size_t stride, size_t len, float* out) {
        std::fill(sums.begin(), sums.begin() + len, 0.0);
        for (size_t r = trim; r < n - trim; ++r) {
          const float* row = rows + r * stride;
          for (size_t j = 0; j < len; ++j) sums[j] += row[j];
        }
        for (size_t j = 0; j < len; ++j) {
          out[j] = static_cast<float>(sums[j] / kept);
        }
      });
}

absl::StatusOr<std::vector<size_t>> MultiKrumSelect(
    absl::Span<const ModelState* const> updates, int f, int m) {
  const size_t n = updates.size();
  if (f < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("f (Byzantine updates tolerated) must be >= 0, got ", f));
  }
  if (n < 2 * static_cast<size_t>(f) + 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Krum needs n >= 2f + 3 updates; got n = ", n, " with f = ", f));
  }
  if (m < 1 || static_cast<size_t>(m) > n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "m (updates to select) must be in [1, n = ", n, "], got ", m));
  }
  RETURN_IF_ERROR(ValidateUpdates(updates));

  const std::vector<double> dist = PairwiseSquaredDistances(updates);
  const size_t neighbours = n - static_cast<size_t>(f) - 2;  // >= f + 1.
  std::vector<double> scores(n);
  std::vector<double> row;
  row.reserve(n - 1);
  for (size_t i = 0; i < n; ++i) {
    row.clear();
    for (size_t j = 0; j < n; ++j) {
      if (j != i) row.push_back(dist[i * n + j]);
    }
    std::nth_element(row.begin(), row.begin() + neighbours, row.end());
    double score = 0;
    for (size_t k = 0; k < neighbours; ++k) score += row[k];
    scores[i] = score;
  }

  std::vector<size_t> order(n);
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::partial_sort(order.begin(), order.begin() + m, order.end(),
                    [&scores](size_t a, size_t b) {
                      if (scores[a] != scores[b]) return scores[a] < scores[b];
                      return a < b;
                    });
  order.resize(m);
  return order;
}

double L2Norm(const ModelState& update) {
  double sum = 0;
  for (const TensorBuffer& t : update.tensors()) {
    if (t.dtype() != DType::kFloat32) continue;
    sum += SumOfSquares(t.floats().data(), t.floats().size());
  }
  return std::sqrt(sum);
}

double ClipToL2Norm(ModelState& update, double max_norm) {
  FEDGE_CHECK(max_norm >= 0) << "max_norm must be >= 0, got " << max_norm;
  const double norm = L2Norm(update);
  if (!std::isfinite(norm) || !(norm > max_norm)) return 1.0;
  const double factor = max_norm / norm;
  for (TensorBuffer& t : update.mutable_tensors()) {
    if (t.dtype() != DType::kFloat32) continue;
    for (float& x : t.mutable_floats()) {
      x = static_cast<float>(x * factor);
    }
  }
  return factor;
}

}  // namespace fedge
