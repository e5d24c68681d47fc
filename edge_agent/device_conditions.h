// Device conditions: whether the device may train now, in the spirit of
// Federated Compute's eligibility criteria (train on external power, with
// enough battery, on an unmetered network, while the device is idle, within
// a time window).
//
//   DeviceConditions        the readings (power, battery, metered, idle,
//                           load average): an interface, read from the
//                           places a Linux device exposes and from an
//                           operator's status command
//                           (LinuxDeviceConditions), or scripted
//                           (FakeDeviceConditions, for tests).
//   EligibilityPolicy       which conditions the agent requires
//                           (AgentConfig.eligibility).
//   EvaluateEligibility     policy x readings x local time -> eligible, or
//                           the first condition that failed with a reason
//                           for people.
//   OwnLoadAverage          the agent's own share of the load average, so
//                           that its training does not make the device look
//                           busy to itself.
//
// No LibTorch, no gRPC. Thread-safety: EvaluateEligibility and the parsers
// are pure; LinuxDeviceConditions and FakeDeviceConditions may be read from
// any thread; OwnLoadAverage is thread-compatible.
#ifndef FEDGE_EDGE_AGENT_DEVICE_CONDITIONS_H_
#define FEDGE_EDGE_AGENT_DEVICE_CONDITIONS_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "fedge/v1/federation.pb.h"

namespace fedge {

// What the device reports. A reading no source provides is unknown.
struct DeviceStatus {
  // On external power: a mains, USB or wireless supply online, or a battery
  // charging or full. Unknown when no power supply is listed.
  std::optional<bool> external_power;
  // Charge of the emptiest battery, in percent; unknown without a battery.
  std::optional<int> battery_percent;
  // On a metered network.
  std::optional<bool> metered;
  // Idle, as the status command says (Linux has no such file).
  std::optional<bool> idle;
  // The 1-minute load average.
  std::optional<double> load_average;
};

class DeviceConditions {
 public:
  virtual ~DeviceConditions() = default;
  // The current readings. An error when a configured source cannot be read
  // or says something unexpected (the message names it); the caller counts
  // that as a failed condition.
  virtual absl::StatusOr<DeviceStatus> Read() = 0;
};

struct LinuxDeviceConditionsOptions {
  // One folder per power supply with the files type, online, capacity,
  // status and scope (sysfs' power_supply class). A missing folder: no
  // supply listed.
  std::string power_supply_dir = "/sys/class/power_supply";
  // "<1-min> <5-min> <15-min> ..." (procfs). A missing file: unknown load.
  std::string loadavg_path = "/proc/loadavg";
  // A file holding 1 (metered) or 0 (unmetered); "" = none. It must exist.
  std::string metered_path;
  // Run with /bin/sh -c at each Read(); its standard output (key=value
  // pairs, ParseStatusOutput) overrides the files' readings. "" = none.
  std::string status_command;
  // The command is killed (and the reading fails) after this long (> 0).
  absl::Duration status_command_timeout = absl::Seconds(5);
};

// Reads the files and the command of LinuxDeviceConditionsOptions.
class LinuxDeviceConditions final : public DeviceConditions {
 public:
  // INVALID_ARGUMENT for a non-positive status_command_timeout.
  static absl::StatusOr<std::unique_ptr<LinuxDeviceConditions>> Create(
      LinuxDeviceConditionsOptions options);

  // Errors: a file that exists but cannot be read or parsed, a missing
  // metered_path (the message names the path); the status command failing
  // to start, exiting non-zero, running past its timeout (it is killed) or
  // printing something ParseStatusOutput refuses.
  absl::StatusOr<DeviceStatus> Read() override;

 private:
  explicit LinuxDeviceConditions(LinuxDeviceConditionsOptions options)
      : options_(std::move(options)) {}
  absl::Status ReadPowerSupplies(DeviceStatus& status) const;

  const LinuxDeviceConditionsOptions options_;
};

// Readings set by a test. Thread-safe.
class FakeDeviceConditions final : public DeviceConditions {
 public:
  // Starts on external power, battery full, unmetered, idle, load 0.
  FakeDeviceConditions();
  void Set(absl::StatusOr<DeviceStatus> status);
  absl::StatusOr<DeviceStatus> Read() override;
  int reads() const;

 private:
  mutable absl::Mutex mu_;
  absl::StatusOr<DeviceStatus> status_ ABSL_GUARDED_BY(mu_);
  int reads_ ABSL_GUARDED_BY(mu_) = 0;
};

// Overlays the status command's output on `base`: key=value pairs separated
// by white space; keys power (ac, mains, usb, wireless or external: on
// external power; battery: not), battery (0-100), metered and idle (1/0,
// true/false, yes/no), load (a load average >= 0); other keys are ignored.
// INVALID_ARGUMENT naming the first malformed pair.
absl::StatusOr<DeviceStatus> ParseStatusOutput(absl::string_view output,
                                               DeviceStatus base);

// A local time-of-day window [start, end), in minutes after midnight; it
// wraps midnight when start > end.
struct TimeWindow {
  int start_minute = 0;
  int end_minute = 0;
  bool Contains(int minute_of_day) const;
};

// "HH:MM-HH:MM" (end may be 24:00). INVALID_ARGUMENT for anything else or
// an empty window (start == end).
absl::StatusOr<TimeWindow> ParseTimeWindow(absl::string_view text);

// The conditions an agent requires before and while it trains.
struct EligibilityPolicy {
  bool require_external_power = false;
  int min_battery_percent = 0;  // 0 = any level.
  bool require_unmetered = false;
  // Idle: the status command's idle=, else load average (less the agent's
  // own share) <= max_load_average.
  bool require_idle = false;
  double max_load_average = 0.5;
  std::optional<TimeWindow> window;  // Local time; none = any time.
  // How often conditions are read while training or waiting for them.
  absl::Duration check_interval = absl::Seconds(10);

  // True when some condition is required.
  bool any() const;
  // True when a condition needs DeviceConditions readings (all but the
  // time window).
  bool needs_readings() const;
};

// The verdict: eligible, or the first condition that failed.
struct Eligibility {
  v1::FailureReason reason = v1::FAILURE_REASON_UNSPECIFIED;
  // For people, e.g. "battery: 14% < 50%". Empty when eligible.
  std::string detail;

  bool eligible() const { return reason == v1::FAILURE_REASON_UNSPECIFIED; }
};

// Checks `policy` in this order: readings (an error: unreadable), time
// window (of `local_minute_of_day`), external power, battery, metered,
// idle. An unknown reading passes the power and battery conditions (no
// supply or battery listed: a mains-powered device) and fails the metered
// and idle ones. `own_load` is subtracted from the load average.
Eligibility EvaluateEligibility(const EligibilityPolicy& policy,
                                const absl::StatusOr<DeviceStatus>& status,
                                int local_minute_of_day, double own_load);

// Minutes after midnight of `time` in `zone`.
int LocalMinuteOfDay(absl::Time time, absl::TimeZone zone);

// The agent's own share of the 1-minute load average: like the kernel's,
// an exponentially decaying average (time constant one minute) of its
// runnable threads, fed with how many threads it ran since the last
// update.
class OwnLoadAverage {
 public:
  // `threads` ran from the last update (or the first call) to `now`.
  void Update(absl::Time now, double threads);
  // The average at `now`, assuming no thread ran since the last update.
  double Value(absl::Time now) const;

 private:
  absl::Time last_ = absl::InfinitePast();
  double value_ = 0;
};

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_DEVICE_CONDITIONS_H_
