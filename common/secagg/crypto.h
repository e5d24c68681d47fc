// The cryptographic building blocks of secure aggregation, over OpenSSL 3
// EVP: X25519 key agreement, HKDF-SHA256 key derivation and AES-256-GCM
// authenticated encryption. Nothing here is specific to the protocol's
// rounds; client.cc and server.cc combine them.
//
// Pure functions (randomness comes from the RandomSource passed in);
// thread-safe.
#ifndef FEDGE_COMMON_SECAGG_CRYPTO_H_
#define FEDGE_COMMON_SECAGG_CRYPTO_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/secagg/config.h"

namespace fedge::secagg {

inline constexpr size_t kX25519KeyBytes = 32;
using X25519Key = std::array<uint8_t, kX25519KeyBytes>;

// AES-256-GCM framing: a 12-byte random nonce, the ciphertext, a 16-byte
// tag.
inline constexpr size_t kAeadNonceBytes = 12;
inline constexpr size_t kAeadTagBytes = 16;
inline constexpr size_t kAeadOverheadBytes = kAeadNonceBytes + kAeadTagBytes;

struct X25519KeyPair {
  X25519Key private_key{};
  X25519Key public_key{};
  // Wipes the private half.
  ~X25519KeyPair();
};

// A fresh key pair whose private key is 32 bytes from `random`.
X25519KeyPair GenerateX25519(const RandomSource& random);

// The public key of `private_key` (for checking a reconstructed key).
X25519Key X25519PublicOf(const X25519Key& private_key);

// The 32-byte X25519 shared secret of our private key and a peer's public
// key. INVALID_ARGUMENT when the peer key is a low-order point (the shared
// secret would be all zeros: OpenSSL refuses it).
absl::StatusOr<X25519Key> X25519Agree(const X25519Key& private_key,
                                      const X25519Key& peer_public_key);

// HKDF-SHA256 (RFC 5869) of `secret` with an empty salt and `info`: 32
// bytes.
std::array<uint8_t, 32> HkdfSha256(absl::Span<const uint8_t> secret,
                                   absl::string_view info);

// AES-256-GCM encryption of `plaintext` under `key` with a random nonce,
// authenticating `aad` too: nonce | ciphertext | tag.
std::string AeadSeal(const std::array<uint8_t, 32>& key, absl::string_view aad,
                     absl::string_view plaintext, const RandomSource& random);

// The plaintext of AeadSeal's output. INVALID_ARGUMENT when `sealed` is
// shorter than the overhead or fails authentication (wrong key, aad, or any
// byte altered).
absl::StatusOr<std::string> AeadOpen(const std::array<uint8_t, 32>& key,
                                     absl::string_view aad,
                                     absl::string_view sealed);

}  // namespace fedge::secagg

#endif  // FEDGE_COMMON_SECAGG_CRYPTO_H_
