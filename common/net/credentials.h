// TLS credentials and connection settings for fedge's gRPC endpoints, built
// from the TlsConfig section of a coordinator or agent config.
//
// The coordinator serves with MakeServerCredentials() and
// ConfigureServerBuilder(); agents dial with MakeChannelCredentials() and
// MakeChannelArguments(). Plain text is used only when tls.insecure is true
// (a developer setup). With tls.require_client_cert the coordinator accepts
// only clients whose certificate is signed by tls.ca_path, and a gRPC method
// reads the caller's identity with PeerIdentity(). Certificates for a
// deployment are made by deploy/make-certs.sh.
//
// Stateless functions; thread-safe. Certificate files are read once, when
// the credentials are made; rotating them requires making new credentials.
#ifndef FEDGE_COMMON_NET_CREDENTIALS_H_
#define FEDGE_COMMON_NET_CREDENTIALS_H_

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/channel_arguments.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "fedge/v1/config.pb.h"

namespace fedge {

// Largest certificate or key file read (bytes); larger files are refused.
inline constexpr int64_t kMaxPemFileBytes = int64_t{1} << 20;

// Shortest client keepalive interval (ms) MakeChannelArguments() uses;
// ConfigureServerBuilder() lets clients ping at half this interval.
inline constexpr int64_t kMinKeepaliveTimeMs = 10000;

// Credentials for the coordinator's listening port.
//
// tls.insecure: plain text (logs a warning); every other field is ignored.
// Otherwise TLS with the chain in tls.cert_path and the key in tls.key_path;
// with tls.require_client_cert, clients must present a certificate signed by
// the CA in tls.ca_path (without it, client certificates are not requested).
//
// Returns INVALID_ARGUMENT naming the field (e.g. "tls.cert_path") and the
// fix when a required path is empty, or when a file is larger than
// kMaxPemFileBytes or holds no PEM block; NOT_FOUND naming the field and
// path when a file cannot be read. A key that does not match its
// certificate is only detected when the server starts (BuildAndStart fails).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const v1::TlsConfig& tls);

// Credentials for an agent's (or a tool's) channel to the coordinator.
//
// tls.insecure: plain text; every other field is ignored. Otherwise TLS
// trusting only the CA in tls.ca_path (required); when tls.cert_path and
// tls.key_path are set, the channel presents that certificate (mutual TLS).
//
// Returns INVALID_ARGUMENT naming the field when tls.ca_path is empty, when
// only one of tls.cert_path / tls.key_path is set, or when a file is too
// large or holds no PEM block; NOT_FOUND naming the field and path when a
// file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const v1::TlsConfig& tls);

// Channel arguments for dialling the coordinator:
//  - tls.server_name, when set, is the name checked against the
//    coordinator's certificate instead of the dialled host;
//  - keepalive pings every `keepalive_time_ms` (clamped to at least
//    kMinKeepaliveTimeMs), also while no call is active and without a limit
//    on pings between data frames, so that a long local training step does
//    not lose the connection; a ping unanswered for 10 s closes it;
//  - reconnect backoff from 100 ms growing to at most 2 s, while each
//    connection attempt (TCP + TLS handshake) still gets 20 s.
grpc::ChannelArguments MakeChannelArguments(const v1::TlsConfig& tls,
                                            int64_t keepalive_time_ms);

// Size of each stream's receive window on the coordinator (bytes): what an
// upload waiting for a slot may buffer in gRPC.
inline constexpr int kServerStreamWindowBytes = 512 << 10;

// Applies the coordinator's transport settings to `builder`:
//  - keepalive: accepts client pings every kMinKeepaliveTimeMs / 2 or
//    slower, also without active calls, and never answers frequent pings
//    with GOAWAY ("too_many_pings"); pings idle connections every 60 s to
//    drop dead peers;
//  - a fixed receive window of kServerStreamWindowBytes per stream (no BDP
//    probing, whose window grows to many MB per stream);
//  - the capacity fields of `config` (see config.proto):
//    max_concurrent_streams_per_connection, handshake_timeout_ms,
//    tls_max_frame_bytes and grpc_memory_quota_mb (a grpc::ResourceQuota
//    of this server's own).
// `config` must be valid (ValidateCoordinatorConfig); by default the proto's
// defaults are used.
void ConfigureServerBuilder(grpc::ServerBuilder& builder,
                            const v1::CoordinatorConfig& config =
                                v1::CoordinatorConfig::default_instance());

// What a failed connection to the coordinator usually means, from this
// side's TLS settings, for an error `message` of gRPC's: " (...)" to append,
// or "" when there is nothing to add. "Socket closed" before the connection
// was up: the coordinator refused the handshake without saying why (plain
// text against TLS, a missing or untrusted client certificate). "wrong
// version number": TLS against a plain-text (--insecure) coordinator.
std::string ConnectionFailureHint(const v1::TlsConfig& tls,
                                  absl::string_view message);

// The common name (CN) of the peer's verified TLS certificate, or "" when the
// connection is plain text or the peer presented no certificate. On a
// coordinator built with MakeServerCredentials() a client certificate is
// present only when tls.require_client_cert is set, and then it has been
// verified against tls.ca_path.
std::string PeerCommonName(const grpc::AuthContext& auth_context);

// PeerCommonName() of the client of the call `context` belongs to ("" when
// the call has no auth context). Under require_client_cert this is the
// agent's id, e.g. "agent-1".
std::string PeerIdentity(const grpc::ServerContextBase& context);

// True for an operator's certificate identity: "operator" or "operator-*"
// (deploy/make-certs.sh --operators N makes operator-1...).
bool IsOperatorIdentity(const std::string& common_name);

}  // namespace fedge

#endif  // FEDGE_COMMON_NET_CREDENTIALS_H_
