// Reading one large bytes field of a protobuf message without copying it.
//
// gRPC hands a received message over as slices; protobuf's parser copies a
// bytes field into a std::string, one more pass over every model chunk and
// update chunk (megabytes each). When the field is the message's last and
// runs to its end, as fedge's senders write it, SplitTrailingField finds
// it in the slices: the caller parses the few bytes before it the usual
// way and reads the field's value where it lies. Pure wire-format code, no
// gRPC: tests/fuzz/proto_split_fuzz checks it against protobuf's parser.
#ifndef FEDGE_COMMON_PROTO_SPLIT_H_
#define FEDGE_COMMON_PROTO_SPLIT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace fedge {

struct TrailingField {
  // The serialization of the other fields (the message without the
  // trailing field), copied.
  std::string head;
  // The trailing field's value, as views into the pieces given.
  std::vector<absl::string_view> value;
  uint64_t value_size = 0;
};

// The message serialized in `pieces` (concatenated) = head, then the tag of
// length-delimited field `field`, its length and exactly that many bytes to
// the end. nullopt when it is not: the field absent or not last, a
// malformed or truncated field before it, a group, or an empty message;
// parse such a message the usual way. Parsing `head` and setting the field
// to `value` gives what parsing the whole message gives (for a singular or
// oneof bytes field: the last occurrence wins).
std::optional<TrailingField> SplitTrailingField(
    absl::Span<const absl::string_view> pieces, uint32_t field);

// The other direction: appends the tag of length-delimited field `field`
// and `length`, after which a sender puts `length` bytes of the field's
// value (from wherever they are, without copying them into a message).
// Parsers take a message's fields in any order, so the value may follow
// the message's other fields serialized the usual way.
void AppendLengthDelimitedHeader(std::string* out, uint32_t field,
                                 uint64_t length);

}  // namespace fedge

#endif  // FEDGE_COMMON_PROTO_SPLIT_H_
