// The client side of secure aggregation (Bonawitz et al., "Practical Secure
// Aggregation for Privacy-Preserving Machine Learning", CCS 2017, the
// honest-but-curious variant; with SecAggConfig::neighbors > 0, the sparse
// graph of Bell et al., CCS 2020). Transport-free: every step takes the
// server's bytes and returns the bytes to send back; the caller carries
// them (gRPC in production, function calls in the simulator and tests).
//
// The rounds (server.h has the server's half):
//   0 AdvertiseKeys: fresh X25519 key pairs c (encryption) and s (masking);
//     send both public keys.
//   1 ShareKeys(KeyDirectory): pick a self-mask seed b; Shamir-share the
//     private key s and b t-of-|N[u] in U1| among the neighbours that
//     advertised keys (U1); encrypt each neighbour's pair of shares under
//     AES-256-GCM with a key derived from X25519(c_u, c_v); send them with a
//     hash commitment to b.
//   2 MaskInput(EncryptedShares, x): decrypt and keep the shares addressed
//     to us by the neighbours that shared keys (U2); send
//       y = q(x) + PRG(b) + sum_{v in U2, v neighbour} sign(u, v) PRG(s_uv)
//     in Z_{2^32}, where q quantizes (quantization.h), s_uv is derived from
//     X25519(s_u, s_v) and sign(u, v) is +1 for u > v, -1 for u < v.
//   3 Unmask(UnmaskingRequest): for each neighbour the server says survived
//     (sent y), reveal our share of its b; for each that dropped, our share
//     of its s. Never both for one peer, and only once: a request that puts
//     a peer in both lists, or in neither, is refused, and so is any second
//     request.
//
// The private masking key's shares let the server remove the pairwise masks
// of a client that dropped after sharing keys; the self-mask b keeps a
// client's y secret even if the server wrongly claims it dropped.
//
// State machine (legal transitions; any other call is FAILED_PRECONDITION
// and changes nothing):
//   kNew --AdvertiseKeys--> kKeysAdvertised --ShareKeys--> kKeysShared
//   kKeysShared --MaskInput--> kInputSent --Unmask--> kDone
// A refused message (INVALID_ARGUMENT: malformed, another session, or
// inconsistent with what this client saw) leaves the state unchanged, so the
// caller may abandon the client or retry with a correct message.
//
// Not thread-safe: one caller drives a client. Not copyable (owned through
// unique_ptr); key material is wiped on destruction.
#ifndef FEDGE_COMMON_SECAGG_CLIENT_H_
#define FEDGE_COMMON_SECAGG_CLIENT_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/secagg/config.h"
#include "common/secagg/crypto.h"
#include "common/secagg/messages.h"
#include "common/secagg/prg.h"
#include "common/secagg/quantization.h"
#include "common/secagg/shamir.h"

namespace fedge::secagg {

enum class ClientState {
  kNew,
  kKeysAdvertised,
  kKeysShared,
  kInputSent,
  kDone
};

// "new", "keys_advertised", "keys_shared", "input_sent" or "done".
const char* ClientStateName(ClientState state);

class SecAggClient {
 public:
  struct Options {
    // The session (ValidateConfig must pass); the server's must be equal.
    SecAggConfig config;
    // This client's id, 1..config.num_clients (its Shamir share index).
    int client_id = 0;
    // Key, seed, coefficient and nonce randomness; empty: RAND_bytes.
    RandomSource random;
  };

  // INVALID_ARGUMENT for a bad config or client id.
  static absl::StatusOr<std::unique_ptr<SecAggClient>> Create(Options options);

  SecAggClient(const SecAggClient&) = delete;
  SecAggClient& operator=(const SecAggClient&) = delete;
  ~SecAggClient();

  ClientState state() const { return state_; }
  int client_id() const { return id_; }

  // Round 0: the AdvertiseKeys message. FAILED_PRECONDITION unless kNew.
  absl::StatusOr<std::string> AdvertiseKeys();

  // Round 1: the ShareKeys message for `key_directory` (the server's
  // KeyDirectory for this client). FAILED_PRECONDITION unless
  // kKeysAdvertised; INVALID_ARGUMENT when the directory is malformed,
  // lacks this client or shows other keys for it, lists a non-neighbour,
  // repeats a public key, or has fewer than `threshold` clients of this
  // client's neighbourhood (itself included).
  absl::StatusOr<std::string> ShareKeys(absl::string_view key_directory);

  // Round 2: the MaskedInput message for `input` (vector_length floats;
  // clipped to [-max_abs_value, max_abs_value], see quantization.h).
  // FAILED_PRECONDITION unless kKeysShared; INVALID_ARGUMENT when
  // `encrypted_shares` is malformed, not for this client, from a sender
  // that is not a neighbour in the directory, fails decryption (names the
  // sender), or leaves fewer than `threshold` clients of the neighbourhood;
  // or when the input has the wrong length or a NaN.
  absl::StatusOr<std::string> MaskInput(absl::string_view encrypted_shares,
                                        absl::Span<const float> input);
  // The same for an input given as consecutive pieces (e.g. a model's
  // tensors, in order) whose sizes add up to vector_length: nothing is
  // concatenated, and the masks are generated in 16 KiB blocks, so memory
  // beyond the returned message is O(neighbours), whatever the length.
  absl::StatusOr<std::string> MaskInputPieces(
      absl::string_view encrypted_shares,
      absl::Span<const absl::Span<const float>> pieces);

  // Round 3: the UnmaskingResponse to `request`. FAILED_PRECONDITION unless
  // kInputSent (so at most one response, ever); INVALID_ARGUMENT when the
  // request is malformed, lists this client as dropped, lists a peer in
  // both lists or a peer whose shares this client does not hold, omits one
  // it holds, or names fewer than `threshold` survivors.
  absl::StatusOr<std::string> Unmask(absl::string_view unmasking_request);

 private:
  // What this client keeps of a neighbour (or of itself).
  struct Peer {
    ~Peer();
    X25519Key encryption_key{};
    X25519Key masking_key{};
    // X25519(c_self, c_peer): keys the share ciphertexts both ways.
    X25519Key encryption_agreement{};
    // Seed of the pairwise mask with the peer (unused for ourselves).
    Seed mask_seed{};
    // Our shares of the peer's secrets (set in ShareKeys for ourselves, in
    // MaskInput for the senders).
    std::optional<ShamirShare> masking_key_share;
    std::optional<ShamirShare> self_mask_share;
  };

  SecAggClient(Options options, Quantizer quantizer);

  absl::Status CheckState(ClientState expected, const char* step) const;
  absl::Status CheckDirectory(const KeyDirectoryMessage& directory) const;
  // The peers of `directory`, with their agreements and mask seeds.
  // INVALID_ARGUMENT for a low-order public key.
  absl::StatusOr<std::map<int, Peer>> PeersOf(
      const KeyDirectoryMessage& directory) const;
  // Decrypts the shares addressed to us into `peers` (a copy of peers_);
  // the senders, ascending, in `senders`.
  absl::Status OpenShares(const EncryptedSharesMessage& message,
                          std::map<int, Peer>& peers,
                          std::vector<int>& senders) const;
  absl::StatusOr<std::string> BuildMaskedInput(
      const std::vector<int>& senders, const std::map<int, Peer>& peers,
      absl::Span<const absl::Span<const float>> pieces) const;
  absl::Status CheckUnmaskingRequest(
      const UnmaskingRequestMessage& request) const;

  const SecAggConfig config_;
  const int id_;
  const RandomSource random_;
  const CommunicationGraph graph_;
  const MessageContext context_;
  const Quantizer quantizer_;
  ClientState state_ = ClientState::kNew;
  X25519KeyPair encryption_keys_;
  X25519KeyPair masking_keys_;
  Seed self_mask_seed_{};
  // Neighbours in U1 and this client; after MaskInput, only those in U2.
  std::map<int, Peer> peers_;
};

}  // namespace fedge::secagg

#endif  // FEDGE_COMMON_SECAGG_CLIENT_H_
