// Deadlines for gRPC calls on the monotonic clock: a step of the wall clock
// while a call is in flight changes nothing (a std::chrono::system_clock
// deadline would move with it).
#ifndef FEDGE_COMMON_NET_GRPC_DEADLINE_H_
#define FEDGE_COMMON_NET_GRPC_DEADLINE_H_

#include <grpc/support/time.h>

#include <cstdint>

#include "absl/time/time.h"

namespace fedge {

// Now + `timeout` on GPR_CLOCK_MONOTONIC, for ClientContext::set_deadline
// and Server::Shutdown. A timeout beyond ~68 years means none.
inline gpr_timespec MonotonicDeadline(absl::Duration timeout) {
  if (timeout >= absl::Hours(24 * 365 * 68)) {
    return gpr_inf_future(GPR_CLOCK_MONOTONIC);
  }
  const int64_t ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(timeout));
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_millis(ms, GPR_TIMESPAN));
}

}  // namespace fedge

#endif  // FEDGE_COMMON_NET_GRPC_DEADLINE_H_
