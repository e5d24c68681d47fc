#include "common/signing.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/openssl_util.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

using openssl::BioPtr;
using openssl::MdCtxPtr;
using openssl::MemoryBio;
using openssl::PkeyPtr;

// The contents of a memory BIO.
std::string BioContents(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, len > 0 ? static_cast<size_t>(len) : 0);
}

// The 32 raw bytes of an Ed25519 key (public or private half).
bool RawKey(EVP_PKEY* pkey, bool private_half,
            std::array<uint8_t, kEd25519KeyBytes>& out) {
  size_t len = out.size();
  const int ok = private_half
                     ? EVP_PKEY_get_raw_private_key(pkey, out.data(), &len)
                     : EVP_PKEY_get_raw_public_key(pkey, out.data(), &len);
  return ok == 1 && len == out.size();
}

PkeyPtr PrivatePkey(const std::array<uint8_t, kEd25519KeyBytes>& seed) {
  return PkeyPtr(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                              seed.data(), seed.size()));
}

PkeyPtr PublicPkey(const std::array<uint8_t, kEd25519KeyBytes>& raw) {
  return PkeyPtr(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                             raw.data(), raw.size()));
}

void AppendField(std::string& out, absl::string_view field) {
  uint64_t len = field.size();
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((len >> shift) & 0xff));
  }
  out.append(field.data(), field.size());
}

// Writes `contents` to `path` through `path`.tmp created with mode 0600
// (never readable by others, whatever the umask), fsync and rename.
absl::Status WritePrivateFile(const std::string& path,
                              absl::string_view contents) {
  const std::string tmp = path + ".tmp";
  if (unlink(tmp.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, "remove", tmp);
  }
  ScopedFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) return ErrnoStatus(errno, "create", tmp);
  absl::Status status;
  size_t done = 0;
  while (status.ok() && done < contents.size()) {
    const ssize_t n =
        write(fd.get(), contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) status = ErrnoStatus(errno, "write", tmp);
    if (n > 0) done += static_cast<size_t>(n);
  }
  if (status.ok() && fsync(fd.get()) != 0) {
    status = ErrnoStatus(errno, "fsync", tmp);
  }
  if (status.ok() && fd.Close() != 0) status = ErrnoStatus(errno, "close", tmp);
  if (status.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus(errno, "rename", tmp);
  }
  if (!status.ok()) {
    unlink(tmp.c_str());
    return status;
  }
  const size_t slash = path.rfind('/');
  return SyncDir(slash == std::string::npos ? "."
                 : slash == 0               ? "/"
                                            : path.substr(0, slash));
}

}  // namespace

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromRaw(
    absl::string_view raw) {
  if (raw.size() != kEd25519KeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("an Ed25519 public key is 32 bytes, got ", raw.size()));
  }
  Ed25519PublicKey key;
  std::memcpy(key.raw_.data(), raw.data(), raw.size());
  if (PublicPkey(key.raw_) == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("OpenSSL refuses the Ed25519 key bytes");
  }
  return key;
}

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromPem(
    absl::string_view pem) {
  BioPtr bio = MemoryBio(pem);
  if (bio == nullptr) return absl::InvalidArgumentError("PEM too large");
  PkeyPtr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (pkey == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("not a PEM PUBLIC KEY block");
  }
  if (EVP_PKEY_get_id(pkey.get()) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the PEM holds a ", OBJ_nid2sn(EVP_PKEY_get_id(pkey.get())),
        " key, not Ed25519"));
  }
  Ed25519PublicKey key;
  if (!RawKey(pkey.get(), /*private_half=*/false, key.raw_)) {
    return absl::InvalidArgumentError("cannot read the Ed25519 public key");
  }
  return key;
}

std::string Ed25519PublicKey::ToPem() const {
  PkeyPtr pkey = PublicPkey(raw_);
  BioPtr bio(BIO_new(BIO_s_mem()));
  FEDGE_CHECK(pkey != nullptr && bio != nullptr &&
              PEM_write_bio_PUBKEY(bio.get(), pkey.get()) == 1)
      << "OpenSSL PEM encoding failed";
  return BioContents(bio.get());
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::Generate() {
  EVP_PKEY* raw_pkey = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr), &EVP_PKEY_CTX_free);
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_keygen(ctx.get(), &raw_pkey) != 1) {
    return absl::InternalError("OpenSSL Ed25519 key generation failed");
  }
  PkeyPtr pkey(raw_pkey);
  Ed25519PrivateKey key;
  if (!RawKey(pkey.get(), /*private_half=*/true, key.seed_) ||
      !RawKey(pkey.get(), /*private_half=*/false, key.public_key_.raw_)) {
    return absl::InternalError("cannot read the generated Ed25519 key");
  }
  return key;
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::FromPem(
    absl::string_view pem) {
  BioPtr bio = MemoryBio(pem);
  if (bio == nullptr) return absl::InvalidArgumentError("PEM too large");
  // An empty passphrase callback: an encrypted key fails instead of
  // prompting on the terminal.
  PkeyPtr pkey(PEM_read_bio_PrivateKey(
      bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  if (pkey == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "not an unencrypted PEM PRIVATE KEY block");
  }
  if (EVP_PKEY_get_id(pkey.get()) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the PEM holds a ", OBJ_nid2sn(EVP_PKEY_get_id(pkey.get())),
        " key, not Ed25519"));
  }
  Ed25519PrivateKey key;
  if (!RawKey(pkey.get(), /*private_half=*/true, key.seed_) ||
      !RawKey(pkey.get(), /*private_half=*/false, key.public_key_.raw_)) {
    return absl::InvalidArgumentError("cannot read the Ed25519 private key");
  }
  return key;
}

Ed25519PrivateKey::Ed25519PrivateKey(Ed25519PrivateKey&& other) noexcept
    : seed_(other.seed_), public_key_(other.public_key_) {
  OPENSSL_cleanse(other.seed_.data(), other.seed_.size());
}

Ed25519PrivateKey& Ed25519PrivateKey::operator=(
    Ed25519PrivateKey&& other) noexcept {
  if (this != &other) {
    seed_ = other.seed_;
    public_key_ = other.public_key_;
    OPENSSL_cleanse(other.seed_.data(), other.seed_.size());
  }
  return *this;
}

Ed25519PrivateKey::~Ed25519PrivateKey() {
  OPENSSL_cleanse(seed_.data(), seed_.size());
}

std::string Ed25519PrivateKey::ToPem() const {
  PkeyPtr pkey = PrivatePkey(seed_);
  BioPtr bio(BIO_new(BIO_s_secmem()));
  FEDGE_CHECK(pkey != nullptr && bio != nullptr &&
              PEM_write_bio_PrivateKey(bio.get(), pkey.get(), nullptr, nullptr,
                                       0, nullptr, nullptr) == 1)
      << "OpenSSL PEM encoding failed";
  return BioContents(bio.get());
}

absl::StatusOr<std::string> Sign(const Ed25519PrivateKey& key,
                                 absl::string_view message) {
  PkeyPtr pkey = PrivatePkey(key.seed_);
  MdCtxPtr ctx(EVP_MD_CTX_new());
  std::string signature(kEd25519SignatureBytes, '\0');
  size_t len = signature.size();
  if (pkey == nullptr || ctx == nullptr ||
      EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) !=
          1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<uint8_t*>(signature.data()),
                     &len, reinterpret_cast<const uint8_t*>(message.data()),
                     message.size()) != 1 ||
      len != kEd25519SignatureBytes) {
    return absl::InternalError("OpenSSL Ed25519 signing failed");
  }
  return signature;
}

absl::Status Verify(const Ed25519PublicKey& key, absl::string_view message,
                    absl::string_view signature) {
  if (signature.size() != kEd25519SignatureBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "an Ed25519 signature is 64 bytes, got ", signature.size()));
  }
  PkeyPtr pkey = PublicPkey(key.raw());
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (pkey == nullptr || ctx == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) !=
          1) {
    return absl::InternalError("OpenSSL Ed25519 verification setup failed");
  }
  if (EVP_DigestVerify(
          ctx.get(), reinterpret_cast<const uint8_t*>(signature.data()),
          signature.size(), reinterpret_cast<const uint8_t*>(message.data()),
          message.size()) != 1) {
    ERR_clear_error();
    return absl::UnauthenticatedError("the Ed25519 signature does not verify");
  }
  return absl::OkStatus();
}

std::string ModelSigningMessage(int64_t version, absl::string_view spec,
                                const Sha256Digest& model_sha256) {
  std::string version_bytes;
  const uint64_t v = static_cast<uint64_t>(version);
  for (int shift = 56; shift >= 0; shift -= 8) {
    version_bytes.push_back(static_cast<char>((v >> shift) & 0xff));
  }
  std::string out;
  out.reserve(4 * 8 + kModelSigningDomain.size() + 8 + spec.size() + 32);
  AppendField(out, kModelSigningDomain);
  AppendField(out, version_bytes);
  AppendField(out, spec);
  AppendField(
      out, absl::string_view(reinterpret_cast<const char*>(model_sha256.data()),
                             model_sha256.size()));
  return out;
}

absl::StatusOr<std::string> SignModel(const Ed25519PrivateKey& key,
                                      int64_t version, absl::string_view spec,
                                      const Sha256Digest& model_sha256) {
  return Sign(key, ModelSigningMessage(version, spec, model_sha256));
}

absl::Status VerifyModel(const Ed25519PublicKey& key, int64_t version,
                         absl::string_view spec,
                         const Sha256Digest& model_sha256,
                         absl::string_view signature) {
  absl::Status status =
      Verify(key, ModelSigningMessage(version, spec, model_sha256), signature);
  if (absl::IsUnauthenticated(status)) {
    return absl::UnauthenticatedError(
        absl::StrCat("the signature of model version ", version,
                     " does not verify with the model-signing key"));
  }
  return status;
}

absl::StatusOr<Ed25519PrivateKey> LoadPrivateKeyPem(const std::string& path) {
  ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(path, kMaxKeyPemBytes));
  absl::StatusOr<Ed25519PrivateKey> key = Ed25519PrivateKey::FromPem(pem);
  OPENSSL_cleanse(pem.data(), pem.size());
  if (!key.ok()) return Annotate(key.status(), path);
  return key;
}

absl::StatusOr<Ed25519PublicKey> LoadPublicKeyPem(const std::string& path) {
  ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(path, kMaxKeyPemBytes));
  absl::StatusOr<Ed25519PublicKey> key = Ed25519PublicKey::FromPem(pem);
  if (!key.ok()) return Annotate(key.status(), path);
  return key;
}

absl::Status SavePrivateKeyPem(const Ed25519PrivateKey& key,
                               const std::string& path) {
  std::string pem = key.ToPem();
  absl::Status status = WritePrivateFile(path, pem);
  OPENSSL_cleanse(pem.data(), pem.size());
  return status;
}

absl::Status SavePublicKeyPem(const Ed25519PublicKey& key,
                              const std::string& path) {
  return WriteStringAtomically(path, key.ToPem());
}

}  // namespace fedge
