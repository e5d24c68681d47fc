// The server side of secure aggregation (client.h describes the protocol).
// Transport-free: the caller hands in each client's bytes with the client's
// id, which it must take from the client's authenticated identity (its
// certificate or session), never from the message; the server checks the
// message's own id against it.
//
// Sets of clients, as in Bonawitz et al.: U1 advertised keys, U2 shared
// keys, U3 sent masked inputs, U5 answered the unmasking request. A client's
// neighbourhood N[u] (config.h) is everyone for the complete graph.
//
// Rounds and state machine (legal transitions; any call out of turn is
// FAILED_PRECONDITION and changes nothing):
//   kCollectingKeys:   ReceiveAdvertiseKeys*; CloseAdvertiseKeys ->
//   kCollectingShares: KeyDirectoryFor(id) for each id in U1;
//                      ReceiveShareKeys*; CloseShareKeys ->
//   kCollectingInputs: EncryptedSharesFor(id) for each id in U2;
//                      ReceiveMaskedInput*; CloseMaskedInputs ->
//   kUnmasking:        UnmaskingRequestFor(id) for each id in U3;
//                      ReceiveUnmaskingResponse*; Finish -> kDone
//   any Close* or Finish that cannot go on -> kFailed (final; ABORTED).
// Close* drops clients whose neighbourhood in the set fell below the
// threshold (for the complete graph: every client, when the set has fewer
// than t members, failing the round). The caller decides when to close a
// round (all expected messages in, or a deadline).
//
// Memory: keys, commitments and share ciphertexts O(n |N[u]|) (bounded by
// kMaxEdges), plus ONE running sum of vector_length ring elements: each
// masked input is added into it as it arrives and not kept. Finish removes
// the self masks of U3 and the pairwise masks between U3 and the clients
// of U2 that dropped, streaming, and returns the sum.
//
// Dropouts: a client of U2 that sends no masked input is recovered from
// the masking-key shares of its surviving neighbours; a client of U3 that
// does not answer the unmasking request is recovered from the self-mask
// shares of the others. Either needs `threshold` answers from the
// neighbourhood; otherwise Finish fails with ABORTED and no sum. Every
// reconstructed secret is checked (masking keys against their public keys,
// self-mask seeds against their commitments) before it is used, so a wrong
// share fails the round instead of yielding a wrong sum. The server asks
// each client, for each peer, for a share of the self-mask seed (peer in U3)
// or of the masking key (peer dropped), never both.
//
// Trust model: honest-but-curious server (Bonawitz's semi-honest variant,
// without the consistency-check round and signatures of the active one).
// Clients check what they can (client.h); a server that lies about U3 to
// different clients is out of scope beyond the 2t > |N[u]| bound.
//
// Not thread-safe: the caller serializes calls (e.g. under its round lock).
#ifndef FEDGE_COMMON_SECAGG_SERVER_H_
#define FEDGE_COMMON_SECAGG_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/secagg/config.h"
#include "common/secagg/messages.h"
#include "common/secagg/quantization.h"
#include "common/sha256.h"

namespace fedge::secagg {

enum class ServerState {
  kCollectingKeys,
  kCollectingShares,
  kCollectingInputs,
  kUnmasking,
  kDone,
  kFailed,
};

// "collecting_keys", ..., "done", "failed".
const char* ServerStateName(ServerState state);

struct SecAggResult {
  // U3: the clients whose inputs the sum holds, ascending.
  std::vector<int> clients;
  // The sum of their quantized inputs in Z_{2^32} (vector_length elements).
  std::vector<uint32_t> ring_sum;
  // That sum dequantized: sum of the clipped inputs within
  // quantization.h's bound.
  std::vector<float> sum;
};

class SecAggServer {
 public:
  struct Options {
    // The session (ValidateConfig must pass); equal to the clients'.
    SecAggConfig config;
  };

  // INVALID_ARGUMENT for a bad config.
  static absl::StatusOr<std::unique_ptr<SecAggServer>> Create(Options options);

  SecAggServer(const SecAggServer&) = delete;
  SecAggServer& operator=(const SecAggServer&) = delete;
  ~SecAggServer();

  ServerState state() const { return state_; }
  const SecAggConfig& config() const { return config_; }
  // The members of U1, U2, U3 (after their round closed) and U5 so far,
  // ascending.
  std::vector<int> KeysAdvertised() const;
  std::vector<int> SharesReceived() const;
  std::vector<int> InputsReceived() const;
  std::vector<int> UnmaskingResponders() const;

  // Common statuses of the Receive* methods: FAILED_PRECONDITION when the
  // round is not open or `client_id` did not complete the previous round;
  // ALREADY_EXISTS when the client already sent this round's message (the
  // first one stands: a retry can treat this as success); INVALID_ARGUMENT
  // when the message is malformed, of another session, carries an id other
  // than `client_id`, or is inconsistent with the round (named). A refused
  // message changes nothing.

  // Round 0. Also INVALID_ARGUMENT for a low-order (unusable) public key or
  // a key another client already advertised.
  absl::Status ReceiveAdvertiseKeys(int client_id, absl::string_view message);
  // Ends round 0. ABORTED (state kFailed) when fewer than `threshold`
  // clients advertised keys.
  absl::Status CloseAdvertiseKeys();
  // The KeyDirectory for a client of U1: the keys of U1 within its
  // neighbourhood. FAILED_PRECONDITION outside kCollectingShares or for a
  // client not in U1.
  absl::StatusOr<std::string> KeyDirectoryFor(int client_id) const;

  // Round 1. Also INVALID_ARGUMENT unless the message holds exactly one
  // ciphertext for each neighbour in U1.
  absl::Status ReceiveShareKeys(int client_id, absl::string_view message);
  // Ends round 1; ABORTED (kFailed) when too few clients shared keys.
  // Allocates the running sum.
  absl::Status CloseShareKeys();
  // The EncryptedShares for a client of U2: the ciphertexts addressed to it
  // by its neighbours in U2. FAILED_PRECONDITION outside kCollectingInputs
  // or for a client not in U2.
  absl::StatusOr<std::string> EncryptedSharesFor(int client_id) const;

  // Round 2: adds the masked input into the running sum. Also
  // INVALID_ARGUMENT when its length is not vector_length.
  absl::Status ReceiveMaskedInput(int client_id, absl::string_view message);
  // Ends round 2. ABORTED (kFailed) when a client of U3 has fewer than
  // `threshold` members of U3 in its neighbourhood (all of U3 for the
  // complete graph: |U3| < t).
  absl::Status CloseMaskedInputs();
  // The UnmaskingRequest for a client of U3: which of the clients whose
  // shares it holds (its neighbourhood in U2) survived and which dropped.
  // FAILED_PRECONDITION outside kUnmasking or for a client not in U3.
  absl::StatusOr<std::string> UnmaskingRequestFor(int client_id) const;

  // Round 3. Also INVALID_ARGUMENT unless the response holds a self-mask
  // share for exactly the survivors, and a masking-key share for exactly
  // the dropped clients, of its UnmaskingRequest.
  absl::Status ReceiveUnmaskingResponse(int client_id,
                                        absl::string_view message);
  // Reconstructs the secrets, removes the masks and returns the sum; the
  // state becomes kDone. FAILED_PRECONDITION outside kUnmasking; ABORTED
  // (kFailed) when some secret has fewer than `threshold` shares, or a
  // reconstructed secret does not match its public key or commitment (a
  // client sent a wrong share). Moves the sum out: call once.
  absl::StatusOr<SecAggResult> Finish();

 private:
  struct ClientRecord;
  struct Reconstructed;

  explicit SecAggServer(Options options, Quantizer quantizer);

  absl::Status CheckState(ServerState expected, const char* step) const;
  // The ids whose record has `flag` set, ascending.
  std::vector<int> Members(bool ClientRecord::*flag) const;
  // The record of `client_id` if it is in range; else INVALID_ARGUMENT.
  absl::StatusOr<ClientRecord*> Record(int client_id, const char* step);
  // Enters kFailed (releasing buffers) and returns `status`.
  absl::Status Fail(absl::Status status);
  // Frees the sum, ciphertexts and shares; keeps the membership flags.
  void ReleaseBuffers();
  // Clears `flag` of every client whose closed neighbourhood has fewer
  // than t clients with `flag` set, until none has. ABORTED (via Fail,
  // naming `what` the set's members did) when nobody is left.
  absl::Status PruneSet(bool ClientRecord::*flag, const char* what);
  // Members of the set `in` in u's closed neighbourhood N[u], ascending.
  template <typename Pred>
  std::vector<int> NeighbourhoodWhere(int u, bool include_self, Pred in) const;
  absl::Status CheckShareKeys(int client_id,
                              const ShareKeysMessage& message) const;
  // What client w (in U3) is asked: survivors U3 and dropped U2 \ U3 among
  // the clients whose shares it holds (its neighbourhood in U2).
  UnmaskingRequestMessage RequestFor(int w) const;
  absl::Status CheckUnmaskingResponse(
      int client_id, const UnmaskingResponseMessage& message) const;
  absl::StatusOr<Reconstructed> ReconstructSecrets() const;
  void RemoveMasks(const Reconstructed& secrets);

  const SecAggConfig config_;
  const CommunicationGraph graph_;
  const MessageContext context_;
  const Quantizer quantizer_;
  ServerState state_ = ServerState::kCollectingKeys;
  // Indexed by client id (entry 0 unused).
  std::vector<ClientRecord> clients_;
  // Every public key advertised so far (refuses repeats).
  absl::flat_hash_set<std::string> public_keys_;
  std::vector<uint32_t> sum_;
};

}  // namespace fedge::secagg

#endif  // FEDGE_COMMON_SECAGG_SERVER_H_
