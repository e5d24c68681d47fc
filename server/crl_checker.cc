#include "server/crl_checker.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/openssl_util.h"

namespace fedge {
namespace {

// Largest CRL or CA file read (a CRL of a million entries is ~40 MB).
constexpr int64_t kMaxCrlBytes = int64_t{64} << 20;
// Parsed peer certificates kept (then the cache is cleared).
constexpr size_t kMaxPeersCached = 4096;

using openssl::BioPtr;
using openssl::X509CrlPtr;
using openssl::X509Ptr;

std::string SerialHex(const ASN1_INTEGER* serial) {
  openssl::BnPtr bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (bn == nullptr) return "";
  char* hex = BN_bn2hex(bn.get());
  if (hex == nullptr) return "";
  std::string out(hex);
  OPENSSL_free(hex);
  return out;
}

std::string NameLine(const X509_NAME* name) {
  char buf[512];
  if (X509_NAME_oneline(name, buf, sizeof buf) == nullptr) return "";
  return buf;
}

std::string CommonName(X509* cert) {
  char buf[257];
  const int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
                                          NID_commonName, buf, sizeof buf);
  return n < 0 ? "" : std::string(buf, static_cast<size_t>(n));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CrlChecker>> CrlChecker::Create(
    Options options) {
  auto self = std::unique_ptr<CrlChecker>(new CrlChecker(std::move(options)));
  const FileStamp stamp = Stamp(self->options_.crl_path);
  absl::StatusOr<Loaded> loaded = self->Load();
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config field 'tls.crl_path': ", loaded.status().message(),
        " (deploy/make-certs.sh OUT_DIR writes OUT_DIR/crl.pem)"));
  }
  absl::MutexLock lock(&self->mu_);
  self->crl_ = *std::move(loaded);
  self->loaded_stamp_ = stamp;
  self->loads_ = 1;
  FEDGE_LOG(INFO) << "certificate revocation list " << self->options_.crl_path
                  << ": " << self->crl_.serials.size()
                  << " revoked certificate(s)";
  return self;
}

CrlChecker::FileStamp CrlChecker::Stamp(const std::string& path) {
  struct stat st;
  FileStamp s;
  if (stat(path.c_str(), &st) != 0) return s;
  s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  s.size = st.st_size;
  return s;
}

absl::StatusOr<CrlChecker::Loaded> CrlChecker::Load() const {
  absl::StatusOr<std::string> pem =
      ReadSmallFile(options_.crl_path, kMaxCrlBytes);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<std::string> ca_pem =
      ReadSmallFile(options_.ca_path, kMaxCrlBytes);
  if (!ca_pem.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the CA (tls.ca_path) to verify it with: ",
                     ca_pem.status().message()));
  }
  BioPtr bio = openssl::MemoryBio(*pem);
  X509CrlPtr crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
  if (crl == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        options_.crl_path, " is not a PEM CRL: ", openssl::ErrorString()));
  }
  // The CA certificate that issued it must verify its signature.
  BioPtr ca_bio = openssl::MemoryBio(*ca_pem);
  bool verified = false;
  int cas = 0;
  while (X509* raw = PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr,
                                        nullptr)) {
    X509Ptr ca(raw);
    ++cas;
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()),
                      X509_get_subject_name(ca.get())) != 0) {
      continue;
    }
    EVP_PKEY* key = X509_get0_pubkey(ca.get());
    if (key != nullptr && X509_CRL_verify(crl.get(), key) == 1) {
      verified = true;
      break;
    }
  }
  ERR_clear_error();  // The end of the PEM sequence.
  if (cas == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls.ca_path ", options_.ca_path, " holds no PEM certificate"));
  }
  if (!verified) {
    return absl::InvalidArgumentError(absl::StrCat(
        options_.crl_path, " (issuer ",
        NameLine(X509_CRL_get_issuer(crl.get())),
        ") is not signed by a CA of tls.ca_path ", options_.ca_path));
  }
  Loaded loaded;
  loaded.issuer = NameLine(X509_CRL_get_issuer(crl.get()));
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  const int n = revoked == nullptr ? 0 : sk_X509_REVOKED_num(revoked);
  for (int i = 0; i < n; ++i) {
    const X509_REVOKED* r = sk_X509_REVOKED_value(revoked, i);
    std::string serial = SerialHex(X509_REVOKED_get0_serialNumber(r));
    if (!serial.empty()) loaded.serials.insert(std::move(serial));
  }
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
  if (next != nullptr && X509_cmp_current_time(next) < 0) {
    FEDGE_LOG(WARNING) << "certificate revocation list " << options_.crl_path
                       << " is past its next update: renew it "
                          "(deploy/make-certs.sh); still used";
  }
  return loaded;
}

absl::Status CrlChecker::ReloadIfChanged() {
  const FileStamp stamp = Stamp(options_.crl_path);
  {
    absl::MutexLock lock(&mu_);
    if (stamp == loaded_stamp_) return absl::OkStatus();
    loaded_stamp_ = stamp;  // Tried once per change (no error every second).
  }
  absl::StatusOr<Loaded> loaded = Load();
  if (!loaded.ok()) {
    FEDGE_LOG(ERROR) << "tls.crl_path " << options_.crl_path
                     << " changed but cannot be used, keeping the previous "
                        "revocation list: "
                     << loaded.status().message();
    return loaded.status();
  }
  absl::MutexLock lock(&mu_);
  crl_ = *std::move(loaded);
  ++loads_;
  FEDGE_LOG(INFO) << "certificate revocation list " << options_.crl_path
                  << " reloaded: " << crl_.serials.size()
                  << " revoked certificate(s)";
  return absl::OkStatus();
}

absl::Status CrlChecker::Check(absl::string_view cert_pem) {
  bool reload = false;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    if (now >= next_check_) {
      next_check_ = now + options_.reload_interval;
      reload = true;
    }
  }
  if (reload) ReloadIfChanged().IgnoreError();  // Logged there.
  PeerCert peer;
  {
    absl::MutexLock lock(&mu_);
    auto it = peers_.find(cert_pem);
    if (it != peers_.end()) peer = it->second;
  }
  if (peer.serial.empty()) {
    BioPtr bio = openssl::MemoryBio(cert_pem);
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) {
      ERR_clear_error();
      return absl::UnauthenticatedError(
          "the client certificate cannot be read for the revocation check");
    }
    peer.serial = SerialHex(X509_get_serialNumber(cert.get()));
    peer.issuer = NameLine(X509_get_issuer_name(cert.get()));
    peer.common_name = CommonName(cert.get());
    absl::MutexLock lock(&mu_);
    if (peers_.size() >= kMaxPeersCached) peers_.clear();
    peers_.emplace(std::string(cert_pem), peer);
  }
  absl::MutexLock lock(&mu_);
  if (peer.issuer == crl_.issuer && crl_.serials.contains(peer.serial)) {
    return absl::UnauthenticatedError(absl::StrCat(
        "certificate serial ", peer.serial, " (CN ", peer.common_name,
        ") is revoked (tls.crl_path)"));
  }
  return absl::OkStatus();
}

size_t CrlChecker::num_revoked() const {
  absl::MutexLock lock(&mu_);
  return crl_.serials.size();
}

int64_t CrlChecker::loads() const {
  absl::MutexLock lock(&mu_);
  return loads_;
}

}  // namespace fedge
