// libFuzzer entry point for model signing (common/signing.h): PEM key
// parsing and signature verification, with fuzzed keys, messages and
// signatures.
//
// The input is a mode byte, then per mode:
//   0  PEM text: Ed25519PublicKey::FromPem and Ed25519PrivateKey::FromPem.
//      A key that parses re-encodes (ToPem) to a PEM that parses to the
//      same key; a private key's signature verifies under its public key.
//   1  record raw public key, record message, rest signature:
//      Ed25519PublicKey::FromRaw, then Verify under it; and Verify under a
//      fixed key, which must accept exactly the signature Sign gives
//      (Ed25519 is deterministic and OpenSSL verifies strictly).
//   2  U64 version, record spec, 32 bytes SHA-256, U64 second version,
//      record second spec, rest signature: VerifyModel of the fuzzed
//      signature; SignModel/VerifyModel round trip; distinct fields give
//      distinct ModelSigningMessages, and a signature of one does not
//      verify the other.
//   3  PEM file contents: LoadPublicKeyPem and LoadPrivateKeyPem.
// A crash, a sanitizer report or a broken property (abort) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/signing.h"
#include "tests/fuzz/fuzz_util.h"

namespace fedge {
namespace {

using fuzz::Check;
using fuzz::InputReader;
using fuzz::InputWriter;

// PEM armour around DER bytes, 64 base64 characters a line.
std::string Pem(absl::string_view label, absl::string_view der) {
  const std::string b64 = absl::Base64Escape(der);
  std::string out = absl::StrCat("-----BEGIN ", label, "-----\n");
  for (size_t at = 0; at < b64.size(); at += 64) {
    absl::StrAppend(&out, b64.substr(at, 64), "\n");
  }
  return absl::StrCat(out, "-----END ", label, "-----\n");
}

// The PKCS#8 PEM of the Ed25519 private key with seed 0x01 0x02 ... 0x20.
std::string FixedPrivatePem() {
  std::string der(
      "\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20", 16);
  for (int i = 1; i <= 32; ++i) der.push_back(static_cast<char>(i));
  return Pem("PRIVATE KEY", der);
}

const Ed25519PrivateKey& FixedKey() {
  static const Ed25519PrivateKey* const key = [] {
    absl::StatusOr<Ed25519PrivateKey> k =
        Ed25519PrivateKey::FromPem(FixedPrivatePem());
    Check(k.ok(), "the fixed private key does not parse");
    return new Ed25519PrivateKey(*std::move(k));
  }();
  return *key;
}

void FuzzPem(absl::string_view pem) {
  absl::StatusOr<Ed25519PublicKey> pub = Ed25519PublicKey::FromPem(pem);
  if (pub.ok()) {
    absl::StatusOr<Ed25519PublicKey> again =
        Ed25519PublicKey::FromPem(pub->ToPem());
    Check(again.ok() && *again == *pub, "public key PEM round trip");
  }
  absl::StatusOr<Ed25519PrivateKey> priv = Ed25519PrivateKey::FromPem(pem);
  fuzz::Trace("FromPem (private)", priv.status());
  if (priv.ok()) {
    absl::StatusOr<Ed25519PrivateKey> again =
        Ed25519PrivateKey::FromPem(priv->ToPem());
    Check(again.ok() && again->public_key() == priv->public_key(),
          "private key PEM round trip");
    absl::StatusOr<std::string> signature = Sign(*priv, pem);
    Check(signature.ok() && signature->size() == kEd25519SignatureBytes,
          "Sign");
    Check(Verify(priv->public_key(), pem, *signature).ok(),
          "a signature does not verify under its key");
  }
}

void FuzzVerify(InputReader& in) {
  const absl::string_view raw = in.Record();
  const absl::string_view message = in.Record();
  const absl::string_view signature = in.Rest();
  absl::StatusOr<Ed25519PublicKey> key = Ed25519PublicKey::FromRaw(raw);
  if (key.ok()) {
    Check(Ed25519PublicKey::FromPem(key->ToPem()).ok(), "raw key to PEM");
    Verify(*key, message, signature).IgnoreError();
  }
  const absl::Status verified =
      Verify(FixedKey().public_key(), message, signature);
  absl::StatusOr<std::string> real = Sign(FixedKey(), message);
  Check(real.ok(), "Sign");
  Check(verified.ok() == (signature == *real),
        "Verify accepted a signature Sign does not give");
  if (!verified.ok()) {
    Check(
        absl::IsInvalidArgument(verified) || absl::IsUnauthenticated(verified),
        "Verify: a code other than INVALID_ARGUMENT or UNAUTHENTICATED");
  }
}

Sha256Digest DigestFrom(absl::string_view bytes) {
  Sha256Digest digest{};
  for (size_t i = 0; i < bytes.size() && i < digest.size(); ++i) {
    digest[i] = static_cast<uint8_t>(bytes[i]);
  }
  return digest;
}

void FuzzModelSignature(InputReader& in) {
  const int64_t version = static_cast<int64_t>(in.U64());
  const absl::string_view spec = in.Record();
  const Sha256Digest sha = DigestFrom(in.Bytes(32));
  const int64_t other_version = static_cast<int64_t>(in.U64());
  const absl::string_view other_spec = in.Record();
  const absl::string_view signature = in.Rest();
  const Ed25519PublicKey& key = FixedKey().public_key();
  VerifyModel(key, version, spec, sha, signature).IgnoreError();
  absl::StatusOr<std::string> real = SignModel(FixedKey(), version, spec, sha);
  Check(real.ok(), "SignModel");
  Check(VerifyModel(key, version, spec, sha, *real).ok(),
        "SignModel/VerifyModel round trip");
  const bool same = version == other_version && spec == other_spec;
  Check(same == (ModelSigningMessage(version, spec, sha) ==
                 ModelSigningMessage(other_version, other_spec, sha)),
        "ModelSigningMessage is not one-to-one");
  if (!same) {
    Check(absl::IsUnauthenticated(
              VerifyModel(key, other_version, other_spec, sha, *real)),
          "a model signature verified other fields");
  }
}

void FuzzFiles(absl::string_view contents) {
  static const fuzz::ScratchDir dir;
  const std::string path = dir.WriteFile("key.pem", contents);
  LoadPublicKeyPem(path).status().IgnoreError();
  LoadPrivateKeyPem(path).status().IgnoreError();
}

void FuzzOne(absl::string_view input) {
  InputReader in(input);
  switch (in.Byte() % 4) {
    case 0:
      FuzzPem(in.Rest());
      break;
    case 1:
      FuzzVerify(in);
      break;
    case 2:
      FuzzModelSignature(in);
      break;
    case 3:
      FuzzFiles(in.Rest());
      break;
  }
}

std::vector<std::string> Seeds() {
  const std::string private_pem = FixedPrivatePem();
  const Ed25519PublicKey& pub = FixedKey().public_key();
  const std::string public_pem = pub.ToPem();
  const std::string raw(reinterpret_cast<const char*>(pub.raw().data()),
                        pub.raw().size());
  const std::string message = "fedge-model-v1 message";
  const std::string signature = *Sign(FixedKey(), message);
  const Sha256Digest sha = Sha256Of("model bytes");
  const std::string sha_bytes(reinterpret_cast<const char*>(sha.data()),
                              sha.size());
  const std::string model_signature = *SignModel(FixedKey(), 7, "mlp", sha);
  std::vector<std::string> seeds;
  for (uint8_t mode : {0, 3}) {
    seeds.push_back(InputWriter().Byte(mode).Bytes(private_pem).str());
    seeds.push_back(InputWriter().Byte(mode).Bytes(public_pem).str());
  }
  seeds.push_back(
      InputWriter().Byte(1).Record(raw).Record(message).Bytes(signature).str());
  seeds.push_back(InputWriter()
                      .Byte(2)
                      .U64(7)
                      .Record("mlp")
                      .Bytes(sha_bytes)
                      .U64(8)
                      .Record("mlp")
                      .Bytes(model_signature)
                      .str());
  return seeds;
}

}  // namespace
}  // namespace fedge

FEDGE_FUZZ_TARGET(fedge::Seeds, fedge::FuzzOne)
