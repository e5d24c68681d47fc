#include "common/checksum.h"

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i % 251);
  return s;
}

// Known values from Debian's xxhsum (package xxhash, `xxhsum -H2`), an
// implementation this code does not share.
TEST(Xxh3_128Test, MatchesXxhsum) {
  EXPECT_EQ(ToHex(Xxh3_128Of("")), "99aa06d3014798d86001c324468d497f");
  EXPECT_EQ(ToHex(Xxh3_128Of("abc")), "06b05ab6733a618578af5f94892f3950");
  EXPECT_EQ(ToHex(Xxh3_128Of(Pattern(100000))),
            "54182c58bbb1337c42c23aeead96750d");
}

TEST(Xxh3_128Test, PiecesHashAsTheWhole_AndFinishResets) {
  const std::string data = Pattern(100000);
  for (size_t piece : {1, 7, 64, 1000, 65536}) {
    Xxh3_128 hasher;
    for (size_t at = 0; at < data.size(); at += piece) {
      hasher.Update(absl::string_view(data).substr(at, piece));
    }
    EXPECT_EQ(hasher.Finish(), Xxh3_128Of(data)) << piece;
    hasher.Update("abc");
    EXPECT_EQ(hasher.Finish(), Xxh3_128Of("abc")) << piece;
  }
}

TEST(UploadCheckTest, ValidateWantsExactlyOneWellFormedValue) {
  const std::string xxh = ToHex(Xxh3_128Of("bytes"));
  const std::string sha = ToHex(Sha256Of("bytes"));
  EXPECT_TRUE(UploadCheck::Validate("", xxh).ok());
  EXPECT_TRUE(UploadCheck::Validate(sha, "").ok());
  for (const auto& [s, x] : {std::pair<std::string, std::string>{"", ""},
                             {sha, xxh}}) {
    const absl::Status status = UploadCheck::Validate(s, x);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("exactly one"));
  }
  for (const std::string& bad :
       {xxh.substr(1), xxh + "0", std::string(32, 'g'), std::string(32, 'A')}) {
    const absl::Status status = UploadCheck::Validate("", bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(status.message(), HasSubstr("xxh3_128")) << bad;
  }
  const absl::Status short_sha = UploadCheck::Validate(sha.substr(2), "");
  EXPECT_EQ(short_sha.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_sha.message(), HasSubstr("sha256"));
}

TEST(UploadCheckTest, VerifiesTheNamedChecksum) {
  const std::string data = Pattern(5000);
  UploadCheck xxh("", ToHex(Xxh3_128Of(data)));
  EXPECT_EQ(xxh.name(), "xxh3_128");
  xxh.Update(absl::string_view(data).substr(0, 1234));
  xxh.Update(absl::string_view(data).substr(1234));
  EXPECT_TRUE(xxh.Verify().ok());

  UploadCheck sha(ToHex(Sha256Of(data)), "");
  EXPECT_EQ(sha.name(), "sha256");
  sha.Update(data);
  EXPECT_TRUE(sha.Verify().ok());

  std::string flipped = data;
  flipped[4321] ^= 1;
  UploadCheck corrupt("", ToHex(Xxh3_128Of(data)));
  corrupt.Update(flipped);
  const absl::Status s = corrupt.Verify();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("xxh3_128"));

  // Not validated: fails whatever the bytes, with Validate's status.
  UploadCheck neither("", "");
  EXPECT_EQ(neither.name(), "checksum");
  neither.Update(data);
  EXPECT_EQ(neither.Verify(), UploadCheck::Validate("", ""));

  UploadCheck truncated(ToHex(Sha256Of(data)), "");
  truncated.Update(absl::string_view(data).substr(0, 4999));
  EXPECT_EQ(truncated.Verify().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedge
