#include "common/checksum.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

// The whole of xxHash is compiled into this file (static functions), so
// only its header is needed, at build time.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace fedge {

struct Xxh3_128::State {
  State() { Reset(); }
  void Reset() {
    FEDGE_CHECK(XXH3_128bits_reset(&state) == XXH_OK)
        << "XXH3_128bits_reset failed";
  }
  XXH3_state_t state;
};

Xxh3_128::Xxh3_128() : state_(std::make_unique<State>()) {}
Xxh3_128::~Xxh3_128() = default;
Xxh3_128::Xxh3_128(Xxh3_128&&) noexcept = default;
Xxh3_128& Xxh3_128::operator=(Xxh3_128&&) noexcept = default;

void Xxh3_128::Update(absl::string_view bytes) {
  Update(bytes.data(), bytes.size());
}

void Xxh3_128::Update(const void* data, size_t size) {
  FEDGE_CHECK(state_ != nullptr) << "Xxh3_128 used after move";
  if (size == 0) return;
  FEDGE_CHECK(XXH3_128bits_update(&state_->state, data, size) == XXH_OK)
      << "XXH3_128bits_update failed";
}

Checksum128 Xxh3_128::Finish() {
  FEDGE_CHECK(state_ != nullptr) << "Xxh3_128 used after move";
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(&state_->state));
  state_->Reset();
  Checksum128 out;
  static_assert(sizeof(canonical.digest) == sizeof(out));
  std::copy(std::begin(canonical.digest), std::end(canonical.digest),
            out.begin());
  return out;
}

Checksum128 Xxh3_128Of(absl::string_view bytes) {
  Xxh3_128 hasher;
  hasher.Update(bytes);
  return hasher.Finish();
}

std::string ToHex(const Checksum128& checksum) {
  return absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(checksum.data()), checksum.size()));
}

absl::Status UploadCheck::Validate(absl::string_view sha256_hex,
                                   absl::string_view xxh3_128_hex) {
  if (sha256_hex.empty() == xxh3_128_hex.empty()) {
    return absl::InvalidArgumentError(
        "set exactly one of xxh3_128 (32 lower-case hex characters, the "
        "checksum agents send) and sha256 (64, from older agents)");
  }
  if (!xxh3_128_hex.empty() &&
      (xxh3_128_hex.size() != 32 || !IsLowerHex(xxh3_128_hex))) {
    return absl::InvalidArgumentError(
        "xxh3_128 must be 32 lower-case hex characters");
  }
  if (!sha256_hex.empty() &&
      (sha256_hex.size() != 64 || !IsLowerHex(sha256_hex))) {
    return absl::InvalidArgumentError(
        "sha256 must be 64 lower-case hex characters");
  }
  return absl::OkStatus();
}

UploadCheck::UploadCheck(absl::string_view sha256_hex,
                         absl::string_view xxh3_128_hex)
    : valid_(Validate(sha256_hex, xxh3_128_hex)) {
  if (!valid_.ok()) return;
  if (!xxh3_128_hex.empty()) {
    expected_hex_ = std::string(xxh3_128_hex);
    xxh3_.emplace();
  } else {
    expected_hex_ = std::string(sha256_hex);
    sha256_.emplace();
  }
}

void UploadCheck::Update(absl::string_view bytes) {
  if (xxh3_.has_value()) {
    xxh3_->Update(bytes);
  } else if (sha256_.has_value()) {
    sha256_->Update(bytes);
  }
}

absl::Status UploadCheck::Verify() {
  if (!valid_.ok()) return valid_;
  const std::string found =
      xxh3_.has_value() ? ToHex(xxh3_->Finish()) : ToHex(sha256_->Finish());
  if (found == expected_hex_) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("update bytes do not match their ", name(),
                   " (corrupted in transit?)"));
}

absl::string_view UploadCheck::name() const {
  if (!valid_.ok()) return "checksum";
  return xxh3_.has_value() ? "xxh3_128" : "sha256";
}

}  // namespace fedge
