// Clock: the seam between fedge's logic and wall time, so that deadline and
// liveness logic is tested with a FakeClock and never sleeps.
//
// RealClock::Get() is a process-wide singleton. FakeClock starts at a fixed
// time and only moves when Advance() is called. Both are thread-safe.
#ifndef FEDGE_COMMON_CLOCK_H_
#define FEDGE_COMMON_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace fedge {

class Clock {
 public:
  virtual ~Clock() = default;
  // Current time.
  virtual absl::Time Now() const = 0;
};

// Wall-clock time from absl::Now().
class RealClock final : public Clock {
 public:
  static Clock* Get();
  absl::Time Now() const override;
};

// A manually driven clock for tests.
class FakeClock final : public Clock {
 public:
  // Starts at 2026-01-01 00:00:00 UTC unless told otherwise.
  FakeClock();
  explicit FakeClock(absl::Time start);
  absl::Time Now() const override;
  // Moves the clock forward by `d` (d >= 0).
  void Advance(absl::Duration d);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedge

#endif  // FEDGE_COMMON_CLOCK_H_
