#include "common/proto_split.h"

#include <random>
#include <string>
#include <vector>

#include "fedge/v1/federation.pb.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

constexpr uint32_t kModelData = v1::ModelChunk::kDataFieldNumber;
constexpr uint32_t kUpdateData = v1::UpdateChunk::kDataFieldNumber;

// `bytes` cut at random places into pieces (some empty).
std::vector<absl::string_view> Cut(absl::string_view bytes, std::mt19937& rng) {
  std::vector<absl::string_view> pieces;
  while (!bytes.empty()) {
    const size_t n = std::uniform_int_distribution<size_t>(0, 9)(rng);
    pieces.push_back(bytes.substr(0, n));
    bytes.remove_prefix(std::min(n, bytes.size()));
  }
  return pieces;
}

std::string Join(const std::vector<absl::string_view>& pieces) {
  std::string out;
  for (absl::string_view p : pieces) out.append(p.data(), p.size());
  return out;
}

// A model chunk as the coordinator writes it: the other fields, then data.
std::string DataLast(const v1::ModelChunk& fields, const std::string& data) {
  v1::ModelChunk head = fields;
  head.clear_data();
  v1::ModelChunk tail;
  tail.set_data(data);
  return head.SerializeAsString() + tail.SerializeAsString();
}

TEST(ProtoSplitTest, DataLast_SplitsAtEveryCut_SameAsProtobuf) {
  std::mt19937 rng(3);
  v1::ModelChunk fields;
  fields.set_version(7);
  fields.set_offset(1 << 20);
  fields.set_total_size_bytes(5 << 20);
  fields.set_sha256(std::string(64, 'a'));
  fields.set_signature("sig");
  std::string data(3000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  const std::string message = DataLast(fields, data);
  for (int trial = 0; trial < 200; ++trial) {
    const std::vector<absl::string_view> pieces = Cut(message, rng);
    std::optional<TrailingField> split = SplitTrailingField(pieces, kModelData);
    ASSERT_TRUE(split.has_value());
    EXPECT_EQ(split->value_size, data.size());
    EXPECT_EQ(Join(split->value), data);
    v1::ModelChunk parsed;
    ASSERT_TRUE(parsed.ParseFromString(split->head));
    EXPECT_EQ(parsed.data(), "");
    EXPECT_EQ(parsed.version(), 7);
    EXPECT_EQ(parsed.signature(), "sig");
  }
}

TEST(ProtoSplitTest, NotLast_Absent_Malformed_Nullopt) {
  v1::ModelChunk chunk;
  chunk.set_version(1);
  chunk.set_data("abc");
  chunk.set_signature("after the data");  // Field 20: serialized after 5.
  const std::string signed_chunk = chunk.SerializeAsString();
  EXPECT_FALSE(SplitTrailingField({signed_chunk}, kModelData).has_value());
  chunk.clear_data();
  const std::string no_data = chunk.SerializeAsString();
  EXPECT_FALSE(SplitTrailingField({no_data}, kModelData).has_value());
  EXPECT_FALSE(SplitTrailingField({}, kModelData).has_value());
  // Truncated: the length says more than there is.
  const std::string truncated =
      "\x2a\x05"
      "abc";
  EXPECT_FALSE(SplitTrailingField({truncated}, kModelData).has_value());
  // A group, an invalid wire type, field number 0, an overlong varint.
  for (std::string bad :
       {std::string("\x0b\x0c\x2a\x01x", 5), std::string("\x0e\x2a\x01x", 4),
        std::string("\x02\x00\x2a\x01x", 5),
        std::string(11, '\xff') + "\x2a\x01x"}) {
    EXPECT_FALSE(SplitTrailingField({bad}, kModelData).has_value());
  }
}

TEST(ProtoSplitTest, UpdateChunk_DataAloneAndMetadataThenData) {
  v1::UpdateChunk data;
  data.set_data(std::string(100, 'x'));
  const std::string bytes = data.SerializeAsString();
  std::optional<TrailingField> split = SplitTrailingField({bytes}, kUpdateData);
  ASSERT_TRUE(split.has_value());
  EXPECT_TRUE(split->head.empty());
  EXPECT_EQ(Join(split->value), data.data());
  // Metadata, then data: the oneof's last member wins, in both readings.
  v1::UpdateChunk meta;
  meta.mutable_metadata()->set_round(3);
  const std::string both = meta.SerializeAsString() + bytes;
  split = SplitTrailingField({both}, kUpdateData);
  ASSERT_TRUE(split.has_value());
  v1::UpdateChunk whole, head;
  ASSERT_TRUE(whole.ParseFromString(both));
  ASSERT_TRUE(head.ParseFromString(split->head));
  head.set_data(Join(split->value));
  EXPECT_EQ(whole.part_case(), v1::UpdateChunk::kData);
  EXPECT_EQ(head.SerializeAsString(), whole.SerializeAsString());
  // Metadata alone: parsed the usual way.
  const std::string meta_only = meta.SerializeAsString();
  EXPECT_FALSE(SplitTrailingField({meta_only}, kUpdateData).has_value());
}

// A header and the value's bytes are what protobuf serializes for a
// message holding that field alone, for lengths whose varint takes 1 to 3
// bytes (an empty value, which protobuf leaves out, parses the same).
TEST(ProtoSplitTest, AppendLengthDelimitedHeader_AsProtobufSerializes) {
  for (size_t n : {size_t{1}, size_t{127}, size_t{128}, size_t{16383},
                   size_t{16384}, size_t{1} << 20}) {
    v1::ModelChunk chunk;
    chunk.set_data(std::string(n, 'd'));
    std::string written;
    AppendLengthDelimitedHeader(&written, kModelData, n);
    written += chunk.data();
    EXPECT_EQ(written, chunk.SerializeAsString()) << n;
    std::optional<TrailingField> split =
        SplitTrailingField({written}, kModelData);
    ASSERT_TRUE(split.has_value()) << n;
    EXPECT_EQ(split->value_size, n);
  }
  std::string empty;
  AppendLengthDelimitedHeader(&empty, kModelData, 0);
  v1::ModelChunk parsed;
  ASSERT_TRUE(parsed.ParseFromString(empty));
  EXPECT_EQ(parsed.data(), "");
}

}  // namespace
}  // namespace fedge
