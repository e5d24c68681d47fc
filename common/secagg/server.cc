#include "common/secagg/server.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/little_endian.h"
#include "common/logging.h"
#include "common/secagg/crypto.h"
#include "common/secagg/protocol.h"
#include "common/secagg/shamir.h"
#include "common/status_macros.h"

namespace fedge::secagg {
namespace {

// Any fixed scalar: X25519 with it fails exactly for low-order points.
constexpr X25519Key kProbeKey = {9,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

std::string KeyString(const X25519Key& key) {
  return std::string(key.begin(), key.end());
}

}  // namespace

struct SecAggServer::ClientRecord {
  bool advertised = false;  // in U1
  bool shared = false;      // in U2
  bool input = false;       // in U3
  bool responded = false;   // in U5
  AdvertiseKeysMessage keys;
  Sha256Digest commitment{};
  // Ciphertexts addressed to this client: (sender, ciphertext).
  std::vector<EncryptedShare> inbox;
  // Shares of this client's secrets from the unmasking responders (share
  // index = responder id).
  std::vector<ShamirShare> self_mask_shares;
  std::vector<ShamirShare> masking_key_shares;
};

// Secrets rebuilt in Finish; wiped on destruction.
struct SecAggServer::Reconstructed {
  Reconstructed() = default;
  Reconstructed(Reconstructed&&) = default;
  ~Reconstructed() {
    for (auto& [id, seed] : self_masks) OPENSSL_cleanse(seed.data(), 32);
    for (auto& [id, key] : masking_keys) OPENSSL_cleanse(key.data(), 32);
  }
  std::vector<std::pair<int, Seed>> self_masks;         // U3
  std::vector<std::pair<int, X25519Key>> masking_keys;  // dropped
};

const char* ServerStateName(ServerState state) {
  switch (state) {
    case ServerState::kCollectingKeys:
      return "collecting_keys";
    case ServerState::kCollectingShares:
      return "collecting_shares";
    case ServerState::kCollectingInputs:
      return "collecting_inputs";
    case ServerState::kUnmasking:
      return "unmasking";
    case ServerState::kDone:
      return "done";
    case ServerState::kFailed:
      return "failed";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<SecAggServer>> SecAggServer::Create(
    Options options) {
  RETURN_IF_ERROR(ValidateConfig(options.config));
  ASSIGN_OR_RETURN(Quantizer quantizer,
                   Quantizer::Create({options.config.num_clients,
                                      options.config.max_abs_value}));
  return std::unique_ptr<SecAggServer>(
      new SecAggServer(std::move(options), quantizer));
}

SecAggServer::SecAggServer(Options options, Quantizer quantizer)
    : config_(std::move(options.config)),
      graph_(config_),
      context_{ConfigDigest(config_), config_.num_clients,
               config_.vector_length},
      quantizer_(quantizer),
      clients_(config_.num_clients + 1) {}

SecAggServer::~SecAggServer() = default;

absl::Status SecAggServer::CheckState(ServerState expected,
                                      const char* step) const {
  if (state_ != expected) {
    return absl::FailedPreconditionError(absl::StrCat(
        "secagg server: ", step, " in state ", ServerStateName(state_),
        " (needs ", ServerStateName(expected), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<SecAggServer::ClientRecord*> SecAggServer::Record(
    int client_id, const char* step) {
  if (client_id < 1 || client_id > config_.num_clients) {
    return absl::InvalidArgumentError(
        absl::StrCat(step, ": client id ", client_id, " is outside [1, ",
                     config_.num_clients, "]"));
  }
  return &clients_[client_id];
}

absl::Status SecAggServer::Fail(absl::Status status) {
  state_ = ServerState::kFailed;
  ReleaseBuffers();
  return status;
}

void SecAggServer::ReleaseBuffers() {
  std::vector<uint32_t>().swap(sum_);
  for (ClientRecord& record : clients_) {
    std::vector<EncryptedShare>().swap(record.inbox);
    std::vector<ShamirShare>().swap(record.self_mask_shares);
    std::vector<ShamirShare>().swap(record.masking_key_shares);
  }
}

template <typename Pred>
std::vector<int> SecAggServer::NeighbourhoodWhere(int u, bool include_self,
                                                  Pred in) const {
  std::vector<int> out;
  for (int v : graph_.Neighbours(u)) {
    if (in(clients_[v])) out.push_back(v);
  }
  if (include_self && in(clients_[u])) {
    out.insert(std::lower_bound(out.begin(), out.end(), u), u);
  }
  return out;
}

absl::Status SecAggServer::PruneSet(bool ClientRecord::*flag,
                                    const char* what) {
  const int count = static_cast<int>(Members(flag).size());
  for (bool changed = true; changed;) {
    std::vector<int> drop;
    for (int u = 1; u <= config_.num_clients; ++u) {
      if (!(clients_[u].*flag)) continue;
      int members = 1;
      for (int v : graph_.Neighbours(u)) members += clients_[v].*flag;
      if (members < config_.threshold) drop.push_back(u);
    }
    for (int u : drop) clients_[u].*flag = false;
    changed = !drop.empty();
  }
  if (Members(flag).empty()) {
    return Fail(absl::AbortedError(absl::StrCat(
        "secagg: ", count, " of ", config_.num_clients, " clients ", what,
        ", too few for the threshold ", config_.threshold)));
  }
  return absl::OkStatus();
}

std::vector<int> SecAggServer::Members(bool ClientRecord::*flag) const {
  std::vector<int> out;
  for (size_t u = 1; u < clients_.size(); ++u) {
    if (clients_[u].*flag) out.push_back(static_cast<int>(u));
  }
  return out;
}

std::vector<int> SecAggServer::KeysAdvertised() const {
  return Members(&ClientRecord::advertised);
}
std::vector<int> SecAggServer::SharesReceived() const {
  return Members(&ClientRecord::shared);
}
std::vector<int> SecAggServer::InputsReceived() const {
  return Members(&ClientRecord::input);
}
std::vector<int> SecAggServer::UnmaskingResponders() const {
  return Members(&ClientRecord::responded);
}

// ---- Round 0: AdvertiseKeys ----

absl::Status SecAggServer::ReceiveAdvertiseKeys(int client_id,
                                                absl::string_view message) {
  RETURN_IF_ERROR(CheckState(ServerState::kCollectingKeys, "AdvertiseKeys"));
  ASSIGN_OR_RETURN(ClientRecord * record, Record(client_id, "AdvertiseKeys"));
  if (record->advertised) {
    return absl::AlreadyExistsError(
        absl::StrCat("client ", client_id, " already advertised keys"));
  }
  ASSIGN_OR_RETURN(AdvertiseKeysMessage keys,
                   DecodeAdvertiseKeys(context_, message));
  if (keys.client_id != client_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdvertiseKeys from client ", client_id,
                     " claims to be client ", keys.client_id));
  }
  for (const X25519Key* key : {&keys.encryption_key, &keys.masking_key}) {
    if (!X25519Agree(kProbeKey, *key).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "AdvertiseKeys: client ", client_id, " sent a low-order key"));
    }
  }
  if (keys.encryption_key == keys.masking_key ||
      public_keys_.contains(KeyString(keys.encryption_key)) ||
      public_keys_.contains(KeyString(keys.masking_key))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AdvertiseKeys: client ", client_id, " repeats a public key"));
  }
  public_keys_.insert(KeyString(keys.encryption_key));
  public_keys_.insert(KeyString(keys.masking_key));
  record->keys = keys;
  record->advertised = true;
  return absl::OkStatus();
}

absl::Status SecAggServer::CloseAdvertiseKeys() {
  RETURN_IF_ERROR(
      CheckState(ServerState::kCollectingKeys, "CloseAdvertiseKeys"));
  RETURN_IF_ERROR(PruneSet(&ClientRecord::advertised, "advertised keys"));
  state_ = ServerState::kCollectingShares;
  return absl::OkStatus();
}

absl::StatusOr<std::string> SecAggServer::KeyDirectoryFor(int client_id) const {
  RETURN_IF_ERROR(CheckState(ServerState::kCollectingShares, "KeyDirectory"));
  if (client_id < 1 || client_id > config_.num_clients ||
      !clients_[client_id].advertised) {
    return absl::FailedPreconditionError(
        absl::StrCat("client ", client_id, " is not in the key directory"));
  }
  KeyDirectoryMessage directory;
  for (int v : NeighbourhoodWhere(client_id, true, [](const ClientRecord& r) {
         return r.advertised;
       })) {
    directory.clients.push_back(clients_[v].keys);
  }
  return Encode(context_, directory);
}

// ---- Round 1: ShareKeys ----

absl::Status SecAggServer::CheckShareKeys(
    int client_id, const ShareKeysMessage& message) const {
  if (message.client_id != client_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("ShareKeys from client ", client_id,
                     " claims to be client ", message.client_id));
  }
  const std::vector<int> expected = NeighbourhoodWhere(
      client_id, false, [](const ClientRecord& r) { return r.advertised; });
  bool match = expected.size() == message.shares.size();
  for (size_t i = 0; match && i < expected.size(); ++i) {
    match = expected[i] == message.shares[i].peer_id;
  }
  if (!match) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ShareKeys from client ", client_id, " has ", message.shares.size(),
        " ciphertexts, not one for each of its ", expected.size(),
        " neighbours in the key directory"));
  }
  return absl::OkStatus();
}

absl::Status SecAggServer::ReceiveShareKeys(int client_id,
                                            absl::string_view message) {
  RETURN_IF_ERROR(CheckState(ServerState::kCollectingShares, "ShareKeys"));
  ASSIGN_OR_RETURN(ClientRecord * record, Record(client_id, "ShareKeys"));
  if (!record->advertised) {
    return absl::FailedPreconditionError(absl::StrCat(
        "ShareKeys: client ", client_id, " is not in the key directory"));
  }
  if (record->shared) {
    return absl::AlreadyExistsError(
        absl::StrCat("client ", client_id, " already shared keys"));
  }
  ASSIGN_OR_RETURN(ShareKeysMessage shares, DecodeShareKeys(context_, message));
  RETURN_IF_ERROR(CheckShareKeys(client_id, shares));
  record->commitment = shares.self_mask_commitment;
  for (EncryptedShare& share : shares.shares) {
    clients_[share.peer_id].inbox.push_back(
        {client_id, std::move(share.ciphertext)});
  }
  record->shared = true;
  return absl::OkStatus();
}

absl::Status SecAggServer::CloseShareKeys() {
  RETURN_IF_ERROR(CheckState(ServerState::kCollectingShares, "CloseShareKeys"));
  RETURN_IF_ERROR(PruneSet(&ClientRecord::shared, "shared keys"));
  for (ClientRecord& record : clients_) {
    // Keep only ciphertexts from U2, in sender order.
    auto& inbox = record.inbox;
    inbox.erase(std::remove_if(inbox.begin(), inbox.end(),
                               [&](const EncryptedShare& s) {
                                 return !clients_[s.peer_id].shared;
                               }),
                inbox.end());
    std::sort(inbox.begin(), inbox.end(),
              [](const EncryptedShare& a, const EncryptedShare& b) {
                return a.peer_id < b.peer_id;
              });
  }
  sum_.assign(static_cast<size_t>(config_.vector_length), 0);
  state_ = ServerState::kCollectingInputs;
  return absl::OkStatus();
}

absl::StatusOr<std::string> SecAggServer::EncryptedSharesFor(
    int client_id) const {
  RETURN_IF_ERROR(
      CheckState(ServerState::kCollectingInputs, "EncryptedShares"));
  if (client_id < 1 || client_id > config_.num_clients ||
      !clients_[client_id].shared) {
    return absl::FailedPreconditionError(absl::StrCat(
        "client ", client_id, " did not share keys (or was dropped)"));
  }
  EncryptedSharesMessage message;
  message.recipient_id = client_id;
  message.shares = clients_[client_id].inbox;
  return Encode(context_, message);
}

// ---- Round 2: MaskedInputCollection ----

absl::Status SecAggServer::ReceiveMaskedInput(int client_id,
                                              absl::string_view message) {
  RETURN_IF_ERROR(CheckState(ServerState::kCollectingInputs, "MaskedInput"));
  ASSIGN_OR_RETURN(ClientRecord * record, Record(client_id, "MaskedInput"));
  if (!record->shared) {
    return absl::FailedPreconditionError(
        absl::StrCat("MaskedInput: client ", client_id, " did not share keys"));
  }
  if (record->input) {
    return absl::AlreadyExistsError(
        absl::StrCat("client ", client_id, " already sent its masked input"));
  }
  ASSIGN_OR_RETURN(MaskedInputView input, DecodeMaskedInput(context_, message));
  if (input.client_id != client_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("MaskedInput from client ", client_id,
                     " claims to be client ", input.client_id));
  }
  const char* p = input.words.data();
  for (size_t i = 0; i < sum_.size(); ++i, p += 4) {
    sum_[i] += static_cast<uint32_t>(ReadLE(p, 4));
  }
  record->input = true;
  return absl::OkStatus();
}

absl::Status SecAggServer::CloseMaskedInputs() {
  RETURN_IF_ERROR(
      CheckState(ServerState::kCollectingInputs, "CloseMaskedInputs"));
  int count = 0;
  for (int u = 1; u <= config_.num_clients; ++u) {
    if (!clients_[u].input) continue;
    ++count;
    const size_t alive = NeighbourhoodWhere(u, true, [](const ClientRecord& r) {
                           return r.input;
                         }).size();
    if (alive < static_cast<size_t>(config_.threshold)) {
      return Fail(absl::AbortedError(absl::StrCat(
          "secagg: client ", u, " has ", alive,
          " clients with masked inputs in its neighbourhood, below the "
          "threshold ",
          config_.threshold)));
    }
  }
  if (count == 0) {
    return Fail(absl::AbortedError("secagg: no client sent a masked input"));
  }
  state_ = ServerState::kUnmasking;
  return absl::OkStatus();
}

UnmaskingRequestMessage SecAggServer::RequestFor(int w) const {
  UnmaskingRequestMessage request;
  for (int v : NeighbourhoodWhere(
           w, true, [](const ClientRecord& r) { return r.shared; })) {
    (clients_[v].input ? request.survivors : request.dropped).push_back(v);
  }
  return request;
}

absl::StatusOr<std::string> SecAggServer::UnmaskingRequestFor(
    int client_id) const {
  RETURN_IF_ERROR(CheckState(ServerState::kUnmasking, "UnmaskingRequest"));
  if (client_id < 1 || client_id > config_.num_clients ||
      !clients_[client_id].input) {
    return absl::FailedPreconditionError(absl::StrCat(
        "client ", client_id, " sent no masked input: nothing to ask it"));
  }
  return Encode(context_, RequestFor(client_id));
}

// ---- Round 3: Unmasking ----

absl::Status SecAggServer::CheckUnmaskingResponse(
    int client_id, const UnmaskingResponseMessage& message) const {
  if (message.client_id != client_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("UnmaskingResponse from client ", client_id,
                     " claims to be client ", message.client_id));
  }
  const UnmaskingRequestMessage request = RequestFor(client_id);
  auto owners_match = [](const std::vector<HeldShare>& shares,
                         const std::vector<int>& owners) {
    if (shares.size() != owners.size()) return false;
    for (size_t i = 0; i < owners.size(); ++i) {
      if (shares[i].owner_id != owners[i]) return false;
    }
    return true;
  };
  if (!owners_match(message.self_mask_shares, request.survivors) ||
      !owners_match(message.masking_key_shares, request.dropped)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "UnmaskingResponse from client ", client_id,
        " does not answer its request: self-mask shares for exactly the ",
        request.survivors.size(),
        " survivors and masking-key shares for "
        "exactly the ",
        request.dropped.size(), " dropped clients"));
  }
  return absl::OkStatus();
}

absl::Status SecAggServer::ReceiveUnmaskingResponse(int client_id,
                                                    absl::string_view message) {
  RETURN_IF_ERROR(CheckState(ServerState::kUnmasking, "UnmaskingResponse"));
  ASSIGN_OR_RETURN(ClientRecord * record,
                   Record(client_id, "UnmaskingResponse"));
  if (!record->input) {
    return absl::FailedPreconditionError(absl::StrCat(
        "UnmaskingResponse: client ", client_id, " sent no masked input"));
  }
  if (record->responded) {
    return absl::AlreadyExistsError(
        absl::StrCat("client ", client_id, " already answered"));
  }
  ASSIGN_OR_RETURN(UnmaskingResponseMessage response,
                   DecodeUnmaskingResponse(context_, message));
  RETURN_IF_ERROR(CheckUnmaskingResponse(client_id, response));
  for (const HeldShare& s : response.self_mask_shares) {
    clients_[s.owner_id].self_mask_shares.push_back({client_id, s.values});
  }
  for (const HeldShare& s : response.masking_key_shares) {
    clients_[s.owner_id].masking_key_shares.push_back({client_id, s.values});
  }
  record->responded = true;
  return absl::OkStatus();
}

absl::StatusOr<SecAggServer::Reconstructed> SecAggServer::ReconstructSecrets()
    const {
  Reconstructed secrets;
  for (int u = 1; u <= config_.num_clients; ++u) {
    const ClientRecord& record = clients_[u];
    const bool dropped = record.shared && !record.input;
    if (!record.input && !dropped) continue;
    if (dropped && NeighbourhoodWhere(u, false, [](const ClientRecord& r) {
                     return r.input;
                   }).empty()) {
      continue;  // no survivor holds a mask shared with it
    }
    std::vector<ShamirShare> shares =
        record.input ? record.self_mask_shares : record.masking_key_shares;
    const char* what = record.input ? "self-mask seed" : "masking key";
    if (shares.size() < static_cast<size_t>(config_.threshold)) {
      return absl::AbortedError(absl::StrCat(
          "secagg: only ", shares.size(), " shares of client ", u, "'s ", what,
          " arrived, below the threshold ", config_.threshold));
    }
    std::sort(shares.begin(), shares.end(),
              [](const ShamirShare& a, const ShamirShare& b) {
                return a.index < b.index;
              });
    absl::StatusOr<Secret> secret =
        ShamirReconstruct(shares, config_.threshold);
    const bool valid =
        secret.ok() &&
        (record.input ? SelfMaskCommitment(context_.config_digest, u,
                                           *secret) == record.commitment
                      : X25519PublicOf(*secret) == record.keys.masking_key);
    if (!valid) {
      return absl::AbortedError(
          absl::StrCat("secagg: the ", what, " of client ", u,
                       " rebuilt from its shares does not match its ",
                       record.input ? "commitment" : "public key",
                       ": a client sent a wrong share"));
    }
    (record.input ? secrets.self_masks : secrets.masking_keys)
        .emplace_back(u, *secret);
  }
  return secrets;
}

void SecAggServer::RemoveMasks(const Reconstructed& secrets) {
  absl::Span<uint32_t> sum = absl::MakeSpan(sum_);
  for (const auto& [u, seed] : secrets.self_masks) ApplyMask(seed, -1, sum);
  for (const auto& [v, private_key] : secrets.masking_keys) {
    for (int u : NeighbourhoodWhere(
             v, false, [](const ClientRecord& r) { return r.input; })) {
      absl::StatusOr<X25519Key> agreement =
          X25519Agree(private_key, clients_[u].keys.masking_key);
      FEDGE_CHECK(agreement.ok()) << "advertised keys were checked";
      // u added PairwiseSign(u, v) * PRG(s_uv); take it out.
      ApplyMask(PairwiseMaskSeed(*agreement, context_.config_digest),
                -PairwiseSign(u, v), sum);
    }
  }
}

absl::StatusOr<SecAggResult> SecAggServer::Finish() {
  RETURN_IF_ERROR(CheckState(ServerState::kUnmasking, "Finish"));
  absl::StatusOr<Reconstructed> secrets = ReconstructSecrets();
  if (!secrets.ok()) return Fail(secrets.status());
  RemoveMasks(*secrets);
  SecAggResult result;
  result.clients = InputsReceived();
  result.sum.resize(sum_.size());
  quantizer_.Dequantize(sum_, absl::MakeSpan(result.sum));
  result.ring_sum = std::move(sum_);
  ReleaseBuffers();
  state_ = ServerState::kDone;
  return result;
}

}  // namespace fedge::secagg
