#include "edge_agent/grpc_coordinator_client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/checksum.h"
#include "common/file_util.h"
#include "common/net/credentials.h"
#include "common/net/grpc_deadline.h"
#include "common/net/grpc_status.h"
#include "common/net/raw_chunk.h"
#include "common/proto_split.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("model transfer: ", what));
}

bool IsHexSha256(const std::string& s) {
  return s.size() == 64 && IsLowerHex(s);
}

}  // namespace

// One model stream being received.
struct GrpcCoordinatorClient::Download {
  Download(int64_t version, const DecodeLimits& limits)
      : version(version), decoder(limits) {}
  int64_t version;       // Requested (-1: the newest).
  int64_t total = -1;    // Announced size (-1 until the first chunk).
  std::string sha256;    // Announced hash.
  int64_t received = 0;  // Bytes so far.
  Sha256 hasher;
  ModelDecoder decoder;
};

absl::StatusOr<std::unique_ptr<GrpcCoordinatorClient>>
GrpcCoordinatorClient::Create(GrpcCoordinatorClientOptions options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("coordinator address is empty");
  }
  if (options.chunk_bytes == 0) {
    return absl::InvalidArgumentError("chunk_bytes must be positive");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                   MakeChannelCredentials(options.tls));
  grpc::ChannelArguments args =
      MakeChannelArguments(options.tls, options.keepalive_time_ms);
  args.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.target, credentials, args);
  std::unique_ptr<GrpcCoordinatorClient> client =
      CreateForChannel(std::move(options), std::move(channel));
  client->await_connection_ = true;
  return client;
}

std::unique_ptr<GrpcCoordinatorClient> GrpcCoordinatorClient::CreateForChannel(
    GrpcCoordinatorClientOptions options,
    std::shared_ptr<grpc::ChannelInterface> channel) {
  return std::unique_ptr<GrpcCoordinatorClient>(
      new GrpcCoordinatorClient(std::move(options), std::move(channel)));
}

GrpcCoordinatorClient::GrpcCoordinatorClient(
    GrpcCoordinatorClientOptions options,
    std::shared_ptr<grpc::ChannelInterface> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::Federation::NewStub(channel_)),
      fetch_model_("/fedge.v1.Federation/FetchModel",
                   grpc::internal::RpcMethod::SERVER_STREAMING, channel_),
      submit_update_("/fedge.v1.Federation/SubmitUpdate",
                     grpc::internal::RpcMethod::CLIENT_STREAMING, channel_),
      throttle_(options_.link, options_.clock, options_.sleep) {}

void GrpcCoordinatorClient::SetDeadline(grpc::ClientContext* context,
                                        int64_t bytes) const {
  absl::Duration timeout = options_.call_timeout;
  if (bytes >= 0) {
    timeout = options_.stream_timeout + throttle_.TransferTime(bytes);
    if (options_.min_stream_bytes_per_second > 0) {
      timeout += absl::Seconds(static_cast<double>(bytes) /
                               options_.min_stream_bytes_per_second);
    }
  }
  context->set_deadline(MonotonicDeadline(timeout));
}

void GrpcCoordinatorClient::SetConnectBudget(absl::Duration budget) {
  absl::MutexLock lock(&active_mu_);
  connect_budget_ = std::max(budget, absl::ZeroDuration());
}

bool GrpcCoordinatorClient::AwaitConnection(absl::Duration* waited) {
  absl::Duration wait;
  {
    absl::MutexLock lock(&active_mu_);
    wait = stopping_ ? absl::ZeroDuration()
                     : std::min(options_.connect_timeout, connect_budget_);
  }
  const gpr_timespec deadline = MonotonicDeadline(wait);
  const gpr_timespec start = gpr_now(GPR_CLOCK_MONOTONIC);
  grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
  // A channel still failing from an earlier attempt reports
  // TRANSIENT_FAILURE until it connects: wait for READY then (gRPC
  // reconnects every few seconds meanwhile, and this wait polls the
  // connection so each attempt completes at once). Otherwise stop at the
  // first failure: its reason is what the caller needs.
  bool attempted = state != GRPC_CHANNEL_TRANSIENT_FAILURE;
  while (state != GRPC_CHANNEL_READY &&
         !(attempted && state == GRPC_CHANNEL_TRANSIENT_FAILURE) &&
         gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), deadline) < 0) {
    {
      absl::MutexLock lock(&active_mu_);
      if (stopping_) break;
    }
    // In slices, so that BeginStop() is seen within one.
    channel_->WaitForStateChange(
        state, gpr_time_min(deadline, MonotonicDeadline(kConnectSlice)));
    state = channel_->GetState(/*try_to_connect=*/true);
    attempted = attempted || state != GRPC_CHANNEL_TRANSIENT_FAILURE;
  }
  *waited = absl::Milliseconds(
      gpr_time_to_millis(gpr_time_sub(gpr_now(GPR_CLOCK_MONOTONIC), start)));
  return state == GRPC_CHANNEL_READY;
}

GrpcCoordinatorClient::Attempt GrpcCoordinatorClient::Prepare(
    grpc::ClientContext* context, int64_t bytes) {
  Attempt attempt;
  attempt.connected = !await_connection_ || AwaitConnection(&attempt.waited);
  // Never wait_for_ready: a call on a channel that is not connected fails
  // at once with gRPC's reason (connection refused, a TLS handshake error)
  // instead of waiting out its deadline and reporting only that. The wait
  // above drives the reconnection instead.
  context->set_wait_for_ready(false);
  if (attempt.connected) {
    SetDeadline(context, bytes);
  } else {
    // Fails at once while the channel is in TRANSIENT_FAILURE; gives a
    // connection attempt still in progress a moment.
    context->set_deadline(MonotonicDeadline(kProbeTimeout));
  }
  return attempt;
}

absl::Status GrpcCoordinatorClient::Result(const grpc::Status& status,
                                           const Attempt& attempt) const {
  absl::Status s = FromGrpcStatus(status);
  if (attempt.connected || !IsUnreachable(s.code())) return s;
  const std::string where =
      absl::StrCat("cannot reach the coordinator at ", options_.target);
  if (s.code() == absl::StatusCode::kDeadlineExceeded) {
    return absl::UnavailableError(
        absl::StrCat(where, ": not connected after ",
                     absl::FormatDuration(attempt.waited + kProbeTimeout),
                     " (still connecting)"));
  }
  return absl::UnavailableError(
      absl::StrCat(where, ": ", s.message(),
                   ConnectionFailureHint(options_.tls, s.message())));
}

GrpcCoordinatorClient::ActiveCall::ActiveCall(GrpcCoordinatorClient* client,
                                              grpc::ClientContext* context)
    : client_(client), context_(context) {
  absl::MutexLock lock(&client_->active_mu_);
  client_->active_.push_back(context);
  if (client_->stopping_) {
    // Under the lock BeginStop() holds: a call either is cancelled by it or
    // starts after it, with this deadline.
    context->set_deadline(std::min(
        context->deadline(),
        std::chrono::system_clock::now() +
            absl::ToChronoMilliseconds(client_->options_.leave_timeout)));
  }
}

GrpcCoordinatorClient::ActiveCall::~ActiveCall() {
  absl::MutexLock lock(&client_->active_mu_);
  std::vector<grpc::ClientContext*>& active = client_->active_;
  active.erase(std::find(active.begin(), active.end(), context_));
}

void GrpcCoordinatorClient::BeginStop() {
  absl::MutexLock lock(&active_mu_);
  stopping_ = true;
  for (grpc::ClientContext* context : active_) context->TryCancel();
}

absl::StatusOr<v1::JoinResponse> GrpcCoordinatorClient::Join(
    const v1::JoinRequest& request) {
  throttle_.BeforeCall();
  grpc::ClientContext context;
  const Attempt attempt = Prepare(&context, -1);
  ActiveCall active(this, &context);
  v1::JoinResponse response;
  grpc::Status s = stub_->Join(&context, request, &response);
  if (!s.ok()) return Result(s, attempt);
  return response;
}

absl::StatusOr<v1::PollResponse> GrpcCoordinatorClient::Poll(
    const v1::PollRequest& request) {
  throttle_.BeforeCall();
  grpc::ClientContext context;
  const Attempt attempt = Prepare(&context, -1);
  ActiveCall active(this, &context);
  v1::PollResponse response;
  grpc::Status s = stub_->Poll(&context, request, &response);
  if (!s.ok()) return Result(s, attempt);
  return response;
}

absl::Status GrpcCoordinatorClient::Heartbeat(
    const std::string& session_token) {
  // No simulated link here: this runs beside the working thread, and the
  // throttle is not thread-safe (a heartbeat is a few bytes).
  grpc::ClientContext context;
  context.set_deadline(MonotonicDeadline(options_.call_timeout));
  // Waits for the channel: a heartbeat runs while the agent is busy (no
  // other call drives a reconnection then) and its errors are not shown.
  context.set_wait_for_ready(true);
  {
    absl::MutexLock lock(&active_mu_);
    if (stopping_) return absl::CancelledError("the agent is stopping");
  }
  ActiveCall active(this, &context);
  v1::HeartbeatRequest request;
  request.set_session_token(session_token);
  v1::HeartbeatResponse response;
  return FromGrpcStatus(stub_->Heartbeat(&context, request, &response));
}

absl::Status GrpcCoordinatorClient::FetchArchive(
    const std::string& session_token, const std::string& sha256_hex,
    int64_t size_bytes, const std::string& path) {
  throttle_.BeforeCall();
  grpc::ClientContext context;
  const Attempt attempt = Prepare(&context, size_bytes);
  ActiveCall active(this, &context);
  v1::FetchArchiveRequest request;
  request.set_session_token(session_token);
  request.set_sha256(sha256_hex);
  auto reader = stub_->FetchArchive(&context, request);
  throttle_.StartTransfer();
  Sha256 hash;
  int64_t received = 0;
  absl::Status bad;
  v1::ArchiveChunk chunk;
  ChunkSource next = [&](std::string* out) {
    if (!bad.ok() || !reader->Read(&chunk)) return false;
    if (chunk.total_size_bytes() != size_bytes || chunk.offset() != received ||
        received + static_cast<int64_t>(chunk.data().size()) > size_bytes) {
      bad = Corrupt("the archive stream does not match its announced size");
      return false;
    }
    received += static_cast<int64_t>(chunk.data().size());
    hash.Update(chunk.data());
    throttle_.OnBytes(static_cast<int64_t>(chunk.data().size()));
    *out = std::move(*chunk.mutable_data());
    return true;
  };
  absl::Status written =
      WriteFileAtomically(path, [&](std::string* out) { return next(out); });
  absl::Status finished = Result(reader->Finish(), attempt);
  if (!finished.ok()) {
    std::remove(path.c_str());
    return finished;
  }
  if (!bad.ok() || !written.ok() || received != size_bytes ||
      ToHex(hash.Finish()) != sha256_hex) {
    std::remove(path.c_str());
    return !bad.ok() ? bad
           : !written.ok()
               ? written
               : Corrupt("the archive does not match its SHA-256 or size");
  }
  return absl::OkStatus();
}

absl::Status GrpcCoordinatorClient::SubmitEvaluation(
    const v1::SubmitEvaluationRequest& request) {
  throttle_.BeforeCall();
  grpc::ClientContext context;
  const Attempt attempt = Prepare(&context, -1);
  ActiveCall active(this, &context);
  v1::SubmitEvaluationResponse response;
  return Result(stub_->SubmitEvaluation(&context, request, &response), attempt);
}

absl::Status GrpcCoordinatorClient::ReportFailure(
    const v1::ReportFailureRequest& request) {
  throttle_.BeforeCall();
  grpc::ClientContext context;
  const Attempt attempt = Prepare(&context, -1);
  ActiveCall active(this, &context);
  v1::ReportFailureResponse response;
  return Result(stub_->ReportFailure(&context, request, &response), attempt);
}

absl::Status GrpcCoordinatorClient::Leave(const std::string& session_token) {
  throttle_.BeforeCall();
  grpc::ClientContext context;
  // Best effort: never waits for the connection, nor longer than this.
  context.set_deadline(MonotonicDeadline(options_.leave_timeout));
  v1::LeaveRequest request;
  request.set_session_token(session_token);
  v1::LeaveResponse response;
  return FromGrpcStatus(stub_->Leave(&context, request, &response));
}

absl::Status GrpcCoordinatorClient::Consume(
    const v1::ModelChunk& chunk, const std::vector<absl::string_view>& data,
    Download& d) {
  if (d.total < 0) {  // The first chunk announces the stream.
    if (d.version >= 0 && chunk.version() != d.version) {
      return Corrupt(absl::StrCat("asked for version ", d.version, ", got ",
                                  chunk.version()));
    }
    if (chunk.total_size_bytes() <= 0 ||
        chunk.total_size_bytes() > options_.limits.max_total_bytes) {
      return Corrupt(absl::StrCat("bad total size ", chunk.total_size_bytes()));
    }
    if (!IsHexSha256(chunk.sha256())) return Corrupt("bad sha256 field");
    d.total = chunk.total_size_bytes();
    d.sha256 = chunk.sha256();
    last_model_bytes_ = d.total;
    throttle_.StartTransfer();
  } else if ((chunk.total_size_bytes() != 0 &&
              chunk.total_size_bytes() != d.total) ||
             (!chunk.sha256().empty() && chunk.sha256() != d.sha256)) {
    return Corrupt("size or hash changed in mid-stream");
  }
  int64_t size = 0;
  for (absl::string_view piece : data)
    size += static_cast<int64_t>(piece.size());
  if (chunk.offset() != d.received || d.received + size > d.total) {
    return Corrupt(absl::StrCat("chunk at offset ", chunk.offset(), " (", size,
                                " bytes) after ", d.received, " of ", d.total,
                                " bytes"));
  }
  for (absl::string_view piece : data) {
    d.hasher.Update(piece);
    if (absl::Status s = d.decoder.Feed(piece); !s.ok()) {
      return Corrupt(s.message());
    }
  }
  d.received += size;
  throttle_.OnBytes(size);
  return absl::OkStatus();
}

absl::StatusOr<ModelState> GrpcCoordinatorClient::FetchModel(
    const std::string& session_token, int64_t version,
    const std::string& expected_sha256_hex) {
  throttle_.BeforeCall();
  grpc::ClientContext context;
  const Attempt attempt = Prepare(&context, last_model_bytes_);
  ActiveCall active(this, &context);
  v1::FetchModelRequest request;
  request.set_session_token(session_token);
  request.set_version(version);
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
          channel_.get(), fetch_model_, &context, request));
  Download d(version, options_.limits);
  grpc::ByteBuffer raw;
  RawChunk<v1::ModelChunk> reading;
  v1::ModelChunk chunk;
  absl::Status consumed;
  while (consumed.ok() && reader->Read(&raw)) {
    consumed = reading.Parse(raw, &chunk);
    if (!consumed.ok()) consumed = Corrupt(consumed.message());
    if (consumed.ok()) consumed = Consume(chunk, reading.data(), d);
  }
  if (!consumed.ok()) context.TryCancel();
  const grpc::Status finished = reader->Finish();
  RETURN_IF_ERROR(consumed);
  RETURN_IF_ERROR(Result(finished, attempt));
  if (d.total < 0) return Corrupt("the coordinator sent no chunks");
  if (d.received != d.total) {
    return Corrupt(
        absl::StrCat("truncated: ", d.received, " of ", d.total, " bytes"));
  }
  const std::string actual = ToHex(d.hasher.Finish());
  if (actual != d.sha256 ||
      (!expected_sha256_hex.empty() && actual != expected_sha256_hex)) {
    return Corrupt(absl::StrCat("SHA-256 ", actual, " does not match ",
                                d.sha256, " / expected ", expected_sha256_hex));
  }
  absl::StatusOr<ModelState> model = d.decoder.Finish();
  if (!model.ok()) return Corrupt(model.status().message());
  return model;
}

bool GrpcCoordinatorClient::WriteUpdate(
    grpc::ClientWriterInterface<grpc::ByteBuffer>& writer,
    v1::UpdateMetadata metadata, absl::FunctionRef<bool(std::string*)> next) {
  v1::UpdateChunk first;
  *first.mutable_metadata() = std::move(metadata);
  grpc::ByteBuffer message;
  bool own_buffer;
  if (!grpc::SerializationTraits<v1::UpdateChunk>::Serialize(first, &message,
                                                             &own_buffer)
           .ok() ||
      !writer.Write(message)) {
    return false;
  }
  throttle_.StartTransfer();
  std::string data;
  while (next(&data)) {
    const int64_t size = static_cast<int64_t>(data.size());
    std::string head;
    AppendLengthDelimitedHeader(&head, v1::UpdateChunk::kDataFieldNumber,
                                data.size());
    // The slice takes the chunk's string over; gRPC frees it once sent.
    auto* owned = new std::string(std::move(data));
    data = std::string();
    grpc::Slice slices[2] = {
        grpc::Slice(head),
        grpc::Slice(
            owned->data(), owned->size(),
            [](void* s) { delete static_cast<std::string*>(s); }, owned)};
    message = grpc::ByteBuffer(slices, 2);
    if (!writer.Write(message)) return false;
    throttle_.OnBytes(size);
  }
  return writer.WritesDone();
}

absl::StatusOr<v1::SubmitUpdateResponse> GrpcCoordinatorClient::StreamUpdate(
    v1::UpdateMetadata metadata, int64_t size,
    absl::FunctionRef<bool(std::string*)> next) {
  metadata.set_total_size_bytes(size);
  throttle_.BeforeCall();
  grpc::ClientContext context;
  const Attempt attempt = Prepare(&context, size);
  ActiveCall active(this, &context);
  grpc::ByteBuffer wire_response;
  std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer(
      grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(
          channel_.get(), submit_update_, &context, &wire_response));
  // A failed write shows in Finish()'s status; an OK status with a partial
  // write means the coordinator answered early (e.g. a known upload id).
  WriteUpdate(*writer, std::move(metadata), next);
  RETURN_IF_ERROR(Result(writer->Finish(), attempt));
  v1::SubmitUpdateResponse response;
  if (!grpc::SerializationTraits<v1::SubmitUpdateResponse>::Deserialize(
           &wire_response, &response)
           .ok()) {
    return absl::InternalError(
        "the coordinator's SubmitUpdateResponse does not parse");
  }
  return response;
}

absl::StatusOr<v1::SubmitUpdateResponse> GrpcCoordinatorClient::SubmitUpdate(
    v1::UpdateMetadata metadata, const ModelState& delta,
    const EncodedModel* encoded) {
  metadata.set_xxh3_128(ToHex(encoded != nullptr ? ModelChecksum(*encoded)
                                                  : ModelChecksum(delta)));
  std::unique_ptr<ModelEncoder> encoder =
      encoded != nullptr
          ? std::make_unique<ModelEncoder>(*encoded, options_.chunk_bytes)
          : std::make_unique<ModelEncoder>(delta, options_.chunk_bytes);
  return StreamUpdate(
      std::move(metadata),
      encoded != nullptr ? EncodedSize(*encoded) : EncodedSize(delta),
      [&](std::string* data) { return encoder->Next(data); });
}

absl::StatusOr<v1::SubmitUpdateResponse>
GrpcCoordinatorClient::SubmitMaskedInput(v1::UpdateMetadata metadata,
                                         const std::string& masked) {
  metadata.set_xxh3_128(ToHex(Xxh3_128Of(masked)));
  metadata.set_masked(true);
  size_t offset = 0;
  return StreamUpdate(std::move(metadata), static_cast<int64_t>(masked.size()),
                      [&](std::string* data) {
                        if (offset >= masked.size()) return false;
                        const size_t n = std::min<size_t>(
                            masked.size() - offset,
                            static_cast<size_t>(options_.chunk_bytes));
                        data->assign(masked, offset, n);
                        offset += n;
                        return true;
                      });
}

absl::StatusOr<v1::SecAggStepResponse> GrpcCoordinatorClient::SecAggStep(
    const v1::SecAggStepRequest& request) {
  throttle_.BeforeCall();
  grpc::ClientContext context;
  const Attempt attempt =
      Prepare(&context, static_cast<int64_t>(request.message().size()));
  ActiveCall active(this, &context);
  v1::SecAggStepResponse response;
  grpc::Status s = stub_->SecAggStep(&context, request, &response);
  if (!s.ok()) return Result(s, attempt);
  return response;
}

}  // namespace fedge
