#include "common/secagg/client.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/secagg/protocol.h"
#include "common/status_macros.h"

namespace fedge::secagg {
namespace {

// Elements quantized and masked per pass (16 KiB of u32).
constexpr size_t kBlockElements = 4096;

void AppendLe32(std::string& out, absl::Span<const uint32_t> words) {
  const size_t start = out.size();
  out.resize(start + 4 * words.size());
  char* p = out.data() + start;
  for (uint32_t w : words) {
    p[0] = static_cast<char>(w);
    p[1] = static_cast<char>(w >> 8);
    p[2] = static_cast<char>(w >> 16);
    p[3] = static_cast<char>(w >> 24);
    p += 4;
  }
}

}  // namespace

const char* ClientStateName(ClientState state) {
  switch (state) {
    case ClientState::kNew:
      return "new";
    case ClientState::kKeysAdvertised:
      return "keys_advertised";
    case ClientState::kKeysShared:
      return "keys_shared";
    case ClientState::kInputSent:
      return "input_sent";
    case ClientState::kDone:
      return "done";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<SecAggClient>> SecAggClient::Create(
    Options options) {
  RETURN_IF_ERROR(ValidateConfig(options.config));
  if (options.client_id < 1 || options.client_id > options.config.num_clients) {
    return absl::InvalidArgumentError(
        absl::StrCat("client_id must be in [1, ", options.config.num_clients,
                     "], got ", options.client_id));
  }
  ASSIGN_OR_RETURN(Quantizer quantizer,
                   Quantizer::Create({options.config.num_clients,
                                      options.config.max_abs_value}));
  return std::unique_ptr<SecAggClient>(
      new SecAggClient(std::move(options), quantizer));
}

SecAggClient::SecAggClient(Options options, Quantizer quantizer)
    : config_(std::move(options.config)),
      id_(options.client_id),
      random_(std::move(options.random)),
      graph_(config_),
      context_{ConfigDigest(config_), config_.num_clients,
               config_.vector_length},
      quantizer_(quantizer) {}

SecAggClient::~SecAggClient() {
  OPENSSL_cleanse(self_mask_seed_.data(), self_mask_seed_.size());
}

absl::Status SecAggClient::CheckState(ClientState expected,
                                      const char* step) const {
  if (state_ != expected) {
    return absl::FailedPreconditionError(absl::StrCat(
        "secagg client ", id_, ": ", step, " in state ",
        ClientStateName(state_), " (needs ", ClientStateName(expected), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SecAggClient::AdvertiseKeys() {
  RETURN_IF_ERROR(CheckState(ClientState::kNew, "AdvertiseKeys"));
  encryption_keys_ = GenerateX25519(random_);
  masking_keys_ = GenerateX25519(random_);
  state_ = ClientState::kKeysAdvertised;
  return Encode(context_, AdvertiseKeysMessage{id_, encryption_keys_.public_key,
                                               masking_keys_.public_key});
}

absl::Status SecAggClient::CheckDirectory(
    const KeyDirectoryMessage& directory) const {
  bool found_self = false;
  absl::flat_hash_set<std::string> keys;
  for (const AdvertiseKeysMessage& c : directory.clients) {
    if (c.client_id == id_) {
      found_self = true;
      if (c.encryption_key != encryption_keys_.public_key ||
          c.masking_key != masking_keys_.public_key) {
        return absl::InvalidArgumentError(
            "KeyDirectory shows other public keys for this client");
      }
    } else if (!graph_.AreNeighbours(id_, c.client_id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "KeyDirectory lists client ", c.client_id, ", not a neighbour"));
    }
    for (const X25519Key* key : {&c.encryption_key, &c.masking_key}) {
      if (!keys.insert(std::string(key->begin(), key->end())).second) {
        return absl::InvalidArgumentError(absl::StrCat(
            "KeyDirectory repeats a public key (client ", c.client_id, ")"));
      }
    }
  }
  if (!found_self) {
    return absl::InvalidArgumentError("KeyDirectory lacks this client");
  }
  if (directory.clients.size() < static_cast<size_t>(config_.threshold)) {
    return absl::InvalidArgumentError(
        absl::StrCat("KeyDirectory has ", directory.clients.size(),
                     " clients of this neighbourhood, below the threshold ",
                     config_.threshold));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<int, SecAggClient::Peer>> SecAggClient::PeersOf(
    const KeyDirectoryMessage& directory) const {
  std::map<int, Peer> peers;
  for (const AdvertiseKeysMessage& c : directory.clients) {
    Peer& peer = peers[c.client_id];
    peer.encryption_key = c.encryption_key;
    peer.masking_key = c.masking_key;
    if (c.client_id == id_) continue;
    absl::StatusOr<X25519Key> enc =
        X25519Agree(encryption_keys_.private_key, c.encryption_key);
    absl::StatusOr<X25519Key> mask =
        X25519Agree(masking_keys_.private_key, c.masking_key);
    if (!enc.ok() || !mask.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "KeyDirectory: client ", c.client_id, " has an unusable public key"));
    }
    peer.encryption_agreement = *enc;
    peer.mask_seed = PairwiseMaskSeed(*mask, context_.config_digest);
  }
  return peers;
}

absl::StatusOr<std::string> SecAggClient::ShareKeys(
    absl::string_view key_directory) {
  RETURN_IF_ERROR(CheckState(ClientState::kKeysAdvertised, "ShareKeys"));
  ASSIGN_OR_RETURN(KeyDirectoryMessage directory,
                   DecodeKeyDirectory(context_, key_directory));
  RETURN_IF_ERROR(CheckDirectory(directory));
  using PeerMap = std::map<int, Peer>;
  ASSIGN_OR_RETURN(PeerMap peers, PeersOf(directory));
  std::vector<int> holders;  // share indices: the directory's ids, ascending
  for (const auto& [id, peer] : peers) holders.push_back(id);
  Seed seed;
  FillRandom(random_, absl::MakeSpan(seed));
  ASSIGN_OR_RETURN(std::vector<ShamirShare> masking_key_shares,
                   ShamirSplitAt(masking_keys_.private_key, config_.threshold,
                                 holders, random_));
  ASSIGN_OR_RETURN(std::vector<ShamirShare> self_mask_shares,
                   ShamirSplitAt(seed, config_.threshold, holders, random_));
  ShareKeysMessage message;
  message.client_id = id_;
  message.self_mask_commitment =
      SelfMaskCommitment(context_.config_digest, id_, seed);
  for (size_t i = 0; i < holders.size(); ++i) {
    const int v = holders[i];
    Peer& peer = peers[v];
    if (v == id_) {
      peer.masking_key_share = masking_key_shares[i];
      peer.self_mask_share = self_mask_shares[i];
      continue;
    }
    std::string plaintext =
        EncodeSharePlaintext(masking_key_shares[i], self_mask_shares[i]);
    const std::array<uint8_t, 32> key = ShareEncryptionKey(
        peer.encryption_agreement, context_.config_digest, id_, v);
    message.shares.push_back(
        {v, AeadSeal(key, ShareAad(context_.config_digest, id_, v), plaintext,
                     random_)});
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
  }
  for (auto* shares : {&masking_key_shares, &self_mask_shares}) {
    OPENSSL_cleanse(shares->data(), shares->size() * sizeof(ShamirShare));
  }
  self_mask_seed_ = seed;
  OPENSSL_cleanse(seed.data(), seed.size());
  peers_ = std::move(peers);
  state_ = ClientState::kKeysShared;
  return Encode(context_, message);
}

absl::Status SecAggClient::OpenShares(const EncryptedSharesMessage& message,
                                      std::map<int, Peer>& peers,
                                      std::vector<int>& senders) const {
  if (message.recipient_id != id_) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncryptedShares is for client ", message.recipient_id));
  }
  for (const EncryptedShare& share : message.shares) {
    const int v = share.peer_id;
    auto it = peers.find(v);
    if (v == id_ || it == peers.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("EncryptedShares holds a share from client ", v,
                       ", not a neighbour in the KeyDirectory"));
    }
    Peer& peer = it->second;
    const std::array<uint8_t, 32> key = ShareEncryptionKey(
        peer.encryption_agreement, context_.config_digest, v, id_);
    absl::StatusOr<std::string> plaintext = AeadOpen(
        key, ShareAad(context_.config_digest, v, id_), share.ciphertext);
    if (!plaintext.ok()) {
      return Annotate(plaintext.status(),
                      absl::StrCat("EncryptedShares: share from client ", v));
    }
    ShamirShare masking_key_share, self_mask_share;
    absl::Status status = DecodeSharePlaintext(
        *plaintext, id_, masking_key_share, self_mask_share);
    OPENSSL_cleanse(plaintext->data(), plaintext->size());
    if (!status.ok()) {
      return Annotate(status,
                      absl::StrCat("EncryptedShares: share from client ", v));
    }
    peer.masking_key_share = masking_key_share;
    peer.self_mask_share = self_mask_share;
    senders.push_back(v);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SecAggClient::MaskInput(
    absl::string_view encrypted_shares, absl::Span<const float> input) {
  const absl::Span<const float> pieces[] = {input};
  return MaskInputPieces(encrypted_shares, pieces);
}

absl::StatusOr<std::string> SecAggClient::MaskInputPieces(
    absl::string_view encrypted_shares,
    absl::Span<const absl::Span<const float>> pieces) {
  RETURN_IF_ERROR(CheckState(ClientState::kKeysShared, "MaskInput"));
  int64_t total = 0;
  for (absl::Span<const float> piece : pieces) total += piece.size();
  if (total != config_.vector_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input has ", total, " elements, the session ", config_.vector_length));
  }
  ASSIGN_OR_RETURN(EncryptedSharesMessage message,
                   DecodeEncryptedShares(context_, encrypted_shares));
  std::map<int, Peer> peers = peers_;
  std::vector<int> senders;
  RETURN_IF_ERROR(OpenShares(message, peers, senders));
  if (senders.size() + 1 < static_cast<size_t>(config_.threshold)) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncryptedShares has shares from ", senders.size(),
                     " neighbours: with this client, below the threshold ",
                     config_.threshold));
  }
  ASSIGN_OR_RETURN(std::string masked,
                   BuildMaskedInput(senders, peers, pieces));
  // From now on the neighbourhood is U2's: the senders and ourselves.
  for (auto it = peers.begin(); it != peers.end();) {
    const bool in_u2 =
        it->first == id_ ||
        std::binary_search(senders.begin(), senders.end(), it->first);
    it = in_u2 ? std::next(it) : peers.erase(it);
  }
  peers_ = std::move(peers);
  state_ = ClientState::kInputSent;
  return masked;
}

absl::StatusOr<std::string> SecAggClient::BuildMaskedInput(
    const std::vector<int>& senders, const std::map<int, Peer>& peers,
    absl::Span<const absl::Span<const float>> pieces) const {
  std::vector<MaskGenerator> generators;
  std::vector<int> signs;
  generators.reserve(senders.size() + 1);
  generators.emplace_back(self_mask_seed_);
  signs.push_back(1);
  for (int v : senders) {
    generators.emplace_back(peers.at(v).mask_seed);
    signs.push_back(PairwiseSign(id_, v));
  }
  std::string out = EncodeMaskedInputHeader(context_, id_);
  out.reserve(MaskedInputBytes(context_));
  std::vector<uint32_t> block(kBlockElements);
  size_t fill = 0;
  auto flush = [&] {
    absl::Span<uint32_t> b(block.data(), fill);
    for (size_t g = 0; g < generators.size(); ++g) {
      if (signs[g] > 0) {
        generators[g].AddTo(b);
      } else {
        generators[g].SubtractFrom(b);
      }
    }
    AppendLe32(out, b);
    fill = 0;
  };
  int64_t offset = 0;
  for (absl::Span<const float> piece : pieces) {
    while (!piece.empty()) {
      const size_t n = std::min(piece.size(), kBlockElements - fill);
      absl::Status status = quantizer_.Quantize(
          piece.subspan(0, n), absl::MakeSpan(block.data() + fill, n));
      if (!status.ok()) {
        return Annotate(status, absl::StrCat("input from element ", offset));
      }
      fill += n;
      offset += n;
      piece.remove_prefix(n);
      if (fill == kBlockElements) flush();
    }
  }
  if (fill > 0) flush();
  return out;
}

absl::Status SecAggClient::CheckUnmaskingRequest(
    const UnmaskingRequestMessage& request) const {
  absl::flat_hash_set<int> listed;
  for (const std::vector<int>* list : {&request.survivors, &request.dropped}) {
    for (int v : *list) {
      if (!listed.insert(v).second) {
        return absl::InvalidArgumentError(absl::StrCat(
            "UnmaskingRequest lists client ", v,
            " as both survived and dropped: refusing to reveal both"));
      }
      if (peers_.count(v) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("UnmaskingRequest names client ", v,
                         ", whose shares this client does not hold"));
      }
    }
  }
  if (!std::binary_search(request.survivors.begin(), request.survivors.end(),
                          id_)) {
    return absl::InvalidArgumentError(
        "UnmaskingRequest does not list this client as survived");
  }
  if (listed.size() != peers_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("UnmaskingRequest omits ", peers_.size() - listed.size(),
                     " of the clients whose shares this client holds"));
  }
  if (request.survivors.size() < static_cast<size_t>(config_.threshold)) {
    return absl::InvalidArgumentError(
        absl::StrCat("UnmaskingRequest has ", request.survivors.size(),
                     " survivors in this neighbourhood, below the threshold ",
                     config_.threshold));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SecAggClient::Unmask(
    absl::string_view unmasking_request) {
  RETURN_IF_ERROR(CheckState(ClientState::kInputSent, "Unmask"));
  ASSIGN_OR_RETURN(UnmaskingRequestMessage request,
                   DecodeUnmaskingRequest(context_, unmasking_request));
  RETURN_IF_ERROR(CheckUnmaskingRequest(request));
  UnmaskingResponseMessage response;
  response.client_id = id_;
  for (int v : request.survivors) {
    response.self_mask_shares.push_back(
        {v, peers_.at(v).self_mask_share->values});
  }
  for (int v : request.dropped) {
    response.masking_key_shares.push_back(
        {v, peers_.at(v).masking_key_share->values});
  }
  std::string bytes = Encode(context_, response);
  peers_.clear();
  state_ = ClientState::kDone;
  return bytes;
}

SecAggClient::Peer::~Peer() {
  OPENSSL_cleanse(encryption_agreement.data(), encryption_agreement.size());
  OPENSSL_cleanse(mask_seed.data(), mask_seed.size());
  if (masking_key_share) {
    OPENSSL_cleanse(masking_key_share->values.data(),
                    sizeof(masking_key_share->values));
  }
  if (self_mask_share) {
    OPENSSL_cleanse(self_mask_share->values.data(),
                    sizeof(self_mask_share->values));
  }
}

}  // namespace fedge::secagg
