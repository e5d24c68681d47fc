// Derivations the secure-aggregation client and server must compute
// identically: the per-direction share-encryption keys, the pairwise mask
// seeds and their signs, the self-mask commitment and the share plaintext.
// Each lives here once (client.cc and server.cc both call it).
//
// Pure functions; thread-safe.
#ifndef FEDGE_COMMON_SECAGG_PROTOCOL_H_
#define FEDGE_COMMON_SECAGG_PROTOCOL_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/secagg/crypto.h"
#include "common/secagg/prg.h"
#include "common/secagg/shamir.h"
#include "common/sha256.h"

namespace fedge::secagg {

// AES-256-GCM key for the share ciphertext from `sender` to `recipient`:
// HKDF-SHA256 of the X25519 agreement of their encryption keys, bound to the
// session and the direction (the two directions of a pair get different
// keys, so a nonce is never reused under one key).
std::array<uint8_t, 32> ShareEncryptionKey(const X25519Key& agreement,
                                           const Sha256Digest& config_digest,
                                           int sender, int recipient);

// The associated data of that ciphertext: session, sender, recipient.
std::string ShareAad(const Sha256Digest& config_digest, int sender,
                     int recipient);

// The plaintext of a share ciphertext: the masking-key share, then the
// self-mask-seed share (kShareElements u64 each, little-endian).
std::string EncodeSharePlaintext(const ShamirShare& masking_key_share,
                                 const ShamirShare& self_mask_share);
// Inverse of EncodeSharePlaintext; both shares get `index`.
// INVALID_ARGUMENT when the size is wrong or a value is not in the field.
absl::Status DecodeSharePlaintext(absl::string_view plaintext, int index,
                                  ShamirShare& masking_key_share,
                                  ShamirShare& self_mask_share);

// The PRG seed of the pairwise mask between two clients: HKDF-SHA256 of the
// X25519 agreement of their masking keys, bound to the session. Symmetric.
Seed PairwiseMaskSeed(const X25519Key& agreement,
                      const Sha256Digest& config_digest);

// Client u adds PairwiseSign(u, v) * PRG(seed_uv) for each peer v: +1 when
// u > v, -1 when u < v, so the masks of two surviving peers cancel.
inline int PairwiseSign(int u, int v) { return u > v ? 1 : -1; }

// acc += sign * PRG(seed), streaming (sign is +1 or -1).
void ApplyMask(const Seed& seed, int sign, absl::Span<uint32_t> acc);

// SHA-256 commitment to client `id`'s self-mask seed, which the server uses
// to check the seed it reconstructs (it reveals nothing of a random seed).
Sha256Digest SelfMaskCommitment(const Sha256Digest& config_digest, int id,
                                const Seed& self_mask_seed);

}  // namespace fedge::secagg

#endif  // FEDGE_COMMON_SECAGG_PROTOCOL_H_
