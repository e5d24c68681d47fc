// SHA-256 (OpenSSL EVP), one-shot and incremental, with hex output. Used for
// model identities and for verifying chunked transfers.
// Sha256 objects are move-only and not thread-safe.
#ifndef FEDGE_COMMON_SHA256_H_
#define FEDGE_COMMON_SHA256_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace fedge {

using Sha256Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view bytes);
  void Update(const void* data, size_t size);
  // Final digest; the object is reset for reuse afterwards.
  Sha256Digest Finish();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

Sha256Digest Sha256Of(absl::string_view bytes);
// Lower-case hex, 64 characters.
std::string ToHex(const Sha256Digest& digest);
// True when every character is 0-9 or a-f (the empty string too): the
// form ToHex writes, and the only one digests are accepted in.
bool IsLowerHex(absl::string_view s);

}  // namespace fedge

#endif  // FEDGE_COMMON_SHA256_H_
