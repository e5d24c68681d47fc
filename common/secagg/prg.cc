#include "common/secagg/prg.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>

#include "common/logging.h"

namespace fedge::secagg {
namespace {

constexpr size_t kBlockWords = 4096;  // 16 KiB of keystream per EVP call
constexpr size_t kBlockBytes = kBlockWords * 4;
constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

const uint8_t* Zeros() {
  static const uint8_t* const zeros = new uint8_t[kBlockBytes]();
  return zeros;
}

uint32_t LoadLe32(const uint8_t* p) {
  if constexpr (kLittleEndian) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 |
         uint32_t{p[3]} << 24;
}

}  // namespace

struct MaskGenerator::Impl {
  explicit Impl(const Seed& s) : seed(s), ctx(EVP_CIPHER_CTX_new()) {
    FEDGE_CHECK(ctx != nullptr) << "EVP_CIPHER_CTX_new failed";
    SeekBlock(0);
  }
  ~Impl() {
    EVP_CIPHER_CTX_free(ctx);
    OPENSSL_cleanse(seed.data(), seed.size());
    OPENSSL_cleanse(buffer, sizeof(buffer));
  }

  // Restarts the keystream at AES block `block` (16 bytes each).
  void SeekBlock(uint64_t block) {
    uint8_t iv[16] = {};
    for (int i = 0; i < 8; ++i)
      iv[15 - i] = static_cast<uint8_t>(block >> (8 * i));
    FEDGE_CHECK(EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr, seed.data(),
                                   iv) == 1)
        << "EVP_EncryptInit_ex(aes-256-ctr) failed";
  }

  // Fills buffer with the next `bytes` keystream bytes.
  void Keystream(size_t bytes) {
    if (bytes == 0) return;
    int len = 0;
    FEDGE_CHECK(EVP_EncryptUpdate(ctx, buffer, &len, Zeros(),
                                  static_cast<int>(bytes)) == 1 &&
                len == static_cast<int>(bytes))
        << "EVP_EncryptUpdate failed";
  }

  Seed seed;
  EVP_CIPHER_CTX* ctx;
  alignas(64) uint8_t buffer[kBlockBytes];
};

MaskGenerator::MaskGenerator(const Seed& seed)
    : impl_(std::make_unique<Impl>(seed)) {}
MaskGenerator::~MaskGenerator() = default;
MaskGenerator::MaskGenerator(MaskGenerator&&) noexcept = default;
MaskGenerator& MaskGenerator::operator=(MaskGenerator&&) noexcept = default;

void MaskGenerator::Next(absl::Span<uint32_t> out) {
  while (!out.empty()) {
    const size_t n = std::min(out.size(), kBlockWords);
    impl_->Keystream(n * 4);
    for (size_t i = 0; i < n; ++i) out[i] = LoadLe32(impl_->buffer + 4 * i);
    out.remove_prefix(n);
    position_ += n;
  }
}

void MaskGenerator::AddTo(absl::Span<uint32_t> acc) {
  while (!acc.empty()) {
    const size_t n = std::min(acc.size(), kBlockWords);
    impl_->Keystream(n * 4);
    const uint8_t* ks = impl_->buffer;
    for (size_t i = 0; i < n; ++i) acc[i] += LoadLe32(ks + 4 * i);
    acc.remove_prefix(n);
    position_ += n;
  }
}

void MaskGenerator::SubtractFrom(absl::Span<uint32_t> acc) {
  while (!acc.empty()) {
    const size_t n = std::min(acc.size(), kBlockWords);
    impl_->Keystream(n * 4);
    const uint8_t* ks = impl_->buffer;
    for (size_t i = 0; i < n; ++i) acc[i] -= LoadLe32(ks + 4 * i);
    acc.remove_prefix(n);
    position_ += n;
  }
}

void MaskGenerator::Skip(uint64_t count) {
  position_ += count;
  const uint64_t byte = position_ * 4;
  impl_->SeekBlock(byte / 16);
  impl_->Keystream(byte % 16);  // discards the block's first bytes
}

}  // namespace fedge::secagg
