#include "common/sha256.h"

#include <openssl/evp.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "common/logging.h"

namespace fedge {

// Owns one EVP digest context, initialized for SHA-256.
struct Sha256::Ctx {
  Ctx() : md(EVP_MD_CTX_new()) {
    FEDGE_CHECK(md != nullptr) << "EVP_MD_CTX_new failed";
    Reset();
  }
  ~Ctx() { EVP_MD_CTX_free(md); }
  Ctx(const Ctx&) = delete;
  Ctx& operator=(const Ctx&) = delete;

  void Reset() {
    FEDGE_CHECK(EVP_DigestInit_ex(md, EVP_sha256(), nullptr) == 1)
        << "EVP_DigestInit_ex(sha256) failed";
  }

  EVP_MD_CTX* md;
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(absl::string_view bytes) {
  Update(bytes.data(), bytes.size());
}

void Sha256::Update(const void* data, size_t size) {
  FEDGE_CHECK(ctx_ != nullptr) << "Sha256 used after move";
  if (size == 0) return;
  FEDGE_CHECK(EVP_DigestUpdate(ctx_->md, data, size) == 1)
      << "EVP_DigestUpdate failed";
}

Sha256Digest Sha256::Finish() {
  FEDGE_CHECK(ctx_ != nullptr) << "Sha256 used after move";
  Sha256Digest digest;
  unsigned int len = 0;
  FEDGE_CHECK(EVP_DigestFinal_ex(ctx_->md, digest.data(), &len) == 1 &&
              len == digest.size())
      << "EVP_DigestFinal_ex failed";
  ctx_->Reset();
  return digest;
}

Sha256Digest Sha256Of(absl::string_view bytes) {
  Sha256 hasher;
  hasher.Update(bytes);
  return hasher.Finish();
}

std::string ToHex(const Sha256Digest& digest) {
  return absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(digest.data()), digest.size()));
}

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

}  // namespace fedge
