#include "edge_agent/device_conditions.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

// A fake /sys/class/power_supply, /proc/loadavg and metered file in a
// temporary folder.
class LinuxDeviceConditionsTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(testing::TempDir(), "/fedge_conditions_test.", getpid(),
                        ".", counter_++);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ + "/power_supply");
    options_.power_supply_dir = dir_ + "/power_supply";
    options_.loadavg_path = dir_ + "/loadavg";
    Write("loadavg", "0.25 0.40 0.50 1/200 12345\n");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& path, const std::string& contents) {
    const std::string full = dir_ + "/" + path;
    std::filesystem::create_directories(
        std::filesystem::path(full).parent_path());
    std::ofstream(full) << contents;
  }
  // A supply folder with the given files.
  void Supply(const std::string& name,
              std::vector<std::pair<std::string, std::string>> files) {
    for (const auto& [file, value] : files) {
      Write("power_supply/" + name + "/" + file, value + "\n");
    }
  }
  absl::StatusOr<DeviceStatus> Read() {
    auto reader = LinuxDeviceConditions::Create(options_);
    EXPECT_TRUE(reader.ok()) << reader.status();
    return (*reader)->Read();
  }

  static int counter_;
  std::string dir_;
  LinuxDeviceConditionsOptions options_;
};

int LinuxDeviceConditionsTest::counter_ = 0;

TEST_F(LinuxDeviceConditionsTest, LaptopOnBattery_ReadsPowerBatteryAndLoad) {
  Supply("AC", {{"type", "Mains"}, {"online", "0"}});
  Supply("BAT0",
         {{"type", "Battery"}, {"status", "Discharging"}, {"capacity", "42"}});
  auto s = Read();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->external_power, false);
  EXPECT_EQ(s->battery_percent, 42);
  EXPECT_DOUBLE_EQ(s->load_average.value(), 0.25);
  EXPECT_FALSE(s->metered.has_value());
  EXPECT_FALSE(s->idle.has_value());
}

TEST_F(LinuxDeviceConditionsTest, PluggedIn_MainsOnlineOrBatteryCharging) {
  Supply("AC", {{"type", "Mains"}, {"online", "1"}});
  Supply("BAT0",
         {{"type", "Battery"}, {"status", "Discharging"}, {"capacity", "90"}});
  EXPECT_EQ(Read()->external_power, true);

  std::filesystem::remove_all(dir_ + "/power_supply/AC");
  Supply("BAT0", {{"status", "Charging"}});
  EXPECT_EQ(Read()->external_power, true);
  Supply("BAT0", {{"status", "Not charging"}});  // Plugged, charge-limited.
  EXPECT_EQ(Read()->external_power, true);
}

TEST_F(LinuxDeviceConditionsTest, SeveralBatteries_EmptiestCounts) {
  Supply("BAT0", {{"type", "Battery"}, {"capacity", "80"}});
  Supply("BAT1", {{"type", "Battery"}, {"capacity", "30"}});
  Supply("hidpp_battery_0", {{"type", "Battery"},
                             {"scope", "Device"},
                             {"capacity", "5"},
                             {"status", "Discharging"}});
  auto s = Read();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->battery_percent, 30);
  EXPECT_FALSE(s->external_power.has_value());  // Nobody says.
}

TEST_F(LinuxDeviceConditionsTest, NoSuppliesNoLoadavg_Unknown) {
  options_.power_supply_dir = dir_ + "/missing";
  options_.loadavg_path = dir_ + "/missing_loadavg";
  auto s = Read();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->external_power.has_value());
  EXPECT_FALSE(s->battery_percent.has_value());
  EXPECT_FALSE(s->load_average.has_value());
}

TEST_F(LinuxDeviceConditionsTest, MeteredFile_ReadAndRequired) {
  options_.metered_path = dir_ + "/metered";
  Write("metered", "1\n");
  EXPECT_EQ(Read()->metered, true);
  Write("metered", "0");
  EXPECT_EQ(Read()->metered, false);
  Write("metered", "maybe");
  EXPECT_THAT(Read().status().message(), HasSubstr(dir_ + "/metered"));
  std::filesystem::remove(dir_ + "/metered");
  EXPECT_EQ(Read().status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LinuxDeviceConditionsTest, GarbageInAFile_ErrorNamesIt) {
  Supply("BAT0", {{"type", "Battery"}, {"capacity", "lots"}});
  auto s = Read();
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("BAT0/capacity"));
  std::filesystem::remove_all(dir_ + "/power_supply/BAT0");
  Write("loadavg", "high");
  EXPECT_THAT(Read().status().message(), HasSubstr("loadavg"));
}

TEST_F(LinuxDeviceConditionsTest, StatusCommand_OverridesTheFiles) {
  Supply("AC", {{"type", "Mains"}, {"online", "1"}});
  options_.status_command =
      "echo power=battery battery=55; echo metered=1 idle=0 load=3.5 x=y";
  auto s = Read();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->external_power, false);
  EXPECT_EQ(s->battery_percent, 55);
  EXPECT_EQ(s->metered, true);
  EXPECT_EQ(s->idle, false);
  EXPECT_DOUBLE_EQ(s->load_average.value(), 3.5);
}

TEST_F(LinuxDeviceConditionsTest, StatusCommandFails_Error) {
  options_.status_command = "echo power=ac; exit 3";
  EXPECT_THAT(Read().status().message(), HasSubstr("exited with 3"));
  options_.status_command = "echo battery=200";
  EXPECT_THAT(Read().status().message(), HasSubstr("bad value '200'"));
}

TEST_F(LinuxDeviceConditionsTest, StatusCommandHangs_KilledAtItsTimeout) {
  options_.status_command = "echo power=ac; exec sleep 30";
  options_.status_command_timeout = absl::Milliseconds(200);
  const absl::Time start = absl::Now();
  auto s = Read();
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.status().message(), HasSubstr("killed"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));  // Bounded, not 30 s.
}

TEST_F(LinuxDeviceConditionsTest, StatusCommandFloods_Refused) {
  options_.status_command = "yes power=ac";
  EXPECT_THAT(Read().status().message(), HasSubstr("bytes of output"));
}

TEST(LinuxDeviceConditionsCreateTest, NonPositiveTimeout_InvalidArgument) {
  LinuxDeviceConditionsOptions o;
  o.status_command_timeout = absl::ZeroDuration();
  EXPECT_EQ(LinuxDeviceConditions::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseStatusOutputTest, KeysValuesAndErrors) {
  auto s = ParseStatusOutput("power=usb\nbattery=0\tidle=yes metered=false\n",
                             DeviceStatus());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->external_power, true);
  EXPECT_EQ(s->battery_percent, 0);
  EXPECT_EQ(s->idle, true);
  EXPECT_EQ(s->metered, false);
  EXPECT_TRUE(ParseStatusOutput("", DeviceStatus()).ok());
  for (const char* bad : {"power", "power=solar", "battery=-1", "idle=2",
                          "load=-1", "load=nan", "metered="}) {
    EXPECT_EQ(ParseStatusOutput(bad, DeviceStatus()).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(ParseStatusOutputTest, RandomBytes_NeverCrash) {
  DeterministicRng rng(7);
  std::string alphabet = "=power battery01.9\n idle metered-";
  alphabet.push_back('\0');
  alphabet.push_back('\xff');
  for (int i = 0; i < 2000; ++i) {
    std::string text;
    const int n = static_cast<int>(rng.NextBits() % 64);
    for (int j = 0; j < n; ++j) {
      text.push_back(alphabet[rng.NextBits() % alphabet.size()]);
    }
    ParseStatusOutput(text, DeviceStatus()).status().IgnoreError();
  }
}

TEST(TimeWindowTest, ParseAndContains) {
  auto night = ParseTimeWindow("01:00-06:00");
  ASSERT_TRUE(night.ok());
  EXPECT_FALSE(night->Contains(59));
  EXPECT_TRUE(night->Contains(60));
  EXPECT_TRUE(night->Contains(6 * 60 - 1));
  EXPECT_FALSE(night->Contains(6 * 60));
  auto wrap = ParseTimeWindow("22:30-06:00");
  ASSERT_TRUE(wrap.ok());
  EXPECT_TRUE(wrap->Contains(23 * 60));
  EXPECT_TRUE(wrap->Contains(0));
  EXPECT_FALSE(wrap->Contains(12 * 60));
  auto day = ParseTimeWindow("00:00-24:00");
  ASSERT_TRUE(day.ok());
  EXPECT_TRUE(day->Contains(0) && day->Contains(24 * 60 - 1));
  for (const char* bad :
       {"", "1:00-6:00", "01:00", "25:00-01:00", "01:60-02:00", "24:00-01:00",
        "03:00-03:00", "01:00-06:00-07:00"}) {
    EXPECT_FALSE(ParseTimeWindow(bad).ok()) << bad;
  }
}

TEST(LocalMinuteOfDayTest, InTheGivenZone) {
  const absl::Time t = absl::FromCivil(absl::CivilMinute(2026, 3, 1, 23, 15),
                                       absl::UTCTimeZone());
  EXPECT_EQ(LocalMinuteOfDay(t, absl::UTCTimeZone()), 23 * 60 + 15);
  EXPECT_EQ(LocalMinuteOfDay(t, absl::FixedTimeZone(2 * 3600)), 75);
}

DeviceStatus Good() {
  DeviceStatus s;
  s.external_power = true;
  s.battery_percent = 90;
  s.metered = false;
  s.load_average = 0.1;
  return s;
}

EligibilityPolicy Strict() {
  EligibilityPolicy p;
  p.require_external_power = true;
  p.min_battery_percent = 50;
  p.require_unmetered = true;
  p.require_idle = true;
  p.max_load_average = 0.5;
  p.window = *ParseTimeWindow("01:00-06:00");
  return p;
}

TEST(EvaluateEligibilityTest, AllConditionsMet_Eligible) {
  const Eligibility e = EvaluateEligibility(Strict(), Good(), 120, 0);
  EXPECT_TRUE(e.eligible());
  EXPECT_EQ(e.detail, "");
}

TEST(EvaluateEligibilityTest, FirstFailedCondition_WithReason) {
  const EligibilityPolicy p = Strict();
  auto failed = [&](DeviceStatus s, int minute = 120, double own = 0) {
    return EvaluateEligibility(p, s, minute, own);
  };
  Eligibility e = failed(Good(), 7 * 60);
  EXPECT_EQ(e.reason, v1::FAILURE_REASON_TIME_WINDOW);
  EXPECT_EQ(e.detail, "time window: 07:00 is outside 01:00-06:00");

  DeviceStatus s = Good();
  s.external_power = false;
  s.battery_percent = 10;  // Power is checked first.
  e = failed(s);
  EXPECT_EQ(e.reason, v1::FAILURE_REASON_POWER);
  EXPECT_EQ(e.detail, "power: on battery");

  s = Good();
  s.battery_percent = 14;
  e = failed(s);
  EXPECT_EQ(e.reason, v1::FAILURE_REASON_BATTERY);
  EXPECT_EQ(e.detail, "battery: 14% < 50%");

  s = Good();
  s.metered = true;
  EXPECT_EQ(failed(s).reason, v1::FAILURE_REASON_METERED);
  s.metered.reset();
  EXPECT_EQ(failed(s).detail, "metered: unknown");

  s = Good();
  s.load_average = 1.2;
  e = failed(s);
  EXPECT_EQ(e.reason, v1::FAILURE_REASON_NOT_IDLE);
  EXPECT_THAT(e.detail, HasSubstr("load average 1.20"));
  // The agent's own training threads are not someone else's load.
  EXPECT_TRUE(failed(s, 120, 0.9).eligible());
  s.idle = false;  // The status command's word wins over the load.
  EXPECT_EQ(failed(s, 120, 0.9).reason, v1::FAILURE_REASON_NOT_IDLE);

  e = EvaluateEligibility(p, absl::UnavailableError("status command hangs"),
                          120, 0);
  EXPECT_EQ(e.reason, v1::FAILURE_REASON_CONDITIONS_UNREADABLE);
  EXPECT_THAT(e.detail, HasSubstr("status command hangs"));
}

TEST(EvaluateEligibilityTest, UnknownPowerAndBattery_PassAsMainsPowered) {
  DeviceStatus s = Good();
  s.external_power.reset();
  s.battery_percent.reset();
  EXPECT_TRUE(EvaluateEligibility(Strict(), s, 120, 0).eligible());
}

TEST(EvaluateEligibilityTest, NoPolicy_AlwaysEligible) {
  EligibilityPolicy none;
  EXPECT_FALSE(none.any());
  EXPECT_TRUE(EvaluateEligibility(none, DeviceStatus(), 0, 0).eligible());
  EXPECT_TRUE(Strict().needs_readings());
  EligibilityPolicy window_only;
  window_only.window = *ParseTimeWindow("01:00-02:00");
  EXPECT_TRUE(window_only.any());
  EXPECT_FALSE(window_only.needs_readings());
}

TEST(OwnLoadAverageTest, FollowsTheKernelsOneMinuteAverage) {
  OwnLoadAverage load;
  const absl::Time t0 = absl::UnixEpoch();
  load.Update(t0, 0);
  EXPECT_DOUBLE_EQ(load.Value(t0), 0);
  load.Update(t0 + absl::Seconds(60), 1);  // One thread for a minute.
  EXPECT_NEAR(load.Value(t0 + absl::Seconds(60)), 1 - std::exp(-1.0), 1e-9);
  // Decays while nothing runs.
  EXPECT_NEAR(load.Value(t0 + absl::Seconds(120)),
              (1 - std::exp(-1.0)) * std::exp(-1.0), 1e-9);
  load.Update(t0 + absl::Seconds(3600), 2);  // Two threads for an hour.
  EXPECT_NEAR(load.Value(t0 + absl::Seconds(3600)), 2, 1e-6);
}

TEST(FakeDeviceConditionsTest, ReturnsWhatWasSet) {
  FakeDeviceConditions fake;
  EXPECT_EQ(fake.Read()->external_power, true);
  DeviceStatus s;
  s.external_power = false;
  fake.Set(s);
  EXPECT_EQ(fake.Read()->external_power, false);
  fake.Set(absl::UnavailableError("gone"));
  EXPECT_FALSE(fake.Read().ok());
  EXPECT_EQ(fake.reads(), 3);
}

}  // namespace
}  // namespace fedge
