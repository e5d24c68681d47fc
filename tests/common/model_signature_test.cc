#include "common/model_signature.h"

#include <cctype>
#include <string>

#include "common/sha256.h"
#include "common/signing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

class ModelSignatureTest : public testing::Test {
 protected:
  ModelSignatureTest()
      : signer_(*Ed25519PrivateKey::Generate()),
        sha_(ToHex(Sha256Of("model bytes"))) {
    spec_.set_architecture("mlp");
    spec_.add_hidden_units(200);
    spec_.add_input_shape(784);
    spec_.set_num_classes(10);
  }

  ModelSigner signer_;
  v1::ModelSpecProto spec_;
  std::string sha_;
};

TEST_F(ModelSignatureTest, KeyId_16HexDigitsOfThePublicKey) {
  const Ed25519PrivateKey key = *Ed25519PrivateKey::Generate();
  const std::string id = ModelSigningKeyId(key.public_key());
  EXPECT_EQ(id.size(), 16u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(id, ModelSigningKeyId(key.public_key()));
  EXPECT_NE(id, ModelSigningKeyId(Ed25519PrivateKey::Generate()->public_key()));
}

TEST_F(ModelSignatureTest, SignThenVerify_BoundToVersionSpecAndHash) {
  absl::StatusOr<ModelSignature> sig = signer_.Sign(7, spec_, sha_);
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_EQ(sig->key_id, signer_.key_id());
  EXPECT_EQ(sig->signature.size(), kEd25519SignatureBytes);
  // A signer and a verifier of one key pair.
  const Ed25519PrivateKey key = *Ed25519PrivateKey::Generate();
  const Ed25519PublicKey pub = key.public_key();
  ModelSigner signer{Ed25519PrivateKey::FromPem(key.ToPem()).value()};
  const ModelVerifier verifier({pub});
  const ModelSignature good = *signer.Sign(7, spec_, sha_);
  EXPECT_EQ(verifier.Verify(7, spec_, sha_, good), absl::OkStatus());

  absl::Status version = verifier.Verify(8, spec_, sha_, good);
  EXPECT_EQ(version.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(version.message(), HasSubstr("version 8"));
  v1::ModelSpecProto wider = spec_;
  wider.set_hidden_units(0, 201);
  EXPECT_EQ(verifier.Verify(7, wider, sha_, good).code(),
            absl::StatusCode::kUnauthenticated);
  const std::string other_sha = ToHex(Sha256Of("other bytes"));
  EXPECT_EQ(verifier.Verify(7, spec_, other_sha, good).code(),
            absl::StatusCode::kUnauthenticated);
  ModelSignature flipped = good;
  flipped.signature[10] ^= 0x40;
  EXPECT_EQ(verifier.Verify(7, spec_, sha_, flipped).code(),
            absl::StatusCode::kUnauthenticated);
  // Upper-case hex names the same hash.
  std::string upper = sha_;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(ch));
  EXPECT_EQ(verifier.Verify(7, spec_, upper, good), absl::OkStatus());
}

TEST_F(ModelSignatureTest, UnsignedOrUnpinnedKey_RefusedWithTheReason) {
  const Ed25519PrivateKey pinned = *Ed25519PrivateKey::Generate();
  const ModelVerifier verifier({pinned.public_key()});
  absl::Status none = verifier.Verify(3, spec_, sha_, ModelSignature());
  EXPECT_EQ(none.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(none.message(), HasSubstr("version 3 carries no signature"));

  const ModelSignature foreign = *signer_.Sign(3, spec_, sha_);
  absl::Status unpinned = verifier.Verify(3, spec_, sha_, foreign);
  EXPECT_EQ(unpinned.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(unpinned.message(), HasSubstr(foreign.key_id));
  EXPECT_THAT(unpinned.message(), HasSubstr("not pinned"));
  EXPECT_THAT(unpinned.message(),
              HasSubstr(ModelSigningKeyId(pinned.public_key())));

  // A signature made by another key under the pinned key's id.
  ModelSignature forged = foreign;
  forged.key_id = ModelSigningKeyId(pinned.public_key());
  EXPECT_EQ(verifier.Verify(3, spec_, sha_, forged).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(ModelSignatureTest, Rotation_EitherPinnedKeyVerifies) {
  const Ed25519PrivateKey old_key = *Ed25519PrivateKey::Generate();
  const Ed25519PrivateKey new_key = *Ed25519PrivateKey::Generate();
  const ModelVerifier both({old_key.public_key(), new_key.public_key()});
  ModelSigner old_signer{Ed25519PrivateKey::FromPem(old_key.ToPem()).value()};
  ModelSigner new_signer{Ed25519PrivateKey::FromPem(new_key.ToPem()).value()};
  EXPECT_EQ(both.Verify(1, spec_, sha_, *old_signer.Sign(1, spec_, sha_)),
            absl::OkStatus());
  EXPECT_EQ(both.Verify(2, spec_, sha_, *new_signer.Sign(2, spec_, sha_)),
            absl::OkStatus());
  const ModelVerifier only_new({new_key.public_key()});
  EXPECT_EQ(
      only_new.Verify(1, spec_, sha_, *old_signer.Sign(1, spec_, sha_)).code(),
      absl::StatusCode::kUnauthenticated);
}

TEST_F(ModelSignatureTest, MalformedHash_InvalidArgument) {
  EXPECT_EQ(signer_.Sign(1, spec_, "abc").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSha256Hex(std::string(64, 'g')).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<Sha256Digest> digest = ParseSha256Hex(sha_);
  ASSERT_TRUE(digest.ok());
  EXPECT_EQ(ToHex(*digest), sha_);
}

TEST_F(ModelSignatureTest, Load_NoPathsOrMissingFile_Refused) {
  EXPECT_EQ(ModelVerifier::Load({}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(
      ModelVerifier::Load({"/nonexistent/model-signing.pub.pem"}).ok());
  EXPECT_FALSE(ModelSigner::Load("/nonexistent/model-signing.key").ok());
}

}  // namespace
}  // namespace fedge
