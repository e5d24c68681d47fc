#include "common/clock.h"

#include <time.h>

#include <chrono>

#include "absl/time/clock.h"
#include "common/logging.h"

namespace fedge {
namespace {

absl::Duration MonotonicSinceBoot() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return absl::DurationFromTimespec(ts);
}

}  // namespace

Clock* RealClock::Get() {
  static RealClock* clock = new RealClock();
  return clock;
}

absl::Time RealClock::Now() const {
  // wall(anchor) - monotonic(anchor), fixed at first use.
  static const absl::Time offset = absl::Now() - MonotonicSinceBoot();
  return offset + MonotonicSinceBoot();
}

absl::Time RealClock::WallNow() const { return absl::Now(); }

FakeClock::FakeClock() : FakeClock(absl::FromUnixSeconds(1767225600)) {}
FakeClock::FakeClock(absl::Time start) : now_(start) {}

absl::Time FakeClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

void FakeClock::Advance(absl::Duration d) {
  FEDGE_CHECK(d >= absl::ZeroDuration()) << "FakeClock cannot go back";
  absl::MutexLock lock(&mu_);
  now_ += d;
}

void Event::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = true;
  }
  cv_.notify_all();
}

bool Event::HasBeenNotified() const {
  std::lock_guard<std::mutex> lock(mu_);
  return notified_;
}

bool Event::WaitFor(absl::Duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  if (timeout <= absl::ZeroDuration()) return notified_;
  // libstdc++ measures wait_for on the steady clock
  // (pthread_cond_clockwait with CLOCK_MONOTONIC).
  const auto limit =
      std::chrono::steady_clock::now() +
      absl::ToChronoNanoseconds(std::min(timeout, absl::Hours(24 * 365)));
  return cv_.wait_until(lock, limit, [this] { return notified_; });
}

}  // namespace fedge
