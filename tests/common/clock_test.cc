#include "common/clock.h"

#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(FakeClockTest, DefaultStart_Is2026January1Utc) {
  FakeClock clock;
  EXPECT_EQ(clock.Now(), absl::FromCivil(absl::CivilSecond(2026, 1, 1, 0, 0, 0),
                                         absl::UTCTimeZone()));
}

TEST(FakeClockTest, ExplicitStart) {
  const absl::Time start = absl::FromUnixMillis(123456789);
  FakeClock clock(start);
  EXPECT_EQ(clock.Now(), start);
}

TEST(FakeClockTest, DoesNotMoveOnItsOwn) {
  FakeClock clock;
  const absl::Time t0 = clock.Now();
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(clock.Now(), t0);
}

TEST(FakeClockTest, Advance_MovesByExactlyTheDuration) {
  FakeClock clock;
  const absl::Time t0 = clock.Now();
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(clock.Now() - t0, absl::Seconds(5));
  clock.Advance(absl::Milliseconds(250));
  EXPECT_EQ(clock.Now() - t0, absl::Milliseconds(5250));
  clock.Advance(absl::Nanoseconds(1));
  EXPECT_EQ(clock.Now() - t0, absl::Milliseconds(5250) + absl::Nanoseconds(1));
}

TEST(FakeClockTest, Advance_ZeroIsAllowed) {
  FakeClock clock;
  const absl::Time t0 = clock.Now();
  clock.Advance(absl::ZeroDuration());
  EXPECT_EQ(clock.Now(), t0);
}

TEST(FakeClockTest, UsableThroughClockInterface) {
  FakeClock fake;
  Clock* clock = &fake;
  const absl::Time t0 = clock->Now();
  fake.Advance(absl::Minutes(1));
  EXPECT_EQ(clock->Now(), t0 + absl::Minutes(1));
}

TEST(FakeClockTest, ConcurrentAdvance_AllAdvancesCount) {
  FakeClock clock;
  const absl::Time t0 = clock.Now();
  constexpr int kThreads = 4;
  constexpr int kAdvancesPerThread = 1000;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&clock] {
      for (int j = 0; j < kAdvancesPerThread; ++j) {
        clock.Advance(absl::Milliseconds(1));
        (void)clock.Now();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(clock.Now() - t0,
            absl::Milliseconds(kThreads * kAdvancesPerThread));
}

TEST(FakeClockDeathTest, AdvanceBackwards_Crashes) {
  FakeClock clock;
  EXPECT_DEATH(clock.Advance(absl::Seconds(-1)), "cannot go back");
}

TEST(RealClockTest, Get_ReturnsTheSameInstance) {
  ASSERT_NE(RealClock::Get(), nullptr);
  EXPECT_EQ(RealClock::Get(), RealClock::Get());
}

TEST(RealClockTest, Now_IsCloseToAbslNow) {
  const absl::Time before = absl::Now();
  const absl::Time now = RealClock::Get()->Now();
  const absl::Time after = absl::Now();
  // Wall time may be stepped by NTP; allow a generous slack.
  EXPECT_GE(now, before - absl::Seconds(1));
  EXPECT_LE(now, after + absl::Seconds(1));
}

TEST(RealClockTest, Now_IsNonDecreasingAcrossCalls) {
  // Wall time is only "monotone-ish": tolerate small backward steps.
  Clock* clock = RealClock::Get();
  absl::Time prev = clock->Now();
  for (int i = 0; i < 10000; ++i) {
    const absl::Time now = clock->Now();
    ASSERT_GE(now, prev - absl::Milliseconds(100)) << "call " << i;
    if (now > prev) prev = now;
  }
}

TEST(RealClockTest, Now_AdvancesOverTime) {
  Clock* clock = RealClock::Get();
  const absl::Time t0 = clock->Now();
  absl::SleepFor(absl::Milliseconds(20));
  const absl::Duration elapsed = clock->Now() - t0;
  EXPECT_GE(elapsed, absl::Milliseconds(10));
  EXPECT_LT(elapsed, absl::Seconds(30));
}

}  // namespace
}  // namespace fedge
