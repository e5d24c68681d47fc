// XXH3-128 (Debian's libxxhash): a fast non-cryptographic checksum, and
// UploadCheck, the check an uploaded update's bytes carry.
//
// Why uploads are checked with XXH3-128 and not SHA-256: the check is
// computed by the agent that sends the bytes, and it is not keyed, so it
// cannot protect against that agent, nor against anyone who can change the
// bytes in transit (they would recompute it). What it catches is accidental
// corruption and a bug in chunking or reassembly, for which a 128-bit
// checksum is as good as a cryptographic hash, at about 14 times SHA-256's
// speed here (build/bench/codec_bench: 1.4 against 20 ms for 40 MB).
// Authenticity comes from TLS (AEAD records) and the session; the global
// model a coordinator signs keeps its SHA-256 (common/signing.h).
// docs/performance.md has the figures.
// Xxh3_128 objects are not thread-safe.
#ifndef FEDGE_COMMON_CHECKSUM_H_
#define FEDGE_COMMON_CHECKSUM_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/sha256.h"

namespace fedge {

// Big-endian (XXH128_canonical_t) bytes of an XXH3-128 hash, seed 0.
using Checksum128 = std::array<uint8_t, 16>;

class Xxh3_128 {
 public:
  Xxh3_128();
  ~Xxh3_128();
  Xxh3_128(Xxh3_128&&) noexcept;
  Xxh3_128& operator=(Xxh3_128&&) noexcept;
  Xxh3_128(const Xxh3_128&) = delete;
  Xxh3_128& operator=(const Xxh3_128&) = delete;

  void Update(absl::string_view bytes);
  void Update(const void* data, size_t size);
  // The hash of everything fed; the object is reset for reuse afterwards.
  Checksum128 Finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

Checksum128 Xxh3_128Of(absl::string_view bytes);
// Lower-case hex, 32 characters.
std::string ToHex(const Checksum128& checksum);

// The check named by an upload's metadata (v1::UpdateMetadata): xxh3_128
// (agents of this version) or sha256 (older agents), lower-case hex.
class UploadCheck {
 public:
  // OK when exactly one of the two is set and well formed; otherwise
  // INVALID_ARGUMENT naming the field.
  static absl::Status Validate(absl::string_view sha256_hex,
                               absl::string_view xxh3_128_hex);
  // Checks bytes against the named checksum. When Validate fails, Verify
  // fails with its status whatever the bytes.
  UploadCheck(absl::string_view sha256_hex, absl::string_view xxh3_128_hex);

  void Update(absl::string_view bytes);
  // OK when the bytes fed match; INVALID_ARGUMENT otherwise.
  absl::Status Verify();
  // "xxh3_128" or "sha256" ("checksum" when Validate failed).
  absl::string_view name() const;

 private:
  absl::Status valid_;
  std::string expected_hex_;
  std::optional<Xxh3_128> xxh3_;
  std::optional<Sha256> sha256_;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_CHECKSUM_H_
