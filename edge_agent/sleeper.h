// Sleeper: how the agent waits (backoff, "wait" answers, simulated slow
// devices and links). Injected so that tests advance a FakeClock instead of
// sleeping.
#ifndef FEDGE_EDGE_AGENT_SLEEPER_H_
#define FEDGE_EDGE_AGENT_SLEEPER_H_

#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace fedge {

// Blocks (or pretends to) for the given duration (never negative).
using Sleeper = std::function<void(absl::Duration)>;

// Really sleeps (absl::SleepFor).
inline Sleeper RealSleeper() {
  return [](absl::Duration d) { absl::SleepFor(d); };
}

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_SLEEPER_H_
