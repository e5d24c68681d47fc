// Backoff: the exponential backoff with jitter that every client of a
// coordinator uses after a failed call (fedge-agent's loop, and an edge
// aggregator's session with its upstream): the bound starts at `initial`
// and doubles up to `max`; each delay is drawn uniformly from
// [bound / 2, bound]. A successful call resets the bound.
//
// The jitter comes from the caller's DeterministicRng, so a caller that also
// draws other numbers from it (upload ids, dropout) keeps one seeded stream.
//
// Thread-compatible (one caller at a time).
#ifndef FEDGE_EDGE_AGENT_BACKOFF_H_
#define FEDGE_EDGE_AGENT_BACKOFF_H_

#include <algorithm>

#include "absl/time/time.h"
#include "common/random.h"

namespace fedge {

class Backoff {
 public:
  // 0 < initial <= max (the caller validates).
  Backoff(absl::Duration initial, absl::Duration max)
      : initial_(initial), max_(max), bound_(initial) {}

  // The next delay, drawn with `rng`; doubles the bound for the one after.
  absl::Duration Next(DeterministicRng& rng) {
    const absl::Duration bound = bound_;
    bound_ = std::min(2 * bound_, max_);
    return bound * (0.5 + 0.5 * rng.UniformDouble());
  }
  // A call succeeded: the next delay starts from `initial` again.
  void Reset() { bound_ = initial_; }

 private:
  absl::Duration initial_;
  absl::Duration max_;
  absl::Duration bound_;
};

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_BACKOFF_H_
