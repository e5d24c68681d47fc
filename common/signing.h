// Ed25519 signatures over global models (OpenSSL EVP), so that an agent
// uses a model only when the coordinator's model-signing key vouches for it.
//
// The coordinator signs ModelSigningMessage(version, spec, sha256) with its
// private key (deploy/make-certs.sh writes model-signing.key); each agent
// holds the public key (model-signing.pub.pem) and verifies the signature
// of every global model before using it. docs/model-signing.md describes
// the keys' life cycle and rotation.
//
// Keys are small values (32 raw bytes each). Ed25519PrivateKey is move-only
// and wipes its bytes on destruction; Ed25519PublicKey is copyable. All
// functions are thread-safe: they hold no shared state.
#ifndef FEDGE_COMMON_SIGNING_H_
#define FEDGE_COMMON_SIGNING_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/sha256.h"

namespace fedge {

// Sizes fixed by RFC 8032.
inline constexpr size_t kEd25519KeyBytes = 32;
inline constexpr size_t kEd25519SignatureBytes = 64;

// The domain separation string that opens every model-signing message.
inline constexpr absl::string_view kModelSigningDomain = "fedge-model-v1";

// Largest PEM file LoadPublicKeyPem / LoadPrivateKeyPem read (a key's PEM
// is about 120 bytes; the limit refuses anything else before reading it).
inline constexpr int64_t kMaxKeyPemBytes = 64 * 1024;

// An Ed25519 public key (the raw 32 bytes of RFC 8032).
class Ed25519PublicKey {
 public:
  // The key whose raw encoding is `raw`; INVALID_ARGUMENT unless it is 32
  // bytes that OpenSSL accepts as an Ed25519 public key.
  static absl::StatusOr<Ed25519PublicKey> FromRaw(absl::string_view raw);
  // The key in a PEM "PUBLIC KEY" (SubjectPublicKeyInfo) block, as written
  // by ToPem() or `openssl pkey -pubout`. INVALID_ARGUMENT when `pem` is not
  // one, or holds a key of another algorithm.
  static absl::StatusOr<Ed25519PublicKey> FromPem(absl::string_view pem);

  // The raw 32 bytes.
  const std::array<uint8_t, kEd25519KeyBytes>& raw() const { return raw_; }
  // PEM "PUBLIC KEY" block.
  std::string ToPem() const;

  bool operator==(const Ed25519PublicKey& o) const { return raw_ == o.raw_; }
  bool operator!=(const Ed25519PublicKey& o) const { return raw_ != o.raw_; }

 private:
  friend class Ed25519PrivateKey;
  std::array<uint8_t, kEd25519KeyBytes> raw_{};
};

// An Ed25519 private key (the raw 32-byte seed of RFC 8032).
class Ed25519PrivateKey {
 public:
  // A fresh key from OpenSSL's CSPRNG. INTERNAL if OpenSSL fails.
  static absl::StatusOr<Ed25519PrivateKey> Generate();
  // The key in a PEM "PRIVATE KEY" (unencrypted PKCS#8) block, as written
  // by ToPem() or `openssl genpkey -algorithm ed25519`. INVALID_ARGUMENT
  // when `pem` is not one (an encrypted key included), or holds a key of
  // another algorithm.
  static absl::StatusOr<Ed25519PrivateKey> FromPem(absl::string_view pem);

  Ed25519PrivateKey(Ed25519PrivateKey&& other) noexcept;
  Ed25519PrivateKey& operator=(Ed25519PrivateKey&& other) noexcept;
  Ed25519PrivateKey(const Ed25519PrivateKey&) = delete;
  Ed25519PrivateKey& operator=(const Ed25519PrivateKey&) = delete;
  ~Ed25519PrivateKey();

  const Ed25519PublicKey& public_key() const { return public_key_; }
  // PEM "PRIVATE KEY" block (unencrypted PKCS#8): keep it secret.
  std::string ToPem() const;

 private:
  friend absl::StatusOr<std::string> Sign(const Ed25519PrivateKey& key,
                                          absl::string_view message);
  Ed25519PrivateKey() = default;

  std::array<uint8_t, kEd25519KeyBytes> seed_{};
  Ed25519PublicKey public_key_;
};

// The 64-byte Ed25519 signature of `message`. INTERNAL if OpenSSL fails.
absl::StatusOr<std::string> Sign(const Ed25519PrivateKey& key,
                                 absl::string_view message);

// OK when `signature` is `key`'s signature of `message`. INVALID_ARGUMENT
// when the signature is not 64 bytes; UNAUTHENTICATED when it does not
// verify (wrong key, or message or signature altered).
absl::Status Verify(const Ed25519PublicKey& key, absl::string_view message,
                    absl::string_view signature);

// The canonical bytes signed for a global model: four length-prefixed
// fields, each an 8-byte big-endian length followed by that many bytes:
//   "fedge-model-v1" | version (8 bytes, big-endian two's complement) |
//   spec (the caller's architecture bytes) | sha256 (32 bytes).
// Distinct (version, spec, sha256) give distinct messages.
std::string ModelSigningMessage(int64_t version, absl::string_view spec,
                                const Sha256Digest& model_sha256);

// Sign(key, ModelSigningMessage(version, spec, model_sha256)).
absl::StatusOr<std::string> SignModel(const Ed25519PrivateKey& key,
                                      int64_t version, absl::string_view spec,
                                      const Sha256Digest& model_sha256);

// Verify(key, ModelSigningMessage(version, spec, model_sha256), signature),
// with the same statuses, the UNAUTHENTICATED message naming the version.
absl::Status VerifyModel(const Ed25519PublicKey& key, int64_t version,
                         absl::string_view spec,
                         const Sha256Digest& model_sha256,
                         absl::string_view signature);

// Key files. Loading reads at most kMaxKeyPemBytes: NOT_FOUND /
// PERMISSION_DENIED / RESOURCE_EXHAUSTED for the file (see
// common/file_util.h), INVALID_ARGUMENT naming the path when its contents
// are not such a key. Saving writes atomically; a private key file gets mode
// 0600, a public one 0644; ErrnoStatus errors.
absl::StatusOr<Ed25519PrivateKey> LoadPrivateKeyPem(const std::string& path);
absl::StatusOr<Ed25519PublicKey> LoadPublicKeyPem(const std::string& path);
absl::Status SavePrivateKeyPem(const Ed25519PrivateKey& key,
                               const std::string& path);
absl::Status SavePublicKeyPem(const Ed25519PublicKey& key,
                              const std::string& path);

}  // namespace fedge

#endif  // FEDGE_COMMON_SIGNING_H_
