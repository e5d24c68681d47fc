// Byzantine-robust aggregation rules and norm clipping over ModelStates: the
// math behind the coordinator's non-FedAvg strategies.
//
//   CoordinateMedian  coordinate-wise median (Yin et al. 2018).
//   TrimmedMean       coordinate-wise beta-trimmed mean (Yin et al. 2018).
//   MultiKrumSelect   Krum / Multi-Krum selection (Blanchard et al. 2017).
//   L2Norm,
//   ClipToL2Norm      norm bounding of updates (Sun et al. 2019).
//
// float32 tensors are aggregated; in the models CoordinateMedian and
// TrimmedMean build, int64 tensors (counters such as BatchNorm's
// num_batches_tracked) take the element-wise maximum over all updates.
// Krum's distances and the norms ignore int64 tensors. Sums are taken in
// float64; results are float32 ModelStates shaped like the inputs.
//
// The aggregation functions validate their inputs before doing any work: at
// least one update, every update with the first one's schema (names, dtypes,
// shapes, order) and only finite float32 values; otherwise INVALID_ARGUMENT
// naming the offending update ("update #3: ..."). A null pointer in
// `updates` is a caller bug (checked).
//
// Cost: memory O(model) for the result plus a few hundred KiB of scratch
// (and O(n^2) for Krum). Coordinates are processed in cache-sized blocks so
// that each update is streamed from memory once. Median and trimmed mean sort
// each coordinate's n values with a sorting network applied across a block of
// coordinates at once (branch-free, vectorized): O(d * n log^2 n) simple
// operations, where d is the number of float32 elements. Krum computes the
// n(n-1)/2 pairwise distances once: O(n^2 * d).
//
// Stateless functions; thread-safe as long as no other thread mutates the
// inputs meanwhile.
#ifndef FEDGE_COMMON_ROBUST_AGGREGATION_H_
#define FEDGE_COMMON_ROBUST_AGGREGATION_H_

#include <cstddef>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/tensor_buffer.h"

namespace fedge {

// Coordinate-wise median of `updates`: for an odd count the middle value,
// for an even count the mean of the two middle values.
// INVALID_ARGUMENT when the updates are empty, differ in schema or hold a
// non-finite value.
absl::StatusOr<ModelState> CoordinateMedian(
    absl::Span<const ModelState* const> updates);

// Coordinate-wise trimmed mean: for each coordinate, drops the
// k = floor(beta * n) largest and the k smallest of the n values and
// averages the remaining n - 2k. beta = 0 is the plain (unweighted) mean.
// INVALID_ARGUMENT when beta is not in [0, 0.5) (the message names `beta`
// and the range), when fewer than one value would remain, or as for
// CoordinateMedian.
absl::StatusOr<ModelState> TrimmedMean(
    absl::Span<const ModelState* const> updates, double beta);

// Multi-Krum (Blanchard et al. 2017). With n updates of which at most `f`
// are Byzantine, scores each update i by the sum of the squared L2
// distances (over all float32 values) to its n - f - 2 nearest other
// updates, and returns the indices of the `m` lowest-scoring updates,
// lowest score first, ties broken by the smaller index. m = 1 is Krum; the
// caller averages the selected updates for Multi-Krum. Each pairwise
// distance is computed once, in float64.
// INVALID_ARGUMENT when f < 0, when n < 2f + 3 (the message names f and n),
// when m is not in [1, n], or as for CoordinateMedian.
absl::StatusOr<std::vector<size_t>> MultiKrumSelect(
    absl::Span<const ModelState* const> updates, int f, int m);

// The L2 norm of `update`'s float32 values (int64 tensors are ignored),
// accumulated in float64. 0 for a model without float32 values; +inf or NaN
// when a value is.
double L2Norm(const ModelState& update);

// Norm bounding: when L2Norm(update) > max_norm, scales every float32 value
// by max_norm / L2Norm(update) in place (the new norm is max_norm up to
// float32 rounding) and returns that factor; otherwise changes nothing and
// returns 1.0. int64 tensors are never changed. An update whose norm is not
// finite (it holds inf or NaN; CheckFinite rejects it) is left unchanged
// and 1.0 is returned. max_norm must be >= 0 (checked: the caller validates
// its configuration); +inf never clips.
double ClipToL2Norm(ModelState& update, double max_norm);

}  // namespace fedge

#endif  // FEDGE_COMMON_ROBUST_AGGREGATION_H_
