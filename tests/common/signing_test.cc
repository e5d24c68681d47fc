#include "common/signing.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class SigningTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(testing::TempDir(), "/fedge_signing_test.", getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    key_ = std::make_unique<Ed25519PrivateKey>(*Ed25519PrivateKey::Generate());
    digest_ = Sha256Of("model bytes");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string dir_;
  std::unique_ptr<Ed25519PrivateKey> key_;
  Sha256Digest digest_;
  const std::string spec_ = "mlp 784-200-200-10";
};

TEST_F(SigningTest, SignThenVerify) {
  auto signature = Sign(*key_, "hello");
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_EQ(signature->size(), kEd25519SignatureBytes);
  EXPECT_TRUE(Verify(key_->public_key(), "hello", *signature).ok());
  EXPECT_EQ(Verify(key_->public_key(), "hellO", *signature).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(SigningTest, ModelSignature_Verifies) {
  auto signature = SignModel(*key_, 7, spec_, digest_);
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(
      VerifyModel(key_->public_key(), 7, spec_, digest_, *signature).ok());
}

TEST_F(SigningTest, ModelSignature_TamperedFieldsRefused) {
  const std::string signature = *SignModel(*key_, 7, spec_, digest_);
  const Ed25519PublicKey& pub = key_->public_key();
  absl::Status status = VerifyModel(pub, 8, spec_, digest_, signature);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(status.message(), HasSubstr("version 8"));
  EXPECT_FALSE(VerifyModel(pub, -7, spec_, digest_, signature).ok());
  EXPECT_FALSE(VerifyModel(pub, 7, spec_ + " ", digest_, signature).ok());
  Sha256Digest other = digest_;
  other[31] ^= 1;
  EXPECT_FALSE(VerifyModel(pub, 7, spec_, other, signature).ok());
  for (size_t i : {size_t{0}, size_t{31}, size_t{63}}) {
    std::string bad = signature;
    bad[i] ^= 0x01;
    EXPECT_EQ(VerifyModel(pub, 7, spec_, digest_, bad).code(),
              absl::StatusCode::kUnauthenticated)
        << "byte " << i;
  }
  EXPECT_EQ(VerifyModel(pub, 7, spec_, digest_, signature.substr(1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyModel(pub, 7, spec_, digest_, "").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SigningTest, WrongKey_Refused) {
  const std::string signature = *SignModel(*key_, 7, spec_, digest_);
  auto other = Ed25519PrivateKey::Generate();
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->public_key(), key_->public_key());
  EXPECT_EQ(
      VerifyModel(other->public_key(), 7, spec_, digest_, signature).code(),
      absl::StatusCode::kUnauthenticated);
}

TEST_F(SigningTest, Message_IsLengthPrefixedAndUnambiguous) {
  const std::string m = ModelSigningMessage(1, "ab", digest_);
  ASSERT_EQ(m.size(), 8 + 14 + 8 + 8 + 8 + 2 + 8 + 32);
  EXPECT_EQ(m.substr(0, 8), std::string("\0\0\0\0\0\0\0\x0e", 8));
  EXPECT_EQ(m.substr(8, 14), "fedge-model-v1");
  EXPECT_EQ(m.substr(30, 8), std::string("\0\0\0\0\0\0\0\x01", 8));
  // Moving bytes between the spec and its neighbours changes the message.
  EXPECT_NE(ModelSigningMessage(1, "ab", digest_),
            ModelSigningMessage(1, std::string("ab\0", 3), digest_));
  EXPECT_NE(ModelSigningMessage(256, "", digest_),
            ModelSigningMessage(1, "", digest_));
}

TEST_F(SigningTest, PemRoundTrip) {
  auto priv = Ed25519PrivateKey::FromPem(key_->ToPem());
  ASSERT_TRUE(priv.ok()) << priv.status();
  EXPECT_EQ(priv->public_key(), key_->public_key());
  auto pub = Ed25519PublicKey::FromPem(key_->public_key().ToPem());
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(*pub, key_->public_key());
  // A key re-read from PEM signs for the original public key.
  EXPECT_TRUE(Verify(key_->public_key(), "m", *Sign(*priv, "m")).ok());
  auto raw = Ed25519PublicKey::FromRaw(absl::string_view(
      reinterpret_cast<const char*>(pub->raw().data()), pub->raw().size()));
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(*raw, *pub);
}

TEST_F(SigningTest, FileRoundTrip_PrivateKeyIsOwnerOnly) {
  const std::string priv_path = dir_ + "/model-signing.key";
  const std::string pub_path = dir_ + "/model-signing.pub.pem";
  ASSERT_TRUE(SavePrivateKeyPem(*key_, priv_path).ok());
  ASSERT_TRUE(SavePublicKeyPem(key_->public_key(), pub_path).ok());
  struct stat st;
  ASSERT_EQ(stat(priv_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto priv = LoadPrivateKeyPem(priv_path);
  ASSERT_TRUE(priv.ok()) << priv.status();
  auto pub = LoadPublicKeyPem(pub_path);
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(*pub, priv->public_key());
  EXPECT_EQ(LoadPublicKeyPem(dir_ + "/missing").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SigningTest, OpensslCliKeys_Load) {
  const std::string priv_path = dir_ + "/cli.key";
  const std::string pub_path = dir_ + "/cli.pub.pem";
  const std::string cmd =
      absl::StrCat("openssl genpkey -algorithm ed25519 -out ", priv_path,
                   " 2>/dev/null && openssl pkey -in ", priv_path,
                   " -pubout -out ", pub_path, " 2>/dev/null");
  if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "no openssl CLI";
  auto priv = LoadPrivateKeyPem(priv_path);
  ASSERT_TRUE(priv.ok()) << priv.status();
  auto pub = LoadPublicKeyPem(pub_path);
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(*pub, priv->public_key());
}

TEST_F(SigningTest, MalformedPem_Refused) {
  const std::string pub_pem = key_->public_key().ToPem();
  const std::string priv_pem = key_->ToPem();
  for (const std::string& bad :
       {std::string(), std::string("hello"), pub_pem.substr(0, 40),
        std::string("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC "
                    "KEY-----\n")}) {
    EXPECT_EQ(Ed25519PublicKey::FromPem(bad).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(Ed25519PrivateKey::FromPem(bad).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  // Each kind of key refused where the other is wanted.
  EXPECT_FALSE(Ed25519PrivateKey::FromPem(pub_pem).ok());
  // A private-key PEM holds the public key too; reading it as PUBKEY fails.
  EXPECT_FALSE(Ed25519PublicKey::FromPem(priv_pem).ok());
  // A corrupted DER header inside the base64 body.
  std::string corrupt = pub_pem;
  corrupt[30] = corrupt[30] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(Ed25519PublicKey::FromPem(corrupt).ok());
  EXPECT_FALSE(Ed25519PublicKey::FromRaw("short").ok());
  const std::string path = dir_ + "/garbage.key";
  ASSERT_TRUE(WriteStringAtomically(path, "garbage").ok());
  absl::Status status = LoadPrivateKeyPem(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(path));
}

TEST_F(SigningTest, OtherAlgorithmPem_Refused) {
  const std::string path = dir_ + "/ec.key";
  const std::string cmd = absl::StrCat(
      "openssl genpkey -algorithm EC -pkeyopt "
      "ec_paramgen_curve:P-256 -out ",
      path, " 2>/dev/null");
  if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "no openssl CLI";
  absl::Status status = LoadPrivateKeyPem(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("not Ed25519"));
}

}  // namespace
}  // namespace fedge
