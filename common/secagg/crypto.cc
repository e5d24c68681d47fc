#include "common/secagg/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <memory>

#include "common/logging.h"
#include "common/openssl_util.h"

namespace fedge::secagg {
namespace {

using openssl::CipherCtxPtr;
using openssl::PkeyCtxPtr;
using openssl::PkeyPtr;

PkeyPtr PrivatePkey(const X25519Key& key) {
  PkeyPtr pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr,
                                            key.data(), key.size()));
  FEDGE_CHECK(pkey != nullptr) << "EVP_PKEY_new_raw_private_key failed";
  return pkey;
}

const uint8_t* Bytes(absl::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

}  // namespace

X25519KeyPair::~X25519KeyPair() {
  OPENSSL_cleanse(private_key.data(), private_key.size());
}

X25519KeyPair GenerateX25519(const RandomSource& random) {
  X25519KeyPair pair;
  FillRandom(random, absl::MakeSpan(pair.private_key));
  pair.public_key = X25519PublicOf(pair.private_key);
  return pair;
}

X25519Key X25519PublicOf(const X25519Key& private_key) {
  PkeyPtr pkey = PrivatePkey(private_key);
  X25519Key pub;
  size_t len = pub.size();
  FEDGE_CHECK(EVP_PKEY_get_raw_public_key(pkey.get(), pub.data(), &len) == 1 &&
              len == pub.size())
      << "EVP_PKEY_get_raw_public_key failed";
  return pub;
}

absl::StatusOr<X25519Key> X25519Agree(const X25519Key& private_key,
                                      const X25519Key& peer_public_key) {
  PkeyPtr self = PrivatePkey(private_key);
  PkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr,
                                           peer_public_key.data(),
                                           peer_public_key.size()));
  if (peer == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("not an X25519 public key");
  }
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(self.get(), nullptr));
  FEDGE_CHECK(ctx != nullptr && EVP_PKEY_derive_init(ctx.get()) == 1)
      << "EVP_PKEY_derive_init failed";
  X25519Key shared;
  size_t len = shared.size();
  if (EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), shared.data(), &len) != 1 ||
      len != shared.size()) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "X25519 agreement failed (a low-order public key)");
  }
  return shared;
}

std::array<uint8_t, 32> HkdfSha256(absl::Span<const uint8_t> secret,
                                   absl::string_view info) {
  static EVP_KDF* const kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  FEDGE_CHECK(kdf != nullptr) << "EVP_KDF_fetch(HKDF) failed";
  std::unique_ptr<EVP_KDF_CTX, decltype(&EVP_KDF_CTX_free)> ctx(
      EVP_KDF_CTX_new(kdf), &EVP_KDF_CTX_free);
  FEDGE_CHECK(ctx != nullptr) << "EVP_KDF_CTX_new failed";
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                        const_cast<uint8_t*>(secret.data()),
                                        secret.size()),
      OSSL_PARAM_construct_octet_string(
          OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()), info.size()),
      OSSL_PARAM_construct_end()};
  std::array<uint8_t, 32> out;
  FEDGE_CHECK(EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) == 1)
      << "HKDF-SHA256 failed";
  return out;
}

std::string AeadSeal(const std::array<uint8_t, 32>& key, absl::string_view aad,
                     absl::string_view plaintext, const RandomSource& random) {
  std::string out(kAeadNonceBytes + plaintext.size() + kAeadTagBytes, '\0');
  uint8_t* nonce = reinterpret_cast<uint8_t*>(out.data());
  FillRandom(random, absl::MakeSpan(nonce, kAeadNonceBytes));
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  uint8_t final_block[16];
  FEDGE_CHECK(
      ctx != nullptr &&
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(),
                         nonce) == 1 &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(aad),
                        static_cast<int>(aad.size())) == 1 &&
      EVP_EncryptUpdate(ctx.get(), nonce + kAeadNonceBytes, &len,
                        Bytes(plaintext),
                        static_cast<int>(plaintext.size())) == 1 &&
      EVP_EncryptFinal_ex(ctx.get(), final_block, &len) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kAeadTagBytes,
                          nonce + kAeadNonceBytes + plaintext.size()) == 1)
      << "AES-256-GCM encryption failed";
  return out;
}

absl::StatusOr<std::string> AeadOpen(const std::array<uint8_t, 32>& key,
                                     absl::string_view aad,
                                     absl::string_view sealed) {
  if (sealed.size() < kAeadOverheadBytes) {
    return absl::InvalidArgumentError("ciphertext shorter than its framing");
  }
  const size_t body = sealed.size() - kAeadOverheadBytes;
  const uint8_t* nonce = Bytes(sealed);
  std::string plain(body, '\0');
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  FEDGE_CHECK(ctx != nullptr &&
              EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                                 key.data(), nonce) == 1 &&
              EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(aad),
                                static_cast<int>(aad.size())) == 1 &&
              EVP_DecryptUpdate(
                  ctx.get(), reinterpret_cast<uint8_t*>(plain.data()), &len,
                  nonce + kAeadNonceBytes, static_cast<int>(body)) == 1 &&
              EVP_CIPHER_CTX_ctrl(
                  ctx.get(), EVP_CTRL_GCM_SET_TAG, kAeadTagBytes,
                  const_cast<uint8_t*>(nonce + kAeadNonceBytes + body)) == 1)
      << "AES-256-GCM decryption setup failed";
  uint8_t final_block[16];
  if (EVP_DecryptFinal_ex(ctx.get(), final_block, &len) != 1) {
    ERR_clear_error();
    OPENSSL_cleanse(plain.data(), plain.size());
    return absl::InvalidArgumentError(
        "ciphertext fails authentication (altered, or not for us)");
  }
  return plain;
}

}  // namespace fedge::secagg
