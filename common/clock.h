// Clock: the seam between fedge's logic and time, so that deadline and
// liveness logic is tested with a FakeClock and never sleeps.
//
// Now() is monotonic: deadlines, timeouts and liveness are computed from it,
// so a step of the system's wall clock (NTP, an operator, a VM resume) in
// either direction changes none of them. It is returned as an absl::Time
// for arithmetic; RealClock anchors it to the wall clock once, at its first
// use, so it reads close to calendar time but never jumps. WallNow() is the
// calendar time, for what people read (logs, "last seen" stamps, Unix
// timestamps sent to other machines), never for deciding when something
// expires.
//
// Event is a one-shot notification whose timed wait is measured on the
// monotonic clock (absl 20220623's timed waits use the wall clock).
//
// RealClock::Get() is a process-wide singleton. FakeClock starts at a fixed
// time and only moves when Advance() is called. All are thread-safe.
#ifndef FEDGE_COMMON_CLOCK_H_
#define FEDGE_COMMON_CLOCK_H_

#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace fedge {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time (never goes back, unaffected by wall-clock steps).
  virtual absl::Time Now() const = 0;
  // Calendar time, for display and for timestamps other machines read.
  virtual absl::Time WallNow() const = 0;
};

// Now(): CLOCK_MONOTONIC anchored to the wall clock at first use; WallNow():
// absl::Now().
class RealClock final : public Clock {
 public:
  static Clock* Get();
  absl::Time Now() const override;
  absl::Time WallNow() const override;
};

// A manually driven clock for tests; WallNow() equals Now().
class FakeClock final : public Clock {
 public:
  // Starts at 2026-01-01 00:00:00 UTC unless told otherwise.
  FakeClock();
  explicit FakeClock(absl::Time start);
  absl::Time Now() const override;
  absl::Time WallNow() const override { return Now(); }
  // Moves the clock forward by `d` (d >= 0).
  void Advance(absl::Duration d);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

// A one-shot event: Notify() once (later calls do nothing); waiters wake.
// WaitFor() measures its timeout on the monotonic clock.
class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void Notify();
  bool HasBeenNotified() const;
  // Blocks until notified or `timeout` passed; returns HasBeenNotified().
  bool WaitFor(absl::Duration timeout) const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool notified_ = false;  // Guarded by mu_.
};

}  // namespace fedge

#endif  // FEDGE_COMMON_CLOCK_H_
