#include "common/model_signature.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace fedge {

std::string ModelSigningKeyId(const Ed25519PublicKey& key) {
  const Sha256Digest digest = Sha256Of(absl::string_view(
      reinterpret_cast<const char*>(key.raw().data()), key.raw().size()));
  return ToHex(digest).substr(0, 16);
}

std::string ModelSpecBytes(const v1::ModelSpecProto& spec) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    spec.SerializeToCodedStream(&out);
  }
  return bytes;
}

absl::StatusOr<Sha256Digest> ParseSha256Hex(absl::string_view hex) {
  const bool hex_digits =
      hex.size() == 64 && hex.find_first_not_of("0123456789abcdefABCDEF") ==
                              absl::string_view::npos;
  if (!hex_digits) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", hex.substr(0, 80), "' is not a hex SHA-256"));
  }
  const std::string bytes = absl::HexStringToBytes(hex);
  Sha256Digest digest;
  std::copy(bytes.begin(), bytes.end(), digest.begin());
  return digest;
}

absl::StatusOr<ModelSigner> ModelSigner::Load(const std::string& path) {
  ASSIGN_OR_RETURN(Ed25519PrivateKey key, LoadPrivateKeyPem(path));
  return ModelSigner(std::move(key));
}

ModelSigner::ModelSigner(Ed25519PrivateKey key)
    : key_(std::move(key)), key_id_(ModelSigningKeyId(key_.public_key())) {}

absl::StatusOr<ModelSignature> ModelSigner::Sign(
    int64_t version, const v1::ModelSpecProto& spec,
    absl::string_view sha256_hex) const {
  ASSIGN_OR_RETURN(Sha256Digest digest, ParseSha256Hex(sha256_hex));
  ModelSignature out;
  out.key_id = key_id_;
  ASSIGN_OR_RETURN(out.signature,
                   SignModel(key_, version, ModelSpecBytes(spec), digest));
  return out;
}

absl::StatusOr<ModelVerifier> ModelVerifier::Load(
    const std::vector<std::string>& paths) {
  if (paths.empty()) {
    return absl::InvalidArgumentError("no model-signing public key to pin");
  }
  std::vector<Ed25519PublicKey> keys;
  for (const std::string& path : paths) {
    ASSIGN_OR_RETURN(Ed25519PublicKey key, LoadPublicKeyPem(path));
    keys.push_back(key);
  }
  return ModelVerifier(keys);
}

ModelVerifier::ModelVerifier(const std::vector<Ed25519PublicKey>& keys) {
  for (const Ed25519PublicKey& key : keys) {
    keys_.emplace(ModelSigningKeyId(key), key);
  }
}

absl::Status ModelVerifier::Verify(int64_t version,
                                   const v1::ModelSpecProto& spec,
                                   absl::string_view sha256_hex,
                                   const ModelSignature& signature) const {
  if (signature.empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "model version ", version,
        " carries no signature (is the coordinator's model_signing_key_path "
        "set?)"));
  }
  auto it = keys_.find(signature.key_id);
  if (it == keys_.end()) {
    return absl::UnauthenticatedError(
        absl::StrCat("model version ", version, " is signed with key id '",
                     absl::CHexEscape(signature.key_id.substr(0, 32)),
                     "', which is not pinned (pinned: ", KeyIds(), ")"));
  }
  ASSIGN_OR_RETURN(Sha256Digest digest, ParseSha256Hex(sha256_hex));
  return VerifyModel(it->second, version, ModelSpecBytes(spec), digest,
                     signature.signature);
}

std::string ModelVerifier::KeyIds() const {
  std::vector<std::string> ids;
  for (const auto& [id, key] : keys_) ids.push_back(id);
  return absl::StrJoin(ids, ", ");
}

}  // namespace fedge
