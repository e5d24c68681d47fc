// Certificate revocation for the coordinator (tls.crl_path, issue #9): the
// serial of every call's client certificate is checked against a PEM CRL
// signed by the CA (deploy/make-certs.sh --revoke NAME updates it). The
// file is reloaded when its mtime or size changes, checked at most every
// reload_interval; a CRL that fails to read, parse or verify keeps the
// previous one (an error is logged). OpenSSL 3; no gRPC (the gRPC side is
// server/crl_auth.h).
//
// Thread-safe.
#ifndef FEDGE_SERVER_CRL_CHECKER_H_
#define FEDGE_SERVER_CRL_CHECKER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace fedge {

class CrlChecker {
 public:
  struct Options {
    std::string crl_path;  // PEM CRL.
    std::string ca_path;   // PEM CA certificate(s); one must sign the CRL.
    absl::Duration reload_interval = absl::Seconds(1);
  };
  // INVALID_ARGUMENT naming tls.crl_path (or tls.ca_path) when the CRL
  // cannot be read, parsed or verified against the CA.
  static absl::StatusOr<std::unique_ptr<CrlChecker>> Create(Options options);

  // OK when `cert_pem` (the peer's certificate, PEM) is not revoked;
  // UNAUTHENTICATED "certificate serial <hex> (CN ...) is revoked" when it
  // is, or when it cannot be parsed. Reloads the CRL first when due.
  absl::Status Check(absl::string_view cert_pem);

  // Reloads now if the file changed (what Check does when due). OK when
  // nothing changed or the reload worked; the error otherwise (the
  // previous CRL is kept).
  absl::Status ReloadIfChanged();

  size_t num_revoked() const;
  int64_t loads() const;  // Successful loads, the first included.

 private:
  struct Loaded {
    std::string issuer;  // One-line issuer name.
    absl::flat_hash_set<std::string> serials;  // Upper-case hex.
  };
  struct FileStamp {
    int64_t mtime_ns = -1;
    int64_t size = -1;
    bool operator==(const FileStamp& o) const {
      return mtime_ns == o.mtime_ns && size == o.size;
    }
  };
  struct PeerCert {
    std::string serial;  // Upper-case hex ("" when unparsable).
    std::string issuer;
    std::string common_name;
  };
  explicit CrlChecker(Options options) : options_(std::move(options)) {}
  // Reads, parses and verifies the CRL file.
  absl::StatusOr<Loaded> Load() const;
  static FileStamp Stamp(const std::string& path);

  const Options options_;
  mutable absl::Mutex mu_;
  Loaded crl_ ABSL_GUARDED_BY(mu_);
  FileStamp loaded_stamp_ ABSL_GUARDED_BY(mu_);  // Of the file last tried.
  absl::Time next_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t loads_ ABSL_GUARDED_BY(mu_) = 0;
  // Parsed peer certificates by their PEM (bounded: cleared when full).
  absl::flat_hash_map<std::string, PeerCert> peers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedge

#endif  // FEDGE_SERVER_CRL_CHECKER_H_
