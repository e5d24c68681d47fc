#include "edge_agent/device_conditions.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/status_macros.h"

extern char** environ;

namespace fedge {
namespace {

constexpr size_t kMaxFileBytes = 4096;
constexpr size_t kMaxCommandOutputBytes = 4096;

// The trimmed contents of a small file; NOT_FOUND when it does not exist.
absl::StatusOr<std::string> ReadTrimmed(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kMaxFileBytes));
  return std::string(absl::StripAsciiWhitespace(text));
}

// Like ReadTrimmed, but "" for a missing file.
absl::StatusOr<std::string> ReadOptional(const std::string& path) {
  absl::StatusOr<std::string> text = ReadTrimmed(path);
  if (absl::IsNotFound(text.status())) return std::string();
  return text;
}

absl::Status Unexpected(const std::string& path, absl::string_view text) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": unexpected contents '", text.substr(0, 40), "'"));
}

// 1/0, true/false, yes/no.
std::optional<bool> ParseFlag(absl::string_view value) {
  const std::string v = absl::AsciiStrToLower(value);
  if (v == "1" || v == "true" || v == "yes") return true;
  if (v == "0" || v == "false" || v == "no") return false;
  return std::nullopt;
}

// The names in `dir`, sorted; empty when it does not exist.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return std::vector<std::string>();
    return ErrnoStatus(errno, "opendir", dir);
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// What one supply says: on external power (nullopt: it does not say) and,
// for a battery, its charge.
struct SupplyReading {
  std::optional<bool> external_power;
  std::optional<int> battery_percent;
};

absl::StatusOr<SupplyReading> ReadSupply(const std::string& dir) {
  SupplyReading r;
  ASSIGN_OR_RETURN(std::string scope, ReadOptional(dir + "/scope"));
  if (scope == "Device") return r;  // A peripheral's battery.
  ASSIGN_OR_RETURN(std::string type, ReadOptional(dir + "/type"));
  if (type == "Battery") {
    ASSIGN_OR_RETURN(std::string status, ReadOptional(dir + "/status"));
    if (!status.empty() && status != "Unknown") {
      r.external_power =
          status == "Charging" || status == "Full" || status == "Not charging";
    }
    ASSIGN_OR_RETURN(std::string capacity, ReadOptional(dir + "/capacity"));
    int percent = 0;
    if (!capacity.empty()) {
      if (!absl::SimpleAtoi(capacity, &percent)) {
        return Unexpected(dir + "/capacity", capacity);
      }
      r.battery_percent = std::clamp(percent, 0, 100);
    }
    return r;
  }
  ASSIGN_OR_RETURN(std::string online, ReadOptional(dir + "/online"));
  if (online.empty()) return r;
  int value = 0;
  if (!absl::SimpleAtoi(online, &value)) {
    return Unexpected(dir + "/online", online);
  }
  r.external_power = value != 0;
  return r;
}

void Merge(const SupplyReading& r, DeviceStatus& status) {
  if (r.external_power.has_value()) {
    status.external_power =
        status.external_power.value_or(false) || *r.external_power;
  }
  if (r.battery_percent.has_value()) {
    status.battery_percent =
        std::min(status.battery_percent.value_or(100), *r.battery_percent);
  }
}

// Kills the command's process group and reaps it.
void KillAndReap(pid_t pid) {
  kill(-pid, SIGKILL);
  int ignored = 0;
  while (waitpid(pid, &ignored, 0) < 0 && errno == EINTR) {
  }
}

// Starts /bin/sh -c `command` in a process group of its own with its
// standard output on `out_fd` and /dev/null as its input.
absl::StatusOr<pid_t> Spawn(const std::string& command, int out_fd) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  const char* argv[] = {"sh", "-c", command.c_str(), nullptr};
  pid_t pid = -1;
  const int err = posix_spawn(&pid, "/bin/sh", &actions, &attr,
                              const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) return ErrnoStatus(err, "posix_spawn", "/bin/sh");
  return pid;
}

// Reads `fd` until end of file, `max_bytes` or `deadline` (monotonic).
// DEADLINE_EXCEEDED at the deadline; RESOURCE_EXHAUSTED past max_bytes.
absl::StatusOr<std::string> ReadUntil(int fd, absl::Time deadline,
                                      size_t max_bytes) {
  std::string out;
  char buf[1024];
  while (true) {
    const absl::Duration left = deadline - RealClock::Get()->Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError("timed out");
    }
    pollfd p = {fd, POLLIN, 0};
    const int ready =
        poll(&p, 1, std::max<int64_t>(1, absl::ToInt64Milliseconds(left)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return ErrnoStatus(errno, "poll", "status command output");
    if (ready == 0) continue;  // The deadline check above ends it.
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read", "status command output");
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("more than ", max_bytes, " bytes of output"));
    }
  }
}

// Waits for `pid` to exit until `deadline`; its exit code.
absl::StatusOr<int> WaitUntil(pid_t pid, absl::Time deadline) {
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (r < 0 && errno != EINTR) return ErrnoStatus(errno, "waitpid", "");
    if (RealClock::Get()->Now() >= deadline) {
      return absl::DeadlineExceededError("timed out");
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

// The standard output of /bin/sh -c `command`, which must exit 0 within
// `timeout` (else it is killed).
absl::StatusOr<std::string> RunStatusCommand(const std::string& command,
                                             absl::Duration timeout) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return ErrnoStatus(errno, "pipe", "status command");
  }
  absl::StatusOr<pid_t> pid = Spawn(command, fds[1]);
  close(fds[1]);
  if (!pid.ok()) {
    close(fds[0]);
    return pid.status();
  }
  const absl::Time deadline = RealClock::Get()->Now() + timeout;
  absl::StatusOr<std::string> out =
      ReadUntil(fds[0], deadline, kMaxCommandOutputBytes);
  close(fds[0]);
  absl::StatusOr<int> code =
      out.ok() ? WaitUntil(*pid, deadline) : out.status();
  if (!code.ok()) {
    KillAndReap(*pid);
    return absl::UnavailableError(absl::StrCat(
        "status command '", command, "': ", code.status().message(),
        absl::IsDeadlineExceeded(code.status())
            ? absl::StrCat(" after ", absl::FormatDuration(timeout),
                           " (killed)")
            : ""));
  }
  if (*code != 0) {
    return absl::UnavailableError(
        absl::StrCat("status command '", command, "' exited with ", *code));
  }
  return out;
}

absl::Status ReadLoadAverage(const std::string& path, DeviceStatus& status) {
  ASSIGN_OR_RETURN(std::string text, ReadOptional(path));
  if (text.empty()) return absl::OkStatus();
  const std::string first(text.substr(0, text.find(' ')));
  double load = 0;
  if (!absl::SimpleAtod(first, &load) || !std::isfinite(load) || load < 0) {
    return Unexpected(path, text);
  }
  status.load_average = load;
  return absl::OkStatus();
}

absl::Status ReadMetered(const std::string& path, DeviceStatus& status) {
  ASSIGN_OR_RETURN(std::string text, ReadTrimmed(path));
  std::optional<bool> metered = ParseFlag(text);
  if (!metered.has_value()) return Unexpected(path, text);
  status.metered = metered;
  return absl::OkStatus();
}

std::string Hhmm(int minute_of_day) {
  return absl::StrFormat("%02d:%02d", minute_of_day / 60, minute_of_day % 60);
}

// Minutes after midnight of "HH:MM" (24:00 allowed when `end`).
std::optional<int> ParseHhmm(absl::string_view text, bool end) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  int h = 0, m = 0;
  if (parts.size() != 2 || parts[0].size() != 2 || parts[1].size() != 2 ||
      !absl::SimpleAtoi(parts[0], &h) || !absl::SimpleAtoi(parts[1], &m) ||
      h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && (!end || m != 0))) {
    return std::nullopt;
  }
  return h * 60 + m;
}

Eligibility Fail(v1::FailureReason reason, std::string detail) {
  return Eligibility{reason, std::move(detail)};
}

// The idle condition alone (OK when idle).
Eligibility CheckIdle(const EligibilityPolicy& policy,
                      const DeviceStatus& status, double own_load) {
  if (status.idle.has_value()) {
    if (*status.idle) return Eligibility();
    return Fail(v1::FAILURE_REASON_NOT_IDLE,
                "not idle: the status command says idle=0");
  }
  if (!status.load_average.has_value()) {
    return Fail(v1::FAILURE_REASON_NOT_IDLE, "not idle: load average unknown");
  }
  const double others = *status.load_average - own_load;
  if (others <= policy.max_load_average) return Eligibility();
  return Fail(
      v1::FAILURE_REASON_NOT_IDLE,
      absl::StrFormat("not idle: load average %.2f (%.2f of it the "
                      "agent's) > %.2f",
                      *status.load_average, own_load, policy.max_load_average));
}

}  // namespace

absl::StatusOr<std::unique_ptr<LinuxDeviceConditions>>
LinuxDeviceConditions::Create(LinuxDeviceConditionsOptions options) {
  if (options.status_command_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("status_command_timeout must be > 0");
  }
  return std::unique_ptr<LinuxDeviceConditions>(
      new LinuxDeviceConditions(std::move(options)));
}

absl::Status LinuxDeviceConditions::ReadPowerSupplies(
    DeviceStatus& status) const {
  ASSIGN_OR_RETURN(std::vector<std::string> names,
                   ListDir(options_.power_supply_dir));
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(SupplyReading r,
                     ReadSupply(options_.power_supply_dir + "/" + name));
    Merge(r, status);
  }
  return absl::OkStatus();
}

absl::StatusOr<DeviceStatus> LinuxDeviceConditions::Read() {
  DeviceStatus status;
  RETURN_IF_ERROR(ReadPowerSupplies(status));
  RETURN_IF_ERROR(ReadLoadAverage(options_.loadavg_path, status));
  if (!options_.metered_path.empty()) {
    RETURN_IF_ERROR(ReadMetered(options_.metered_path, status));
  }
  if (options_.status_command.empty()) return status;
  ASSIGN_OR_RETURN(std::string output,
                   RunStatusCommand(options_.status_command,
                                    options_.status_command_timeout));
  absl::StatusOr<DeviceStatus> parsed =
      ParseStatusOutput(output, std::move(status));
  if (!parsed.ok()) {
    return Annotate(
        parsed.status(),
        absl::StrCat("status command '", options_.status_command, "' output"));
  }
  return parsed;
}

FakeDeviceConditions::FakeDeviceConditions() {
  DeviceStatus s;
  s.external_power = true;
  s.battery_percent = 100;
  s.metered = false;
  s.idle = true;
  s.load_average = 0;
  status_ = s;
}

void FakeDeviceConditions::Set(absl::StatusOr<DeviceStatus> status) {
  absl::MutexLock lock(&mu_);
  status_ = std::move(status);
}

absl::StatusOr<DeviceStatus> FakeDeviceConditions::Read() {
  absl::MutexLock lock(&mu_);
  ++reads_;
  return status_;
}

int FakeDeviceConditions::reads() const {
  absl::MutexLock lock(&mu_);
  return reads_;
}

absl::StatusOr<DeviceStatus> ParseStatusOutput(absl::string_view output,
                                               DeviceStatus s) {
  for (absl::string_view pair :
       absl::StrSplit(output, absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty())) {
    const size_t eq = pair.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", pair.substr(0, 40), "' is not key=value"));
    }
    const absl::string_view key = pair.substr(0, eq);
    const absl::string_view value = pair.substr(eq + 1);
    bool ok = true;
    if (key == "power") {
      const std::string v = absl::AsciiStrToLower(value);
      ok = v == "ac" || v == "mains" || v == "usb" || v == "wireless" ||
           v == "external" || v == "battery";
      if (ok) s.external_power = v != "battery";
    } else if (key == "battery") {
      int percent = 0;
      ok = absl::SimpleAtoi(value, &percent) && percent >= 0 && percent <= 100;
      if (ok) s.battery_percent = percent;
    } else if (key == "metered" || key == "idle") {
      std::optional<bool> flag = ParseFlag(value);
      ok = flag.has_value();
      (key == "metered" ? s.metered : s.idle) = flag;
    } else if (key == "load") {
      double load = 0;
      ok = absl::SimpleAtod(value, &load) && std::isfinite(load) && load >= 0;
      if (ok) s.load_average = load;
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad value '", value.substr(0, 40), "' for ", key.substr(0, 40)));
    }
  }
  return s;
}

bool TimeWindow::Contains(int minute) const {
  if (start_minute < end_minute) {
    return minute >= start_minute && minute < end_minute;
  }
  return minute >= start_minute || minute < end_minute;
}

absl::StatusOr<TimeWindow> ParseTimeWindow(absl::string_view text) {
  std::vector<absl::string_view> ends = absl::StrSplit(text, '-');
  std::optional<int> start, end;
  if (ends.size() == 2) {
    start = ParseHhmm(ends[0], /*end=*/false);
    end = ParseHhmm(ends[1], /*end=*/true);
  }
  if (!start.has_value() || !end.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a time window is HH:MM-HH:MM, got '", text, "'"));
  }
  if (*start == *end) {
    return absl::InvalidArgumentError(
        absl::StrCat("the time window '", text, "' is empty"));
  }
  return TimeWindow{*start, *end};
}

bool EligibilityPolicy::any() const {
  return needs_readings() || window.has_value();
}

bool EligibilityPolicy::needs_readings() const {
  return require_external_power || min_battery_percent > 0 ||
         require_unmetered || require_idle;
}

Eligibility EvaluateEligibility(const EligibilityPolicy& policy,
                                const absl::StatusOr<DeviceStatus>& readings,
                                int minute, double own_load) {
  if (!readings.ok()) {
    return Fail(
        v1::FAILURE_REASON_CONDITIONS_UNREADABLE,
        absl::StrCat("conditions unreadable: ", readings.status().message()));
  }
  const DeviceStatus& s = *readings;
  if (policy.window.has_value() && !policy.window->Contains(minute)) {
    return Fail(v1::FAILURE_REASON_TIME_WINDOW,
                absl::StrCat("time window: ", Hhmm(minute), " is outside ",
                             Hhmm(policy.window->start_minute), "-",
                             Hhmm(policy.window->end_minute)));
  }
  if (policy.require_external_power && !s.external_power.value_or(true)) {
    return Fail(v1::FAILURE_REASON_POWER, "power: on battery");
  }
  if (policy.min_battery_percent > 0 && s.battery_percent.has_value() &&
      *s.battery_percent < policy.min_battery_percent) {
    return Fail(v1::FAILURE_REASON_BATTERY,
                absl::StrCat("battery: ", *s.battery_percent, "% < ",
                             policy.min_battery_percent, "%"));
  }
  if (policy.require_unmetered && s.metered.value_or(true)) {
    return Fail(v1::FAILURE_REASON_METERED,
                s.metered.has_value() ? "metered: on a metered network"
                                      : "metered: unknown");
  }
  if (policy.require_idle) return CheckIdle(policy, s, own_load);
  return Eligibility();
}

int LocalMinuteOfDay(absl::Time time, absl::TimeZone zone) {
  const absl::CivilMinute m = absl::ToCivilMinute(time, zone);
  return m.hour() * 60 + m.minute();
}

void OwnLoadAverage::Update(absl::Time now, double threads) {
  if (last_ != absl::InfinitePast() && now > last_) {
    const double decay = std::exp(-absl::ToDoubleSeconds(now - last_) / 60.0);
    value_ = value_ * decay + threads * (1 - decay);
  }
  last_ = std::max(last_, now);
}

double OwnLoadAverage::Value(absl::Time now) const {
  if (last_ == absl::InfinitePast() || now <= last_) return value_;
  return value_ * std::exp(-absl::ToDoubleSeconds(now - last_) / 60.0);
}

}  // namespace fedge
