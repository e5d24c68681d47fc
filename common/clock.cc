#include "common/clock.h"

#include "absl/time/clock.h"
#include "common/logging.h"

namespace fedge {

Clock* RealClock::Get() {
  static RealClock* clock = new RealClock();
  return clock;
}

absl::Time RealClock::Now() const { return absl::Now(); }

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

}  // namespace fedge
