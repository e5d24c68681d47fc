#include "common/secagg/protocol.h"

#include "absl/strings/str_cat.h"
#include "common/little_endian.h"

namespace fedge::secagg {
namespace {

std::string Label(absl::string_view label, const Sha256Digest& digest) {
  std::string out(label);
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out;
}

void PutValues(std::string& out, const ShamirShare& share) {
  for (uint64_t v : share.values) AppendLE(&out, v, 8);
}

absl::Status GetValues(absl::string_view& in, int index, ShamirShare& share) {
  share.index = index;
  for (uint64_t& v : share.values) {
    v = ReadLE(in.data(), 8);
    in.remove_prefix(8);
    if (v >= kFieldPrime) {
      return absl::InvalidArgumentError("share value is not a field element");
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::array<uint8_t, 32> ShareEncryptionKey(const X25519Key& agreement,
                                           const Sha256Digest& config_digest,
                                           int sender, int recipient) {
  std::string info = Label("fedge-secagg share key", config_digest);
  AppendLE(&info, static_cast<uint32_t>(sender), 4);
  AppendLE(&info, static_cast<uint32_t>(recipient), 4);
  return HkdfSha256(agreement, info);
}

std::string ShareAad(const Sha256Digest& config_digest, int sender,
                     int recipient) {
  std::string aad = Label("fedge-secagg share", config_digest);
  AppendLE(&aad, static_cast<uint32_t>(sender), 4);
  AppendLE(&aad, static_cast<uint32_t>(recipient), 4);
  return aad;
}

std::string EncodeSharePlaintext(const ShamirShare& masking_key_share,
                                 const ShamirShare& self_mask_share) {
  std::string out;
  out.reserve(2 * kShareElements * 8);
  PutValues(out, masking_key_share);
  PutValues(out, self_mask_share);
  return out;
}

absl::Status DecodeSharePlaintext(absl::string_view plaintext, int index,
                                  ShamirShare& masking_key_share,
                                  ShamirShare& self_mask_share) {
  if (plaintext.size() != 2 * kShareElements * 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("share plaintext is ", plaintext.size(), " bytes"));
  }
  absl::Status status = GetValues(plaintext, index, masking_key_share);
  if (!status.ok()) return status;
  return GetValues(plaintext, index, self_mask_share);
}

Seed PairwiseMaskSeed(const X25519Key& agreement,
                      const Sha256Digest& config_digest) {
  return HkdfSha256(agreement,
                    Label("fedge-secagg pairwise mask", config_digest));
}

void ApplyMask(const Seed& seed, int sign, absl::Span<uint32_t> acc) {
  MaskGenerator generator(seed);
  if (sign > 0) {
    generator.AddTo(acc);
  } else {
    generator.SubtractFrom(acc);
  }
}

Sha256Digest SelfMaskCommitment(const Sha256Digest& config_digest, int id,
                                const Seed& self_mask_seed) {
  std::string bytes = Label("fedge-secagg self-mask commitment", config_digest);
  AppendLE(&bytes, static_cast<uint32_t>(id), 4);
  bytes.append(reinterpret_cast<const char*>(self_mask_seed.data()),
               self_mask_seed.size());
  return Sha256Of(bytes);
}

}  // namespace fedge::secagg
