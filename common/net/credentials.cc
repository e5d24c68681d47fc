#include "common/net/credentials.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/openssl_util.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

constexpr char kServerFix[] =
    "run deploy/make-certs.sh OUT_DIR and point tls.cert_path, "
    "tls.key_path (and tls.ca_path) at its files, or pass "
    "--tls.insecure=true for a developer setup";
constexpr char kClientFix[] =
    "set tls.ca_path to the CA that signed the coordinator's certificate "
    "(ca.pem from deploy/make-certs.sh), or pass --tls.insecure=true for a "
    "developer setup";

// Client keepalive: ping timeout; reconnect backoff bounds.
constexpr int kKeepaliveTimeoutMs = 10000;
constexpr int kInitialReconnectBackoffMs = 100;
constexpr int kMaxReconnectBackoffMs = 2000;
// gRPC reads GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as the minimum time given to
// one connection attempt, so it stays at gRPC's default of 20 s.
constexpr int kMinConnectTimeoutMs = 20000;
// Server keepalive: how often it pings idle clients, and the ping timeout.
constexpr int kServerKeepaliveTimeMs = 60000;
constexpr int kServerKeepaliveTimeoutMs = 20000;

// INVALID_ARGUMENT naming `field` when `value` is empty.
absl::Status RequireField(const std::string& value, absl::string_view field,
                          absl::string_view why, absl::string_view fix) {
  if (!value.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " is required ", why, ": ", fix));
}

// Reads the PEM file at `path`, configured as `field`.
absl::StatusOr<std::string> ReadPemFile(absl::string_view field,
                                        const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", field, " \"", path,
                                            "\": ", std::strerror(errno)));
  }
  std::string pem(kMaxPemFileBytes + 1, '\0');
  in.read(&pem[0], static_cast<std::streamsize>(pem.size()));
  pem.resize(static_cast<size_t>(in.gcount()));
  if (in.bad()) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", field, " \"", path, "\""));
  }
  if (static_cast<int64_t>(pem.size()) > kMaxPemFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " \"", path, "\" is larger than ", kMaxPemFileBytes,
                     " bytes; expected a PEM file"));
  }
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " \"", path, "\" is not a PEM file (no -----BEGIN line)"));
  }
  return pem;
}

// Reads the certificate chain and private key named by tls.cert_path and
// tls.key_path (both set).
// The certificate and key PEM files parse and belong together. gRPC only
// logs "Invalid private key" and then fails to listen (or to connect) with
// no word of which file is wrong.
absl::Status CheckKeyOfCert(const v1::TlsConfig& tls,
                            const std::string& cert_pem,
                            const std::string& key_pem) {
  openssl::BioPtr cert_bio = openssl::MemoryBio(cert_pem);
  openssl::X509Ptr cert(
      PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls.cert_path '", tls.cert_path(),
                     "' holds no PEM certificate: ", openssl::ErrorString()));
  }
  openssl::BioPtr key_bio = openssl::MemoryBio(key_pem);
  // No pass phrase: an encrypted key is refused, never prompted for.
  pem_password_cb* no_pass_phrase = [](char*, int, int, void*) { return 0; };
  openssl::PkeyPtr key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_pass_phrase, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls.key_path '", tls.key_path(),
        "' holds no unencrypted PEM private key: ", openssl::ErrorString()));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "tls.key_path '", tls.key_path(),
        "' is not the private key of tls.cert_path '", tls.cert_path(),
        "': use the key made with that certificate (make-certs.sh writes "
        "NAME.pem and NAME.key)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<grpc::SslServerCredentialsOptions::PemKeyCertPair>
ReadKeyCertPair(const v1::TlsConfig& tls) {
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain,
                   ReadPemFile("tls.cert_path", tls.cert_path()));
  ASSIGN_OR_RETURN(pair.private_key,
                   ReadPemFile("tls.key_path", tls.key_path()));
  RETURN_IF_ERROR(CheckKeyOfCert(tls, pair.cert_chain, pair.private_key));
  return pair;
}

// The fix for a client certificate given without its key (or a key
// without its certificate): deploy/make-certs.sh writes NAME.pem with
// NAME.key beside it, whoever NAME is (an agent, an operator).
std::string MissingHalfFix(const v1::TlsConfig& tls) {
  const bool has_cert = !tls.cert_path().empty();
  const std::string& given = has_cert ? tls.cert_path() : tls.key_path();
  const absl::string_view from = has_cert ? ".pem" : ".key";
  const absl::string_view to = has_cert ? ".key" : ".pem";
  const std::string example =
      absl::EndsWith(given, from)
          ? absl::StrCat(" (for ", given, ": --",
                         has_cert ? "tls.key_path=" : "tls.cert_path=",
                         absl::StripSuffix(given, from), to, ")")
          : "";
  return absl::StrCat(
      "set tls.cert_path and tls.key_path to a client certificate and its "
      "key from deploy/make-certs.sh, which writes NAME.pem with NAME.key",
      example);
}

int ClampToInt(int64_t value, int64_t min) {
  return static_cast<int>(std::clamp<int64_t>(value, min, INT_MAX));
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const v1::TlsConfig& tls) {
  if (tls.insecure()) {
    FEDGE_LOG(WARNING) << "serving plain text (tls.insecure=true): anyone on "
                          "the network can read and forge traffic";
    return grpc::InsecureServerCredentials();
  }
  const char* why = "unless tls.insecure=true";
  RETURN_IF_ERROR(
      RequireField(tls.cert_path(), "tls.cert_path", why, kServerFix));
  RETURN_IF_ERROR(
      RequireField(tls.key_path(), "tls.key_path", why, kServerFix));
  grpc::SslServerCredentialsOptions options(
      tls.require_client_cert()
          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ASSIGN_OR_RETURN(auto pair, ReadKeyCertPair(tls));
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (tls.require_client_cert()) {
    RETURN_IF_ERROR(RequireField(
        tls.ca_path(), "tls.ca_path", "with tls.require_client_cert=true",
        "set it to the CA that signed the agents' certificates (ca.pem from "
        "deploy/make-certs.sh)"));
    ASSIGN_OR_RETURN(options.pem_root_certs,
                     ReadPemFile("tls.ca_path", tls.ca_path()));
  }
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const v1::TlsConfig& tls) {
  if (tls.insecure()) return grpc::InsecureChannelCredentials();
  RETURN_IF_ERROR(RequireField(tls.ca_path(), "tls.ca_path",
                               "unless tls.insecure=true", kClientFix));
  grpc::SslCredentialsOptions options;
  ASSIGN_OR_RETURN(options.pem_root_certs,
                   ReadPemFile("tls.ca_path", tls.ca_path()));
  if (!tls.cert_path().empty() || !tls.key_path().empty()) {
    const char* why = "for mutual TLS (it goes with the other of the two)";
    const std::string fix = MissingHalfFix(tls);
    RETURN_IF_ERROR(RequireField(tls.cert_path(), "tls.cert_path", why, fix));
    RETURN_IF_ERROR(RequireField(tls.key_path(), "tls.key_path", why, fix));
    ASSIGN_OR_RETURN(auto pair, ReadKeyCertPair(tls));
    options.pem_cert_chain = std::move(pair.cert_chain);
    options.pem_private_key = std::move(pair.private_key);
  }
  return grpc::SslCredentials(options);
}

grpc::ChannelArguments MakeChannelArguments(const v1::TlsConfig& tls,
                                            int64_t keepalive_time_ms) {
  grpc::ChannelArguments args;
  if (!tls.server_name().empty()) {
    args.SetSslTargetNameOverride(tls.server_name());
  }
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              ClampToInt(keepalive_time_ms, kMinKeepaliveTimeMs));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kMinConnectTimeoutMs);
  return args;
}

void ConfigureServerBuilder(grpc::ServerBuilder& builder,
                            const v1::CoordinatorConfig& config) {
  // One listener per port: gRPC's default SO_REUSEPORT would let a second
  // coordinator bind the same port and take half of the connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      static_cast<int>(kMinKeepaliveTimeMs / 2));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             kServerKeepaliveTimeMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             kServerKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                             kServerStreamWindowBytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             config.max_concurrent_streams_per_connection());
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             ClampToInt(config.handshake_timeout_ms(), 1));
  builder.AddChannelArgument(GRPC_ARG_TSI_MAX_FRAME_SIZE,
                             config.tls_max_frame_bytes());
  grpc::ResourceQuota quota("fedge-coordinator");
  quota.Resize(static_cast<size_t>(config.grpc_memory_quota_mb()) << 20);
  builder.SetResourceQuota(quota);  // The builder keeps its own reference.
}

std::string ConnectionFailureHint(const v1::TlsConfig& tls,
                                  absl::string_view message) {
  if (absl::StrContains(message, "wrong version number")) {
    return tls.insecure()
               ? ""
               : " (the TLS handshake failed: does the coordinator speak "
                 "plain text? Started with --insecure, it needs --insecure "
                 "here too)";
  }
  if (!absl::StrContains(message, "Socket closed")) return "";
  constexpr char kClosed[] = " (the coordinator closed the connection";
  if (tls.insecure()) {
    return absl::StrCat(kClosed,
                        ": does it expect TLS? This side speaks plain text, "
                        "tls.insecure)");
  }
  if (tls.cert_path().empty()) {
    return absl::StrCat(kClosed,
                        " in the TLS handshake: does it require a client "
                        "certificate? Set tls.cert_path and tls.key_path)");
  }
  return absl::StrCat(kClosed,
                      " in the TLS handshake: does it accept the client "
                      "certificate of tls.cert_path? It must be signed by "
                      "the CA the coordinator trusts and not revoked)");
}

std::string PeerCommonName(const grpc::AuthContext& auth_context) {
  if (!auth_context.IsPeerAuthenticated()) return "";
  const auto type = auth_context.FindPropertyValues(
      GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
  if (type.empty() || type.front() != GRPC_SSL_TRANSPORT_SECURITY_TYPE) {
    return "";
  }
  const auto names =
      auth_context.FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
  if (names.empty()) return "";
  return std::string(names.front().data(), names.front().size());
}

std::string PeerIdentity(const grpc::ServerContextBase& context) {
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  return auth == nullptr ? "" : PeerCommonName(*auth);
}

bool IsOperatorIdentity(const std::string& common_name) {
  return common_name == "operator" || common_name.rfind("operator-", 0) == 0;
}

}  // namespace fedge
