// The byte messages of the secure-aggregation protocol (see client.h for
// the rounds) and their encoders and validating decoders.
//
// Every message starts with a 37-byte header: "FSA", format version 1, a
// MessageType byte, and the session's ConfigDigest (32 bytes), so a message
// of another session, or of a peer configured differently, is refused.
// Integers are little-endian: ids u32, counts u32, lengths u64, field
// elements u64. Lists of per-client entries are in ascending id order with
// no repeats (one canonical encoding per message). Each decoder checks every
// count against the session's num_clients and the exact remaining size
// before allocating, and returns INVALID_ARGUMENT naming what is wrong; it
// never trusts a peer's length.
//
// Pure functions; thread-safe.
#ifndef FEDGE_COMMON_SECAGG_MESSAGES_H_
#define FEDGE_COMMON_SECAGG_MESSAGES_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/secagg/crypto.h"
#include "common/secagg/shamir.h"
#include "common/sha256.h"

namespace fedge::secagg {

enum class MessageType : uint8_t {
  kAdvertiseKeys = 1,      // client -> server, round 0
  kKeyDirectory = 2,       // server -> clients, end of round 0
  kShareKeys = 3,          // client -> server, round 1
  kEncryptedShares = 4,    // server -> each client, end of round 1
  kMaskedInput = 5,        // client -> server, round 2
  kUnmaskingRequest = 6,   // server -> clients, end of round 2
  kUnmaskingResponse = 7,  // client -> server, round 3
};

inline constexpr size_t kHeaderBytes = 4 + 1 + 32;
// The plaintext of one share ciphertext: the sender's masking-key share and
// self-mask-seed share for the recipient, kShareElements u64 each.
inline constexpr size_t kSharePlaintextBytes = 2 * kShareElements * 8;
inline constexpr size_t kShareCiphertextBytes =
    kSharePlaintextBytes + kAeadOverheadBytes;

// What the decoders check ids and lengths against.
struct MessageContext {
  Sha256Digest config_digest{};
  int num_clients = 0;
  int64_t vector_length = 0;
};

// Round 0: a client's two public keys (c for encryption, s for masking).
struct AdvertiseKeysMessage {
  int client_id = 0;
  X25519Key encryption_key{};
  X25519Key masking_key{};
};

// End of round 0: every client that advertised keys (U1), ascending ids.
struct KeyDirectoryMessage {
  std::vector<AdvertiseKeysMessage> clients;
};

struct EncryptedShare {
  int peer_id = 0;  // recipient (in ShareKeys) or sender (in EncryptedShares)
  std::string ciphertext;  // kShareCiphertextBytes
};

// Round 1: a client's commitment to its self-mask seed and one share
// ciphertext for each of its neighbours in U1, ascending recipient ids.
struct ShareKeysMessage {
  int client_id = 0;
  Sha256Digest self_mask_commitment{};
  std::vector<EncryptedShare> shares;
};

// End of round 1, for one recipient: the ciphertexts addressed to it by its
// neighbours in U2 (the clients that sent ShareKeys), ascending sender ids.
struct EncryptedSharesMessage {
  int recipient_id = 0;
  std::vector<EncryptedShare> shares;
};

// Round 2: the masked input, vector_length ring elements (u32 each).
struct MaskedInputView {
  int client_id = 0;
  absl::string_view words;  // 4 * vector_length bytes, little-endian u32
};

// End of round 2: who sent a masked input (U3) and who of U2 did not.
// Disjoint, ascending.
struct UnmaskingRequestMessage {
  std::vector<int> survivors;
  std::vector<int> dropped;
};

// One share held by the responder, of the secret of `owner`.
struct HeldShare {
  int owner_id = 0;
  std::array<uint64_t, kShareElements> values{};
};

// Round 3: the responder's shares of the self-mask seeds of the surviving
// neighbours and of the masking keys of the dropped ones, ascending owners.
struct UnmaskingResponseMessage {
  int client_id = 0;
  std::vector<HeldShare> self_mask_shares;
  std::vector<HeldShare> masking_key_shares;
};

std::string Encode(const MessageContext& ctx, const AdvertiseKeysMessage& m);
std::string Encode(const MessageContext& ctx, const KeyDirectoryMessage& m);
std::string Encode(const MessageContext& ctx, const ShareKeysMessage& m);
std::string Encode(const MessageContext& ctx, const EncryptedSharesMessage& m);
std::string Encode(const MessageContext& ctx, const UnmaskingRequestMessage& m);
std::string Encode(const MessageContext& ctx,
                   const UnmaskingResponseMessage& m);
// The masked input's header; the caller appends 4 * vector_length bytes.
std::string EncodeMaskedInputHeader(const MessageContext& ctx, int client_id);
// Bytes of a whole masked-input message.
size_t MaskedInputBytes(const MessageContext& ctx);

// Decoders: INVALID_ARGUMENT naming the problem (wrong header, type or
// session; an id outside 1..num_clients; entries out of order or repeated;
// a count above num_clients; a size that does not add up; a field element
// out of range).
absl::StatusOr<AdvertiseKeysMessage> DecodeAdvertiseKeys(
    const MessageContext& ctx, absl::string_view bytes);
absl::StatusOr<KeyDirectoryMessage> DecodeKeyDirectory(
    const MessageContext& ctx, absl::string_view bytes);
absl::StatusOr<ShareKeysMessage> DecodeShareKeys(const MessageContext& ctx,
                                                 absl::string_view bytes);
absl::StatusOr<EncryptedSharesMessage> DecodeEncryptedShares(
    const MessageContext& ctx, absl::string_view bytes);
// The view points into `bytes`.
absl::StatusOr<MaskedInputView> DecodeMaskedInput(const MessageContext& ctx,
                                                  absl::string_view bytes);
absl::StatusOr<UnmaskingRequestMessage> DecodeUnmaskingRequest(
    const MessageContext& ctx, absl::string_view bytes);
absl::StatusOr<UnmaskingResponseMessage> DecodeUnmaskingResponse(
    const MessageContext& ctx, absl::string_view bytes);

}  // namespace fedge::secagg

#endif  // FEDGE_COMMON_SECAGG_MESSAGES_H_
