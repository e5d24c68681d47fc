// libFuzzer entry point for SplitTrailingField (common/proto_split.h), the
// zero-copy reading of model chunks (agents) and update chunks (the
// coordinator), checked against protobuf's own parser.
//
// The input is a mode byte (even: v1::ModelChunk and its data field; odd:
// v1::UpdateChunk and its), a cut count byte (mod 8), that many U16 piece
// lengths, then the message; the message is cut into pieces of those
// lengths (the rest in one), as gRPC's slices would be. Properties: when
// the split succeeds, the head is a prefix of the message and the value
// its suffix, of value_size bytes; and the message parses exactly when the
// head does, to the same message once the field is set to the value.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/proto_split.h"
#include "fedge/v1/federation.pb.h"
#include "tests/fuzz/fuzz_util.h"

namespace fedge {
namespace {

using fuzz::Check;
using fuzz::InputReader;
using fuzz::InputWriter;

// Parses `whole` and `head` + value as Message; checks they agree.
template <typename Message>
void Compare(const std::string& whole, const TrailingField& split,
             const std::string& value) {
  Message from_whole, from_head;
  const bool whole_ok = from_whole.ParseFromString(whole);
  const bool head_ok = from_head.ParseFromString(split.head);
  Check(whole_ok == head_ok, "the head parses iff the message does");
  if (!whole_ok) return;
  from_head.set_data(value);
  Check(from_head.SerializeAsString() == from_whole.SerializeAsString(),
        "head + value parse to the message");
}

void FuzzOne(absl::string_view input) {
  InputReader in(input);
  const bool update = (in.Byte() & 1) != 0;
  const int cuts = in.Byte() % 8;
  std::vector<size_t> lengths;
  for (int i = 0; i < cuts; ++i) lengths.push_back(in.U16());
  const std::string message(in.Rest());
  std::vector<absl::string_view> pieces;
  absl::string_view rest = message;
  for (size_t n : lengths) {
    pieces.push_back(rest.substr(0, n));
    rest.remove_prefix(std::min(n, rest.size()));
  }
  pieces.push_back(rest);
  const uint32_t field = update ? v1::UpdateChunk::kDataFieldNumber
                                : v1::ModelChunk::kDataFieldNumber;
  const std::optional<TrailingField> split = SplitTrailingField(pieces, field);
  if (!split.has_value()) return;
  std::string value;
  for (absl::string_view p : split->value) value.append(p.data(), p.size());
  Check(value.size() == split->value_size, "value_size is the value's");
  Check(split->head.size() + value.size() < message.size(),
        "a tag and a length between head and value");
  Check(message.compare(0, split->head.size(), split->head) == 0,
        "the head is the message's prefix");
  Check(
      message.compare(message.size() - value.size(), value.size(), value) == 0,
      "the value is the message's suffix");
  if (update) {
    Compare<v1::UpdateChunk>(message, *split, value);
  } else {
    Compare<v1::ModelChunk>(message, *split, value);
  }
}

std::vector<std::string> Seeds() {
  v1::ModelChunk first;
  first.set_version(3);
  first.set_total_size_bytes(100);
  first.set_sha256(std::string(64, 'f'));
  first.set_offset(0);
  v1::ModelChunk data;
  data.set_data("model bytes");
  first.set_signature("signature");  // Serialized after the data.
  v1::ModelChunk later;
  later.set_version(3);
  later.set_offset(11);
  later.set_data("more bytes");
  v1::UpdateChunk meta;
  meta.mutable_metadata()->set_round(2);
  meta.mutable_metadata()->set_upload_id("u-1");
  v1::UpdateChunk bytes;
  bytes.set_data("update bytes");
  return {
      // As the coordinator writes a first chunk: data after the rest.
      InputWriter()
          .Byte(0)
          .Byte(2)
          .U16(3)
          .U16(40)
          .Bytes(first.SerializeAsString() + data.SerializeAsString())
          .str(),
      InputWriter().Byte(0).Byte(0).Bytes(later.SerializeAsString()).str(),
      InputWriter()
          .Byte(1)
          .Byte(1)
          .U16(1)
          .Bytes(bytes.SerializeAsString())
          .str(),
      InputWriter()
          .Byte(1)
          .Byte(0)
          .Bytes(meta.SerializeAsString() + bytes.SerializeAsString())
          .str(),
      InputWriter().Byte(1).Byte(0).Bytes(meta.SerializeAsString()).str(),
  };
}

}  // namespace
}  // namespace fedge

FEDGE_FUZZ_TARGET(fedge::Seeds, fedge::FuzzOne)
