#include "common/secagg/messages.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/little_endian.h"
#include "common/status_macros.h"

namespace fedge::secagg {
namespace {

constexpr char kMagic[3] = {'F', 'S', 'A'};
constexpr uint8_t kFormatVersion = 1;
constexpr size_t kKeyEntryBytes = 4 + 2 * kX25519KeyBytes;
constexpr size_t kShareEntryBytes = 4 + kShareCiphertextBytes;
constexpr size_t kHeldShareBytes = 4 + kShareElements * 8;

const char* TypeName(uint8_t type) {
  switch (static_cast<MessageType>(type)) {
    case MessageType::kAdvertiseKeys:
      return "AdvertiseKeys";
    case MessageType::kKeyDirectory:
      return "KeyDirectory";
    case MessageType::kShareKeys:
      return "ShareKeys";
    case MessageType::kEncryptedShares:
      return "EncryptedShares";
    case MessageType::kMaskedInput:
      return "MaskedInput";
    case MessageType::kUnmaskingRequest:
      return "UnmaskingRequest";
    case MessageType::kUnmaskingResponse:
      return "UnmaskingResponse";
  }
  return "unknown";
}

template <size_t N>
void PutArray(std::string& out, const std::array<uint8_t, N>& a) {
  out.append(reinterpret_cast<const char*>(a.data()), N);
}

std::string Header(const MessageContext& ctx, MessageType type) {
  std::string out(kMagic, sizeof(kMagic));
  out.push_back(static_cast<char>(kFormatVersion));
  out.push_back(static_cast<char>(type));
  PutArray(out, ctx.config_digest);
  return out;
}

// Consumes a message front to back; every read checks the size first.
class Reader {
 public:
  Reader(absl::string_view bytes, const char* what)
      : rest_(bytes), what_(what) {}

  size_t remaining() const { return rest_.size(); }

  absl::Status Need(size_t n, absl::string_view field) const {
    if (rest_.size() < n) {
      return absl::InvalidArgumentError(
          absl::StrCat(what_, " message truncated at ", field, " (needs ", n,
                       " bytes, ", rest_.size(), " left)"));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<uint32_t> U32(absl::string_view field) {
    RETURN_IF_ERROR(Need(4, field));
    const auto v = static_cast<uint32_t>(ReadLE(rest_.data(), 4));
    rest_.remove_prefix(4);
    return v;
  }
  absl::StatusOr<uint64_t> U64(absl::string_view field) {
    RETURN_IF_ERROR(Need(8, field));
    const uint64_t v = ReadLE(rest_.data(), 8);
    rest_.remove_prefix(8);
    return v;
  }
  absl::StatusOr<absl::string_view> Bytes(size_t n, absl::string_view field) {
    RETURN_IF_ERROR(Need(n, field));
    absl::string_view out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return out;
  }
  template <size_t N>
  absl::Status Array(std::array<uint8_t, N>& out, absl::string_view field) {
    ASSIGN_OR_RETURN(absl::string_view b, Bytes(N, field));
    std::memcpy(out.data(), b.data(), N);
    return absl::OkStatus();
  }
  // A client id in [1, num_clients].
  absl::StatusOr<int> Id(const MessageContext& ctx, absl::string_view field) {
    ASSIGN_OR_RETURN(uint32_t id, U32(field));
    if (id < 1 || id > static_cast<uint32_t>(ctx.num_clients)) {
      return Error(absl::StrCat(field, " ", id, " is outside [1, ",
                                ctx.num_clients, "]"));
    }
    return static_cast<int>(id);
  }
  // A count of entries of `entry_bytes` each: at most num_clients, and that
  // many entries must fit in what is left (checked before any allocation).
  absl::StatusOr<size_t> Count(const MessageContext& ctx, size_t entry_bytes,
                               absl::string_view field) {
    ASSIGN_OR_RETURN(uint32_t n, U32(field));
    if (n > static_cast<uint32_t>(ctx.num_clients)) {
      return Error(absl::StrCat(field, " ", n, " exceeds the ", ctx.num_clients,
                                " clients of the session"));
    }
    RETURN_IF_ERROR(Need(size_t{n} * entry_bytes, field));
    return size_t{n};
  }
  absl::Status Header(const MessageContext& ctx, MessageType type) {
    RETURN_IF_ERROR(Need(kHeaderBytes, "header"));
    if (std::memcmp(rest_.data(), kMagic, sizeof(kMagic)) != 0) {
      return Error("not a secure-aggregation message (bad magic)");
    }
    if (Byte(3) != kFormatVersion) {
      return Error(absl::StrCat("unsupported format version ", Byte(3)));
    }
    if (Byte(4) != static_cast<uint8_t>(type)) {
      return Error(absl::StrCat("is a ", TypeName(Byte(4)), " message"));
    }
    if (std::memcmp(rest_.data() + 5, ctx.config_digest.data(), 32) != 0) {
      return Error("belongs to another session or configuration");
    }
    rest_.remove_prefix(kHeaderBytes);
    return absl::OkStatus();
  }
  absl::Status End() const {
    if (!rest_.empty()) {
      return Error(absl::StrCat(rest_.size(), " trailing bytes"));
    }
    return absl::OkStatus();
  }
  absl::Status Error(absl::string_view problem) const {
    return absl::InvalidArgumentError(
        absl::StrCat(what_, " message: ", problem));
  }

 private:
  uint8_t Byte(size_t i) const { return static_cast<uint8_t>(rest_[i]); }

  absl::string_view rest_;
  const char* what_;
};

// Ids must ascend strictly: one canonical encoding, no repeats.
absl::Status CheckAscending(const Reader& r, int previous, int id,
                            absl::string_view field) {
  if (id <= previous) {
    return r.Error(
        absl::StrCat(field, " ", id, " is repeated or out of order"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<EncryptedShare>> ReadShares(
    Reader& r, const MessageContext& ctx, absl::string_view field) {
  ASSIGN_OR_RETURN(size_t n, r.Count(ctx, kShareEntryBytes, "share count"));
  std::vector<EncryptedShare> shares(n);
  int previous = 0;
  for (EncryptedShare& share : shares) {
    ASSIGN_OR_RETURN(share.peer_id, r.Id(ctx, field));
    RETURN_IF_ERROR(CheckAscending(r, previous, share.peer_id, field));
    previous = share.peer_id;
    ASSIGN_OR_RETURN(absl::string_view c,
                     r.Bytes(kShareCiphertextBytes, "ciphertext"));
    share.ciphertext = std::string(c);
  }
  return shares;
}

void PutShares(std::string& out, const std::vector<EncryptedShare>& shares) {
  AppendLE(&out, static_cast<uint32_t>(shares.size()), 4);
  for (const EncryptedShare& s : shares) {
    AppendLE(&out, static_cast<uint32_t>(s.peer_id), 4);
    out += s.ciphertext;
  }
}

absl::StatusOr<std::vector<int>> ReadIds(Reader& r, const MessageContext& ctx,
                                         absl::string_view field) {
  ASSIGN_OR_RETURN(size_t n, r.Count(ctx, 4, "id count"));
  std::vector<int> ids(n);
  int previous = 0;
  for (int& id : ids) {
    ASSIGN_OR_RETURN(id, r.Id(ctx, field));
    RETURN_IF_ERROR(CheckAscending(r, previous, id, field));
    previous = id;
  }
  return ids;
}

void PutIds(std::string& out, const std::vector<int>& ids) {
  AppendLE(&out, static_cast<uint32_t>(ids.size()), 4);
  for (int id : ids) AppendLE(&out, static_cast<uint32_t>(id), 4);
}

absl::StatusOr<std::vector<HeldShare>> ReadHeldShares(Reader& r,
                                                      const MessageContext& ctx,
                                                      absl::string_view field) {
  ASSIGN_OR_RETURN(size_t n, r.Count(ctx, kHeldShareBytes, "share count"));
  std::vector<HeldShare> shares(n);
  int previous = 0;
  for (HeldShare& share : shares) {
    ASSIGN_OR_RETURN(share.owner_id, r.Id(ctx, field));
    RETURN_IF_ERROR(CheckAscending(r, previous, share.owner_id, field));
    previous = share.owner_id;
    for (uint64_t& v : share.values) {
      ASSIGN_OR_RETURN(v, r.U64("share value"));
      if (v >= kFieldPrime) {
        return r.Error(absl::StrCat("share of ", field, " ", share.owner_id,
                                    " is not a field element"));
      }
    }
  }
  return shares;
}

void PutHeldShares(std::string& out, const std::vector<HeldShare>& shares) {
  AppendLE(&out, static_cast<uint32_t>(shares.size()), 4);
  for (const HeldShare& s : shares) {
    AppendLE(&out, static_cast<uint32_t>(s.owner_id), 4);
    for (uint64_t v : s.values) AppendLE(&out, v, 8);
  }
}

}  // namespace

std::string Encode(const MessageContext& ctx, const AdvertiseKeysMessage& m) {
  std::string out = Header(ctx, MessageType::kAdvertiseKeys);
  AppendLE(&out, static_cast<uint32_t>(m.client_id), 4);
  PutArray(out, m.encryption_key);
  PutArray(out, m.masking_key);
  return out;
}

std::string Encode(const MessageContext& ctx, const KeyDirectoryMessage& m) {
  std::string out = Header(ctx, MessageType::kKeyDirectory);
  AppendLE(&out, static_cast<uint32_t>(m.clients.size()), 4);
  for (const AdvertiseKeysMessage& c : m.clients) {
    AppendLE(&out, static_cast<uint32_t>(c.client_id), 4);
    PutArray(out, c.encryption_key);
    PutArray(out, c.masking_key);
  }
  return out;
}

std::string Encode(const MessageContext& ctx, const ShareKeysMessage& m) {
  std::string out = Header(ctx, MessageType::kShareKeys);
  AppendLE(&out, static_cast<uint32_t>(m.client_id), 4);
  PutArray(out, m.self_mask_commitment);
  PutShares(out, m.shares);
  return out;
}

std::string Encode(const MessageContext& ctx, const EncryptedSharesMessage& m) {
  std::string out = Header(ctx, MessageType::kEncryptedShares);
  AppendLE(&out, static_cast<uint32_t>(m.recipient_id), 4);
  PutShares(out, m.shares);
  return out;
}

std::string Encode(const MessageContext& ctx,
                   const UnmaskingRequestMessage& m) {
  std::string out = Header(ctx, MessageType::kUnmaskingRequest);
  PutIds(out, m.survivors);
  PutIds(out, m.dropped);
  return out;
}

std::string Encode(const MessageContext& ctx,
                   const UnmaskingResponseMessage& m) {
  std::string out = Header(ctx, MessageType::kUnmaskingResponse);
  AppendLE(&out, static_cast<uint32_t>(m.client_id), 4);
  PutHeldShares(out, m.self_mask_shares);
  PutHeldShares(out, m.masking_key_shares);
  return out;
}

std::string EncodeMaskedInputHeader(const MessageContext& ctx, int client_id) {
  std::string out = Header(ctx, MessageType::kMaskedInput);
  AppendLE(&out, static_cast<uint32_t>(client_id), 4);
  AppendLE(&out, static_cast<uint64_t>(ctx.vector_length), 8);
  return out;
}

size_t MaskedInputBytes(const MessageContext& ctx) {
  return kHeaderBytes + 4 + 8 + 4 * static_cast<size_t>(ctx.vector_length);
}

absl::StatusOr<AdvertiseKeysMessage> DecodeAdvertiseKeys(
    const MessageContext& ctx, absl::string_view bytes) {
  Reader r(bytes, "AdvertiseKeys");
  RETURN_IF_ERROR(r.Header(ctx, MessageType::kAdvertiseKeys));
  AdvertiseKeysMessage m;
  ASSIGN_OR_RETURN(m.client_id, r.Id(ctx, "client id"));
  RETURN_IF_ERROR(r.Array(m.encryption_key, "encryption key"));
  RETURN_IF_ERROR(r.Array(m.masking_key, "masking key"));
  RETURN_IF_ERROR(r.End());
  return m;
}

absl::StatusOr<KeyDirectoryMessage> DecodeKeyDirectory(
    const MessageContext& ctx, absl::string_view bytes) {
  Reader r(bytes, "KeyDirectory");
  RETURN_IF_ERROR(r.Header(ctx, MessageType::kKeyDirectory));
  ASSIGN_OR_RETURN(size_t n, r.Count(ctx, kKeyEntryBytes, "client count"));
  KeyDirectoryMessage m;
  m.clients.resize(n);
  int previous = 0;
  for (AdvertiseKeysMessage& c : m.clients) {
    ASSIGN_OR_RETURN(c.client_id, r.Id(ctx, "client id"));
    RETURN_IF_ERROR(CheckAscending(r, previous, c.client_id, "client id"));
    previous = c.client_id;
    RETURN_IF_ERROR(r.Array(c.encryption_key, "encryption key"));
    RETURN_IF_ERROR(r.Array(c.masking_key, "masking key"));
  }
  RETURN_IF_ERROR(r.End());
  return m;
}

absl::StatusOr<ShareKeysMessage> DecodeShareKeys(const MessageContext& ctx,
                                                 absl::string_view bytes) {
  Reader r(bytes, "ShareKeys");
  RETURN_IF_ERROR(r.Header(ctx, MessageType::kShareKeys));
  ShareKeysMessage m;
  ASSIGN_OR_RETURN(m.client_id, r.Id(ctx, "client id"));
  RETURN_IF_ERROR(r.Array(m.self_mask_commitment, "commitment"));
  ASSIGN_OR_RETURN(m.shares, ReadShares(r, ctx, "recipient id"));
  RETURN_IF_ERROR(r.End());
  return m;
}

absl::StatusOr<EncryptedSharesMessage> DecodeEncryptedShares(
    const MessageContext& ctx, absl::string_view bytes) {
  Reader r(bytes, "EncryptedShares");
  RETURN_IF_ERROR(r.Header(ctx, MessageType::kEncryptedShares));
  EncryptedSharesMessage m;
  ASSIGN_OR_RETURN(m.recipient_id, r.Id(ctx, "recipient id"));
  ASSIGN_OR_RETURN(m.shares, ReadShares(r, ctx, "sender id"));
  RETURN_IF_ERROR(r.End());
  return m;
}

absl::StatusOr<MaskedInputView> DecodeMaskedInput(const MessageContext& ctx,
                                                  absl::string_view bytes) {
  Reader r(bytes, "MaskedInput");
  RETURN_IF_ERROR(r.Header(ctx, MessageType::kMaskedInput));
  MaskedInputView m;
  ASSIGN_OR_RETURN(m.client_id, r.Id(ctx, "client id"));
  ASSIGN_OR_RETURN(uint64_t length, r.U64("vector length"));
  if (length != static_cast<uint64_t>(ctx.vector_length)) {
    return r.Error(absl::StrCat("vector length ", length, ", expected ",
                                ctx.vector_length));
  }
  ASSIGN_OR_RETURN(m.words, r.Bytes(4 * length, "masked elements"));
  RETURN_IF_ERROR(r.End());
  return m;
}

absl::StatusOr<UnmaskingRequestMessage> DecodeUnmaskingRequest(
    const MessageContext& ctx, absl::string_view bytes) {
  Reader r(bytes, "UnmaskingRequest");
  RETURN_IF_ERROR(r.Header(ctx, MessageType::kUnmaskingRequest));
  UnmaskingRequestMessage m;
  ASSIGN_OR_RETURN(m.survivors, ReadIds(r, ctx, "survivor id"));
  ASSIGN_OR_RETURN(m.dropped, ReadIds(r, ctx, "dropped id"));
  RETURN_IF_ERROR(r.End());
  return m;
}

absl::StatusOr<UnmaskingResponseMessage> DecodeUnmaskingResponse(
    const MessageContext& ctx, absl::string_view bytes) {
  Reader r(bytes, "UnmaskingResponse");
  RETURN_IF_ERROR(r.Header(ctx, MessageType::kUnmaskingResponse));
  UnmaskingResponseMessage m;
  ASSIGN_OR_RETURN(m.client_id, r.Id(ctx, "client id"));
  ASSIGN_OR_RETURN(m.self_mask_shares, ReadHeldShares(r, ctx, "survivor"));
  ASSIGN_OR_RETURN(m.masking_key_shares, ReadHeldShares(r, ctx, "dropped"));
  RETURN_IF_ERROR(r.End());
  return m;
}

}  // namespace fedge::secagg
