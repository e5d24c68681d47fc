// Reading a model or update chunk from a gRPC raw method (ByteBuffers)
// without copying its data.
//
// gRPC's protobuf deserializer copies a chunk's `data` (a megabyte) into a
// std::string before anyone reads it. A chunk whose `data` is its last
// field, as fedge's senders write it, is split instead (SplitTrailingField,
// common/proto_split.h): the other fields are parsed, and the data is read
// where gRPC received it. Any other chunk is parsed whole, as before.
#ifndef FEDGE_COMMON_NET_RAW_CHUNK_H_
#define FEDGE_COMMON_NET_RAW_CHUNK_H_

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/byte_buffer.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/proto_split.h"

namespace fedge {

// Message: v1::ModelChunk or v1::UpdateChunk (a bytes field `data`).
template <typename Message>
class RawChunk {
 public:
  // Parses `raw` into `message`; `data()` is then the message's data (the
  // field itself is left empty when split). INVALID_ARGUMENT when the bytes
  // do not parse. `raw` may be reused as soon as this returns: the data
  // views hold their own references to its slices, until the next Parse.
  absl::Status Parse(grpc::ByteBuffer& raw, Message* message) {
    slices_.clear();
    data_.clear();
    message->Clear();
    if (!raw.Dump(&slices_).ok()) return Malformed("unreadable");
    std::vector<absl::string_view> views;
    views.reserve(slices_.size());
    for (const grpc::Slice& s : slices_) {
      views.emplace_back(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    std::optional<TrailingField> split =
        SplitTrailingField(views, Message::kDataFieldNumber);
    if (split.has_value()) {
      if (!message->ParseFromString(split->head)) {
        return Malformed("does not parse");
      }
      // The trailing data is the field's (and its oneof's) last value.
      message->set_data(std::string());
      data_ = std::move(split->value);
      return absl::OkStatus();
    }
    slices_.clear();
    grpc::Status parsed =
        grpc::SerializationTraits<Message>::Deserialize(&raw, message);
    if (!parsed.ok()) return Malformed(parsed.error_message());
    if (!message->data().empty()) data_.push_back(message->data());
    return absl::OkStatus();
  }

  // The data in pieces (none when empty).
  const std::vector<absl::string_view>& data() const { return data_; }

 private:
  static absl::Status Malformed(absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed ", Message::descriptor()->name(), ": ", why));
  }

  std::vector<grpc::Slice> slices_;  // References to the received bytes.
  std::vector<absl::string_view> data_;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_NET_RAW_CHUNK_H_
