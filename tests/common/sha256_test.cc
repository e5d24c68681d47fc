#include "common/sha256.h"

#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(Sha256Test, EmptyInput_KnownVector) {
  EXPECT_EQ(ToHex(Sha256Of("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256Test, Abc_KnownVector) {
  EXPECT_EQ(ToHex(Sha256Of("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, TwoBlockMessage_KnownVector) {
  EXPECT_EQ(ToHex(Sha256Of(
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Test, Incremental_EqualsOneShot) {
  std::string data;
  for (int i = 0; i < 100000; ++i) data.push_back(static_cast<char>(i * 31));
  const Sha256Digest one_shot = Sha256Of(data);
  for (size_t piece : {1u, 7u, 64u, 1000u, 65536u}) {
    Sha256 hasher;
    for (size_t at = 0; at < data.size(); at += piece) {
      hasher.Update(data.data() + at, std::min(piece, data.size() - at));
    }
    EXPECT_EQ(hasher.Finish(), one_shot) << "piece " << piece;
  }
}

TEST(Sha256Test, Finish_ResetsForReuse) {
  Sha256 hasher;
  hasher.Update("garbage");
  hasher.Finish();
  hasher.Update("ab");
  hasher.Update(absl::string_view("c"));
  EXPECT_EQ(hasher.Finish(), Sha256Of("abc"));
  EXPECT_EQ(hasher.Finish(), Sha256Of(""));
}

TEST(Sha256Test, Moved_KeepsState) {
  Sha256 first;
  first.Update("a");
  Sha256 second(std::move(first));
  second.Update("bc");
  Sha256 third;
  third = std::move(second);
  EXPECT_EQ(third.Finish(), Sha256Of("abc"));
}

TEST(Sha256Test, ToHex_IsLowerCase64Chars) {
  Sha256Digest digest{};
  digest[0] = 0xAB;
  digest[31] = 0x0F;
  const std::string hex = ToHex(digest);
  ASSERT_EQ(hex.size(), 64u);
  EXPECT_EQ(hex.substr(0, 2), "ab");
  EXPECT_EQ(hex.substr(62), "0f");
}

TEST(Sha256Test, IsLowerHex_OnlyWhatToHexWrites) {
  EXPECT_TRUE(IsLowerHex(ToHex(Sha256Of("abc"))));
  EXPECT_TRUE(IsLowerHex("0123456789abcdef"));
  EXPECT_TRUE(IsLowerHex(""));
  for (const char* bad : {"AB", "0g", "0x", " a", "a\n", "-1"}) {
    EXPECT_FALSE(IsLowerHex(bad)) << bad;
  }
}

}  // namespace
}  // namespace fedge
