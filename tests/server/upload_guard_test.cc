#include "server/upload_guard.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

v1::UpdateMetadata Meta(int64_t round) {
  v1::UpdateMetadata m;
  m.set_round(round);
  m.set_session_token("secret");
  return m;
}

absl::Status AllOpen(const v1::UpdateMetadata&, const std::string&) {
  return absl::OkStatus();
}

TEST(UploadGuardTest, SecondUploadOfAnAgent_ResourceExhaustedNamingTheField) {
  UploadGuard guard(1, absl::Seconds(30));
  ASSERT_TRUE(guard.Open(1, "a", Meta(1), nullptr).ok());
  absl::Status second = guard.Open(2, "a", Meta(1), nullptr);
  EXPECT_EQ(second.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(second.message()),
              HasSubstr("max_uploads_per_agent is 1"));
  EXPECT_TRUE(guard.Open(3, "b", Meta(1), nullptr).ok());  // Another agent.
  EXPECT_EQ(guard.OpenBy("a"), 1);
  guard.Close(1);
  EXPECT_EQ(guard.OpenBy("a"), 0);
  EXPECT_TRUE(guard.Open(4, "a", Meta(1), nullptr).ok());
  guard.Close(1);  // Closing twice changes nothing.
  EXPECT_EQ(guard.OpenBy("a"), 1);
  EXPECT_EQ(guard.size(), 2u);
}

TEST(UploadGuardTest, IdleSlotHolderEnded_WaitingOneNot) {
  UploadGuard guard(2, absl::Seconds(30));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  ASSERT_TRUE(guard.Open(1, "a", Meta(1), nullptr).ok());
  ASSERT_TRUE(guard.Open(2, "b", Meta(1), nullptr).ok());
  ASSERT_TRUE(guard.Open(3, "c", Meta(1), nullptr).ok());  // Waits for a slot.
  guard.SlotGranted(1, t0);
  guard.SlotGranted(2, t0);
  guard.Touch(2, t0 + absl::Seconds(20));  // b keeps sending.
  EXPECT_TRUE(guard.Sweep(t0 + absl::Seconds(29), AllOpen).empty());
  std::vector<UploadGuard::Ended> ended =
      guard.Sweep(t0 + absl::Seconds(31), AllOpen);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].id, 1u);
  EXPECT_EQ(ended[0].agent_id, "a");
  EXPECT_TRUE(ended[0].held_slot);
  EXPECT_EQ(ended[0].reason, "upload_idle_timeout_ms");
  EXPECT_EQ(ended[0].status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(ended[0].status.message()),
              HasSubstr("upload_idle_timeout_ms = 30000"));
  EXPECT_EQ(guard.OpenBy("a"), 0);  // a may upload again.
  // c never got a slot: never idle, however long it waits.
  EXPECT_TRUE(guard.Sweep(t0 + absl::Hours(1), AllOpen).size() == 1);  // b.
  EXPECT_EQ(guard.OpenBy("c"), 1);
}

TEST(UploadGuardTest, ClosedRound_EndsItsUploadsHoldingOrWaiting) {
  UploadGuard guard(1, absl::Seconds(30));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  ASSERT_TRUE(guard.Open(1, "a", Meta(3), nullptr).ok());
  ASSERT_TRUE(guard.Open(2, "b", Meta(3), nullptr).ok());
  ASSERT_TRUE(guard.Open(3, "c", Meta(4), nullptr).ok());
  guard.SlotGranted(1, t0);
  std::vector<std::string> checked_tokens;
  auto round_4_open = [&](const v1::UpdateMetadata& m, const std::string&) {
    checked_tokens.push_back(m.session_token());
    return m.round() == 4 ? absl::OkStatus()
                          : absl::AbortedError("round 3 is not in progress");
  };
  std::vector<UploadGuard::Ended> ended = guard.Sweep(t0, round_4_open);
  ASSERT_EQ(ended.size(), 2u);
  for (const UploadGuard::Ended& e : ended) {
    EXPECT_EQ(e.reason, "round_closed");
    EXPECT_EQ(e.status.code(), absl::StatusCode::kAborted);
    EXPECT_THAT(std::string(e.status.message()),
                HasSubstr("round 3 closed before this upload finished"));
  }
  EXPECT_EQ(guard.size(), 1u);
  for (const std::string& t : checked_tokens) EXPECT_EQ(t, "");  // Not kept.
}

TEST(UploadGuardTest, StreamWithoutMetadata_EndedAfterTheIdleTimeout) {
  UploadGuard guard(1, absl::Seconds(30));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  guard.Watch(1, t0, nullptr);
  guard.Watch(2, t0, nullptr);
  // Stream 2 sends its metadata: it waits for a slot, never idle then.
  ASSERT_TRUE(guard.Open(2, "a", Meta(1), nullptr).ok());
  EXPECT_EQ(guard.OpenBy("a"), 1);
  EXPECT_TRUE(guard.Sweep(t0 + absl::Seconds(29), AllOpen).empty());
  std::vector<UploadGuard::Ended> ended =
      guard.Sweep(t0 + absl::Seconds(30), AllOpen);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].id, 1u);
  EXPECT_EQ(ended[0].status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(ended[0].status.message()),
              HasSubstr("no metadata 30000 ms after the stream opened "
                        "(upload_idle_timeout_ms = 30000)"));
  EXPECT_EQ(guard.OpenBy("a"), 1);  // A watched stream never counted.
  guard.Close(2);
  EXPECT_EQ(guard.OpenBy("a"), 0);
  EXPECT_EQ(guard.size(), 0u);
}

TEST(UploadGuardTest, OtherRoundCheckErrors_DoNotEndTheUpload) {
  UploadGuard guard(1, absl::Seconds(30));
  ASSERT_TRUE(guard.Open(1, "a", Meta(3), nullptr).ok());
  auto duplicate = [](const v1::UpdateMetadata&, const std::string&) {
    return absl::AlreadyExistsError("accepted");
  };
  EXPECT_TRUE(guard.Sweep(absl::FromUnixSeconds(1), duplicate).empty());
  EXPECT_EQ(guard.size(), 1u);
}

}  // namespace
}  // namespace fedge
