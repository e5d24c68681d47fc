#include "common/proto_split.h"

#include <algorithm>

namespace fedge {
namespace {

// Consumes bytes across pieces.
class PieceReader {
 public:
  explicit PieceReader(absl::Span<const absl::string_view> pieces)
      : pieces_(pieces) {
    for (absl::string_view p : pieces) remaining_ += p.size();
  }

  uint64_t consumed() const { return consumed_; }
  uint64_t remaining() const { return remaining_; }

  bool Byte(uint8_t* b) {
    while (piece_ < pieces_.size() && at_ == pieces_[piece_].size()) {
      ++piece_;
      at_ = 0;
    }
    if (piece_ == pieces_.size()) return false;
    *b = static_cast<uint8_t>(pieces_[piece_][at_++]);
    ++consumed_;
    --remaining_;
    return true;
  }

  // A base-128 varint of at most 10 bytes whose value fits in 64 bits.
  bool Varint(uint64_t* value) {
    *value = 0;
    for (int i = 0; i < 10; ++i) {
      uint8_t b;
      if (!Byte(&b)) return false;
      if (i == 9 && b > 1) return false;  // Bits beyond 64.
      *value |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }

  bool Skip(uint64_t n) {
    if (n > remaining_) return false;
    remaining_ -= n;
    consumed_ += n;
    while (n > 0) {
      const uint64_t here = pieces_[piece_].size() - at_;
      const uint64_t step = std::min(n, here);
      at_ += step;
      n -= step;
      if (at_ == pieces_[piece_].size() && n > 0) {
        ++piece_;
        at_ = 0;
      }
    }
    return true;
  }

  // Views of everything not consumed yet.
  std::vector<absl::string_view> Rest() const {
    std::vector<absl::string_view> rest;
    for (size_t i = piece_; i < pieces_.size(); ++i) {
      absl::string_view p = pieces_[i];
      if (i == piece_) p.remove_prefix(at_);
      if (!p.empty()) rest.push_back(p);
    }
    return rest;
  }

 private:
  absl::Span<const absl::string_view> pieces_;
  size_t piece_ = 0;
  size_t at_ = 0;  // Within pieces_[piece_].
  uint64_t consumed_ = 0;
  uint64_t remaining_ = 0;
};

// The first `n` bytes of the pieces, copied.
std::string Prefix(absl::Span<const absl::string_view> pieces, uint64_t n) {
  std::string out;
  out.reserve(n);
  for (absl::string_view p : pieces) {
    if (out.size() == n) break;
    out.append(p.data(), std::min<uint64_t>(p.size(), n - out.size()));
  }
  return out;
}

}  // namespace

void AppendLengthDelimitedHeader(std::string* out, uint32_t field,
                                 uint64_t length) {
  const uint64_t tag = (uint64_t{field} << 3) | 2;
  for (uint64_t v : {tag, length}) {
    for (; v >= 0x80; v >>= 7) out->push_back(static_cast<char>(v | 0x80));
    out->push_back(static_cast<char>(v));
  }
}

std::optional<TrailingField> SplitTrailingField(
    absl::Span<const absl::string_view> pieces, uint32_t field) {
  PieceReader in(pieces);
  while (in.remaining() > 0) {
    const uint64_t field_start = in.consumed();
    uint64_t tag;
    if (!in.Varint(&tag) || tag > UINT32_MAX || (tag >> 3) == 0) {
      return std::nullopt;
    }
    switch (tag & 7) {
      case 0: {  // Varint.
        uint64_t ignored;
        if (!in.Varint(&ignored)) return std::nullopt;
        break;
      }
      case 1:  // Fixed 64 bits.
        if (!in.Skip(8)) return std::nullopt;
        break;
      case 5:  // Fixed 32 bits.
        if (!in.Skip(4)) return std::nullopt;
        break;
      case 2: {  // Length-delimited.
        uint64_t length;
        if (!in.Varint(&length)) return std::nullopt;
        if ((tag >> 3) == field && length == in.remaining()) {
          TrailingField out;
          out.head = Prefix(pieces, field_start);
          out.value = in.Rest();
          out.value_size = length;
          return out;
        }
        if (!in.Skip(length)) return std::nullopt;
        break;
      }
      default:  // Groups (3, 4) and invalid wire types.
        return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace fedge
