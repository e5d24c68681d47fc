// LinkThrottle: simulates a device's network link (DeviceProfile) in the
// transport: a latency added before every call, and a bandwidth cap that
// sleeps between the chunks of a transfer so that its average rate stays at
// or below the cap. With a zero profile it never sleeps.
//
// Not thread-safe: one per client, used by one call at a time.
#ifndef FEDGE_EDGE_AGENT_LINK_THROTTLE_H_
#define FEDGE_EDGE_AGENT_LINK_THROTTLE_H_

#include <cstdint>

#include "absl/time/time.h"
#include "common/clock.h"
#include "edge_agent/sleeper.h"

namespace fedge {

struct LinkProfile {
  // Added before every call (0 = none).
  absl::Duration added_latency = absl::ZeroDuration();
  // Cap on transfer speed in bytes per second (0 = unlimited).
  int64_t bytes_per_second = 0;
};

class LinkThrottle {
 public:
  // `clock` must outlive the throttle.
  LinkThrottle(LinkProfile profile, const Clock* clock, Sleeper sleep);

  // Sleeps the added latency.
  void BeforeCall();
  // Starts timing a transfer.
  void StartTransfer();
  // Records `bytes` more of the current transfer and sleeps until the
  // transfer's average rate is within the cap.
  void OnBytes(int64_t bytes);
  // Time a transfer of `bytes` takes at the cap (zero when unlimited).
  absl::Duration TransferTime(int64_t bytes) const;

  const LinkProfile& profile() const { return profile_; }

 private:
  LinkProfile profile_;
  const Clock* clock_;
  Sleeper sleep_;
  absl::Time transfer_start_;
  int64_t transfer_bytes_ = 0;
};

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_LINK_THROTTLE_H_
