// GrpcCoordinatorClient: CoordinatorClient over gRPC (service
// fedge.v1.Federation, proto/fedge/v1/federation.proto), with the
// synchronous client API. Models and updates stream in chunks of the
// canonical encoding (common/model_codec.h): a fetched model is hashed and
// decoded as its chunks arrive, an update is encoded chunk by chunk, so
// neither is ever held twice in memory nor limited by gRPC's message size.
//
// Every call has a deadline: call_timeout for unary calls (Poll is a long
// poll, so it must exceed the coordinator's poll_wait_ms), leave_timeout for
// Leave, and for streams stream_timeout plus the time its size takes at
// min_stream_bytes_per_second and over the simulated link. The channel uses TLS
// from TlsConfig (common/net/credentials.h) unless tls.insecure, with keepalive
// pings. A DeviceProfile's link (LinkProfile) is simulated here: added latency
// before each call, a bandwidth cap between chunks.
//
// Before a call, the client waits for the channel to connect, at most
// connect_timeout (or the budget SetConnectBudget() leaves, if shorter),
// and stops at the first failed connection attempt; the wait polls the
// connection, so a coordinator that comes back (a restart) is reached
// within moments. A call on a channel that did not connect fails fast
// (never gRPC's wait_for_ready) with UNAVAILABLE "cannot reach the
// coordinator at <target>: " and gRPC's reason (e.g. "Connection refused",
// a TLS handshake or certificate error), or "not connected after ..." for
// an attempt still in progress. Status codes are otherwise those of
// coordinator_client.h; a broken connection is UNAVAILABLE, a call past its
// deadline DEADLINE_EXCEEDED. Heartbeat (beside training, where no error is
// shown) waits for the channel until its deadline instead.
//
// Stopping (BeginStop, on SIGTERM) is bounded: the call in progress and a
// heartbeat in flight are cancelled, and a call made afterwards (a trained
// update's last attempt, Leave) does not wait for the connection and gets
// leave_timeout at most.
//
// Not thread-safe: one call at a time (the agent loop's pattern), except
// Heartbeat, which may run beside any other call, and BeginStop.
#ifndef FEDGE_EDGE_AGENT_GRPC_COORDINATOR_CLIENT_H_
#define FEDGE_EDGE_AGENT_GRPC_COORDINATOR_CLIENT_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/model_codec.h"
#include "edge_agent/coordinator_client.h"
#include "edge_agent/link_throttle.h"
#include "edge_agent/sleeper.h"
#include "fedge/v1/config.pb.h"
#include "fedge/v1/federation.grpc.pb.h"

namespace fedge {

struct GrpcCoordinatorClientOptions {
  // Coordinator address, host:port.
  std::string target = "127.0.0.1:50051";
  // TLS (or tls.insecure for plain text, developer mode only).
  v1::TlsConfig tls;
  // Keepalive ping interval in milliseconds.
  int64_t keepalive_time_ms = 20000;
  // Longest wait for the channel to connect before a call (see above).
  absl::Duration connect_timeout = absl::Seconds(10);
  // Deadline of Join, Poll and the other unary calls, once connected.
  absl::Duration call_timeout = absl::Seconds(30);
  // Deadline of Leave, a stopping agent's last call (best effort, never
  // retried), and the longest deadline of any call after BeginStop(): how
  // long an unreachable or hung coordinator can hold a stop.
  absl::Duration leave_timeout = absl::Seconds(2);
  // Deadline of FetchModel / SubmitUpdate: this, plus the stream's size at
  // min_stream_bytes_per_second, plus its time over the simulated link.
  absl::Duration stream_timeout = absl::Seconds(60);
  int64_t min_stream_bytes_per_second = 256 << 10;
  // Bytes of encoded update per uploaded chunk.
  size_t chunk_bytes = size_t{1} << 20;
  // Largest message accepted from the coordinator (a model chunk), bytes.
  int max_receive_message_bytes = 16 << 20;
  // Limits for decoding fetched models.
  DecodeLimits limits;
  // Simulated device link (DeviceProfile).
  LinkProfile link;
  // Time and sleeping, for the simulated link.
  const Clock* clock = RealClock::Get();
  Sleeper sleep = RealSleeper();
};

class GrpcCoordinatorClient final : public CoordinatorClient {
 public:
  // Creates the channel (it connects lazily, on the first call).
  // INVALID_ARGUMENT for an empty target or zero chunk_bytes; the errors of
  // MakeChannelCredentials (e.g. NOT_FOUND for a missing certificate file).
  static absl::StatusOr<std::unique_ptr<GrpcCoordinatorClient>> Create(
      GrpcCoordinatorClientOptions options);
  // Over an existing channel (tests use an in-process one, which has no
  // connectivity state: calls go to it without waiting for a connection).
  static std::unique_ptr<GrpcCoordinatorClient> CreateForChannel(
      GrpcCoordinatorClientOptions options,
      std::shared_ptr<grpc::ChannelInterface> channel);

  GrpcCoordinatorClient(const GrpcCoordinatorClient&) = delete;
  GrpcCoordinatorClient& operator=(const GrpcCoordinatorClient&) = delete;

  absl::StatusOr<v1::JoinResponse> Join(
      const v1::JoinRequest& request) override;
  absl::StatusOr<v1::PollResponse> Poll(
      const v1::PollRequest& request) override;
  absl::StatusOr<ModelState> FetchModel(
      const std::string& session_token, int64_t version,
      const std::string& expected_sha256_hex) override;
  absl::StatusOr<v1::SubmitUpdateResponse> SubmitUpdate(
      v1::UpdateMetadata metadata, const ModelState& delta,
      const EncodedModel* encoded) override;
  absl::Status Leave(const std::string& session_token) override;
  absl::Status SubmitEvaluation(
      const v1::SubmitEvaluationRequest& request) override;
  absl::Status FetchArchive(const std::string& session_token,
                            const std::string& sha256_hex, int64_t size_bytes,
                            const std::string& path) override;
  // Thread-safe (gRPC stubs are); does not go through the simulated link.
  absl::Status Heartbeat(const std::string& session_token) override;
  absl::Status ReportFailure(const v1::ReportFailureRequest& request) override;
  // A long poll: waits up to the coordinator's poll_wait_ms.
  absl::StatusOr<v1::SecAggStepResponse> SecAggStep(
      const v1::SecAggStepRequest& request) override;
  absl::StatusOr<v1::SubmitUpdateResponse> SubmitMaskedInput(
      v1::UpdateMetadata metadata, const std::string& masked) override;

  // Thread-safe.
  void SetConnectBudget(absl::Duration budget) override;

  // For a stopping agent: cancels the call in progress and any heartbeat
  // in flight (they return CANCELLED, or UNAVAILABLE while waiting for the
  // connection), and from then on no call waits for the connection, a
  // heartbeat is not sent (CANCELLED) and every other call's deadline is
  // leave_timeout at most. So a long poll, a reconnection or a heartbeat
  // waiting for the channel does not hold the stop. Not undone.
  // Thread-safe.
  void BeginStop();

 private:
  struct Download;

  GrpcCoordinatorClient(GrpcCoordinatorClientOptions options,
                        std::shared_ptr<grpc::ChannelInterface> channel);

  // A call's connection: whether the channel was READY when it started,
  // and how long it waited for that.
  struct Attempt {
    bool connected = false;
    absl::Duration waited;
  };
  // How often a wait for the connection checks BeginStop().
  static constexpr absl::Duration kConnectSlice = absl::Milliseconds(100);
  // Deadline of a call made on a channel that did not connect.
  static constexpr absl::Duration kProbeTimeout = absl::Milliseconds(200);

  // Sets the deadline of a unary call (`bytes` < 0) or of a stream.
  void SetDeadline(grpc::ClientContext* context, int64_t bytes) const;
  // Waits (see the header comment) until the channel is READY (true), its
  // connection attempt failed, the wait is over or cancelled (false).
  bool AwaitConnection(absl::Duration* waited);
  // Waits for the connection and sets the call's deadline: that of
  // SetDeadline when connected, else kProbeTimeout.
  Attempt Prepare(grpc::ClientContext* context, int64_t bytes);
  // The call's status; when it did not connect, UNAVAILABLE naming the
  // target and gRPC's reason.
  absl::Status Result(const grpc::Status& status, const Attempt& attempt) const;
  // `data`: the chunk's data, in pieces (RawChunk).
  absl::Status Consume(const v1::ModelChunk& chunk,
                       const std::vector<absl::string_view>& data,
                       Download& download);
  // Streams `metadata`, then the chunks `next` produces (false: no more),
  // as serialized v1::UpdateChunk messages: each chunk's bytes go to gRPC
  // as they are, after the data field's tag and length (not copied into a
  // message and serialized again).
  bool WriteUpdate(grpc::ClientWriterInterface<grpc::ByteBuffer>& writer,
                   v1::UpdateMetadata metadata,
                   absl::FunctionRef<bool(std::string*)> next);
  // SubmitUpdate's call for a payload of `size` bytes from `next`.
  absl::StatusOr<v1::SubmitUpdateResponse> StreamUpdate(
      v1::UpdateMetadata metadata, int64_t size,
      absl::FunctionRef<bool(std::string*)> next);

  // Registers a call's context (one of the loop's calls, or a heartbeat)
  // as one BeginStop() cancels, bounding its deadline when it starts after
  // BeginStop().
  class ActiveCall {
   public:
    ActiveCall(GrpcCoordinatorClient* client, grpc::ClientContext* context);
    ~ActiveCall();

   private:
    GrpcCoordinatorClient* const client_;
    grpc::ClientContext* const context_;
  };

  GrpcCoordinatorClientOptions options_;
  std::shared_ptr<grpc::ChannelInterface> channel_;
  // Whether calls wait for the channel to connect (Create()'s channels).
  bool await_connection_ = false;
  std::unique_ptr<v1::Federation::StubInterface> stub_;
  // FetchModel and SubmitUpdate called raw: model chunks' data is read
  // where gRPC received it, update chunks' sent from where it was encoded.
  const grpc::internal::RpcMethod fetch_model_;
  const grpc::internal::RpcMethod submit_update_;
  absl::Mutex active_mu_;
  // Calls in progress: at most the loop's call and a heartbeat.
  std::vector<grpc::ClientContext*> active_ ABSL_GUARDED_BY(active_mu_);
  bool stopping_ ABSL_GUARDED_BY(active_mu_) = false;  // BeginStop() called.
  absl::Duration connect_budget_ ABSL_GUARDED_BY(active_mu_) =
      absl::InfiniteDuration();
  LinkThrottle throttle_;
  // Size of the last model stream seen, for the next fetch's deadline.
  int64_t last_model_bytes_ = 0;
};

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_GRPC_COORDINATOR_CLIENT_H_
