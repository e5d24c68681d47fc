#include "edge_agent/link_throttle.h"

#include <utility>

namespace fedge {

LinkThrottle::LinkThrottle(LinkProfile profile, const Clock* clock,
                           Sleeper sleep)
    : profile_(profile), clock_(clock), sleep_(std::move(sleep)) {
  transfer_start_ = clock_->Now();
}

void LinkThrottle::BeforeCall() {
  if (profile_.added_latency > absl::ZeroDuration()) {
    sleep_(profile_.added_latency);
  }
}

void LinkThrottle::StartTransfer() {
  transfer_start_ = clock_->Now();
  transfer_bytes_ = 0;
}

void LinkThrottle::OnBytes(int64_t bytes) {
  transfer_bytes_ += bytes;
  if (profile_.bytes_per_second <= 0) return;
  const absl::Time due = transfer_start_ + TransferTime(transfer_bytes_);
  const absl::Time now = clock_->Now();
  if (due > now) sleep_(due - now);
}

absl::Duration LinkThrottle::TransferTime(int64_t bytes) const {
  if (profile_.bytes_per_second <= 0) return absl::ZeroDuration();
  return absl::Seconds(static_cast<double>(bytes) /
                       static_cast<double>(profile_.bytes_per_second));
}

}  // namespace fedge
