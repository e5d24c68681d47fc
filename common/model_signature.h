// Signatures of global models as they travel: the coordinator's
// ModelSigner signs each published version, and an agent's ModelVerifier
// checks the signature against the public keys pinned in its config before
// the model is trained on, evaluated, cached or used to predict.
//
// What is signed is ModelSigningMessage (common/signing.h) over the model
// version, the architecture (ModelSpecBytes of the federation's
// v1::ModelSpecProto) and the SHA-256 of the model's download encoding,
// which the agent checks the streamed or cached bytes against. A signature
// travels with the id of the key that made it (ModelSigningKeyId), so an
// agent that pins several keys (rotation, docs/model-signing.md) knows
// which one to try.
//
// ModelSigner and ModelVerifier are immutable after Create/Load and
// thread-safe; the signer owns its private key (move-only, wiped).
#ifndef FEDGE_COMMON_MODEL_SIGNATURE_H_
#define FEDGE_COMMON_MODEL_SIGNATURE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/signing.h"
#include "fedge/v1/federation.pb.h"

namespace fedge {

// A model's signature as it travels (TrainTask, EvaluateTask,
// PollResponse, ModelChunk) and as the agent's cache keeps it.
struct ModelSignature {
  std::string key_id;     // ModelSigningKeyId of the signing key.
  std::string signature;  // 64 bytes of Ed25519.
  bool empty() const { return signature.empty(); }
};

// The id of a model-signing key: the first 8 bytes of the SHA-256 of its
// raw public key, as 16 lower-case hex digits.
std::string ModelSigningKeyId(const Ed25519PublicKey& key);

// The architecture bytes signed for a model of `spec`: its deterministic
// proto serialization (every field of the spec is bound).
std::string ModelSpecBytes(const v1::ModelSpecProto& spec);

// The 32 bytes of a lower-case or upper-case hex SHA-256. INVALID_ARGUMENT
// unless `hex` is 64 hex digits.
absl::StatusOr<Sha256Digest> ParseSha256Hex(absl::string_view hex);

// The coordinator's side.
class ModelSigner {
 public:
  // The signer of the private key PEM file at `path` (deploy/make-certs.sh's
  // model-signing.key). LoadPrivateKeyPem's errors.
  static absl::StatusOr<ModelSigner> Load(const std::string& path);
  explicit ModelSigner(Ed25519PrivateKey key);

  // The signature of model `version` of `spec` whose download encoding
  // has SHA-256 `sha256_hex`. INVALID_ARGUMENT for a malformed hash;
  // INTERNAL when OpenSSL fails.
  absl::StatusOr<ModelSignature> Sign(int64_t version,
                                      const v1::ModelSpecProto& spec,
                                      absl::string_view sha256_hex) const;

  const std::string& key_id() const { return key_id_; }

 private:
  Ed25519PrivateKey key_;
  std::string key_id_;
};

// The agent's side: the pinned public keys, by key id.
class ModelVerifier {
 public:
  // The verifier of the public key PEM files at `paths` (at least one).
  // INVALID_ARGUMENT for an empty list; LoadPublicKeyPem's errors, naming
  // the file.
  static absl::StatusOr<ModelVerifier> Load(
      const std::vector<std::string>& paths);
  explicit ModelVerifier(const std::vector<Ed25519PublicKey>& keys);

  // OK when `signature` is a pinned key's signature of model `version` of
  // `spec` with SHA-256 `sha256_hex`. UNAUTHENTICATED, the message naming
  // the version and the reason, when the model carries no signature, was
  // signed by a key that is not pinned, or the signature does not verify;
  // INVALID_ARGUMENT for a malformed hash or signature.
  absl::Status Verify(int64_t version, const v1::ModelSpecProto& spec,
                      absl::string_view sha256_hex,
                      const ModelSignature& signature) const;

  // The pinned key ids, comma-separated (for logs).
  std::string KeyIds() const;

 private:
  std::map<std::string, Ed25519PublicKey> keys_;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_MODEL_SIGNATURE_H_
