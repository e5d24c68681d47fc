#include "common/little_endian.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(LittleEndianTest, AppendLE_LeastSignificantByteFirst) {
  std::string out = "x";
  AppendLE(&out, 0x0102030405060708ULL, 8);
  EXPECT_EQ(out, std::string("x\x08\x07\x06\x05\x04\x03\x02\x01", 9));
}

TEST(LittleEndianTest, AppendLE_KeepsOnlyTheLowBytes) {
  std::string out;
  AppendLE(&out, 0xAABBCCDDEEULL, 4);
  EXPECT_EQ(out, "\xEE\xDD\xCC\xBB");
}

TEST(LittleEndianTest, ReadLE_HighBitsAndEveryWidth) {
  const std::string bytes("\xFF\x80\x00\x7F\x01\x02\x03\xFE", 8);
  EXPECT_EQ(ReadLE(bytes.data(), 1), 0xFFu);
  EXPECT_EQ(ReadLE(bytes.data(), 2), 0x80FFu);
  EXPECT_EQ(ReadLE(bytes.data(), 4), 0x7F0080FFu);
  EXPECT_EQ(ReadLE(bytes.data(), 8), 0xFE0302017F0080FFULL);
}

TEST(LittleEndianTest, RoundTrip) {
  for (const uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{0xFFFFFFFF},
                           ~uint64_t{0}, uint64_t{1} << 63}) {
    std::string out;
    AppendLE(&out, v, 8);
    ASSERT_EQ(out.size(), 8u);
    EXPECT_EQ(ReadLE(out.data(), 8), v);
  }
}

}  // namespace
}  // namespace fedge
