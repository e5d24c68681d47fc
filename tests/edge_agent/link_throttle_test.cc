#include "edge_agent/link_throttle.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class LinkThrottleTest : public testing::Test {
 protected:
  LinkThrottle Make(LinkProfile profile) {
    return LinkThrottle(profile, &clock_, [this](absl::Duration d) {
      sleeps_.push_back(d);
      clock_.Advance(d);
    });
  }
  FakeClock clock_;
  std::vector<absl::Duration> sleeps_;
};

TEST_F(LinkThrottleTest, ZeroProfile_NeverSleeps) {
  LinkThrottle throttle = Make({});
  throttle.BeforeCall();
  throttle.StartTransfer();
  throttle.OnBytes(1 << 30);
  EXPECT_THAT(sleeps_, IsEmpty());
  EXPECT_EQ(throttle.TransferTime(1 << 30), absl::ZeroDuration());
}

TEST_F(LinkThrottleTest, AddedLatency_SleptBeforeEachCall) {
  LinkProfile profile;
  profile.added_latency = absl::Milliseconds(150);
  LinkThrottle throttle = Make(profile);
  throttle.BeforeCall();
  throttle.BeforeCall();
  EXPECT_THAT(sleeps_,
              ElementsAre(absl::Milliseconds(150), absl::Milliseconds(150)));
}

TEST_F(LinkThrottleTest, BandwidthCap_SleepsBetweenChunks) {
  LinkProfile profile;
  profile.bytes_per_second = 1000;
  LinkThrottle throttle = Make(profile);
  const absl::Time start = clock_.Now();
  throttle.StartTransfer();
  throttle.OnBytes(500);
  throttle.OnBytes(500);
  throttle.OnBytes(1000);
  EXPECT_THAT(sleeps_, ElementsAre(absl::Milliseconds(500),
                                   absl::Milliseconds(500), absl::Seconds(1)));
  EXPECT_EQ(clock_.Now() - start, absl::Seconds(2));
  EXPECT_EQ(throttle.TransferTime(3000), absl::Seconds(3));
}

TEST_F(LinkThrottleTest, BandwidthCap_CountsTimeAlreadySpent) {
  LinkProfile profile;
  profile.bytes_per_second = 1000;
  LinkThrottle throttle = Make(profile);
  throttle.StartTransfer();
  clock_.Advance(absl::Milliseconds(800));  // The network was slow anyway.
  throttle.OnBytes(1000);
  EXPECT_THAT(sleeps_, ElementsAre(absl::Milliseconds(200)));
}

}  // namespace
}  // namespace fedge
