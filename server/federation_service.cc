#include "server/federation_service.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/net/credentials.h"
#include "common/net/grpc_status.h"
#include "common/net/raw_chunk.h"
#include "common/proto_split.h"

namespace fedge {
namespace {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context,
                                 const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// A unary call the coordinator may park (a long poll): `start` gets the
// callback that finishes it, which may run on another thread.
template <typename Response, typename Start>
grpc::ServerUnaryReactor* Parked(grpc::CallbackServerContext* context,
                                 Response* response, Start start) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  start([reactor, response](absl::StatusOr<Response> result) {
    if (result.ok()) *response = *std::move(result);
    reactor->Finish(ToGrpcStatus(result.status()));
  });
  return reactor;
}

// The caller's address without its port ("ipv4:10.0.0.7"), the key of
// the join rate limit.
std::string SourceAddress(const grpc::CallbackServerContext& context) {
  const std::string peer = context.peer();
  const size_t colon = peer.rfind(':');
  const size_t scheme = peer.find(':');
  if (colon == std::string::npos || colon == scheme) return peer;
  return peer.substr(0, colon);
}

// Parses a raw method's request.
template <typename Request>
absl::Status ParseRequest(const grpc::ByteBuffer& raw, Request* request) {
  grpc::ByteBuffer copy = raw;  // Deserialize consumes it (slices: shared).
  grpc::Status s =
      grpc::SerializationTraits<Request>::Deserialize(&copy, request);
  if (s.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("cannot parse the request: ", s.error_message()));
}

// Streams one published model as serialized v1::ModelChunk messages; the
// first carries its size and hash (and signature). Tensor bytes are not
// copied: each message's `data` is slices of the published model's own
// memory, which hold a reference to it until gRPC has sent them (the raw
// methods of FetchModel and ExportModel take ByteBuffers). Deletes itself
// when the call is done. (For an export, the model alone and its spec:
// `model_only`.)
class ModelWriter final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  ModelWriter(Coordinator* coordinator,
              std::shared_ptr<const PublishedModel> model, int64_t offset,
              int chunk_bytes, bool model_only = false)
      : coordinator_(coordinator),
        model_(std::move(model)),
        encoder_(MakeEncoder(*model_, model_only, chunk_bytes)) {
    encoder_.Seek(offset);
    first_.set_total_size_bytes(encoder_.total_bytes());
    first_.set_sha256(model_only ? ToHex(model_->model_sha256)
                                 : model_->sha256_hex);
    if (model_only) {
      *first_.mutable_model_spec() = coordinator_->model_spec();
    } else {  // The signature covers the download's hash.
      first_.set_signature(model_->signature.signature);
      first_.set_signing_key_id(model_->signature.key_id);
    }
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok)
      return Finish(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "model stream broken"));
    WriteNext();
  }
  void OnDone() override { delete this; }

 private:
  using ModelRef = std::shared_ptr<const PublishedModel>;
  // Smaller tensor pieces are copied: cheaper than a slice of their own.
  static constexpr size_t kCopyBelowBytes = 4096;
  static void Release(void* model) { delete static_cast<ModelRef*>(model); }

  void WriteNext() {
    v1::ModelChunk fields = std::move(first_);  // The first chunk's, then none.
    first_.Clear();
    fields.set_version(model_->version);
    fields.set_offset(encoder_.offset());
    std::vector<grpc::Slice> slices(1);  // [0]: the fields, data's header.
    uint64_t data_bytes = 0;
    const bool more = encoder_.NextGathered(
        kCopyBelowBytes, [&](absl::string_view bytes, bool stable) {
          data_bytes += bytes.size();
          if (!stable) {  // Headers and small tensors, gathered: copied.
            slices.emplace_back(bytes.data(), bytes.size());
            return;
          }
          // gRPC only reads a slice it sends.
          slices.emplace_back(const_cast<char*>(bytes.data()), bytes.size(),
                              &Release, new ModelRef(model_));
        });
    if (!more) return Finish(grpc::Status::OK);
    std::string head = fields.SerializeAsString();
    AppendLengthDelimitedHeader(&head, v1::ModelChunk::kDataFieldNumber,
                                data_bytes);
    slices[0] = grpc::Slice(head);
    message_ = grpc::ByteBuffer(slices.data(), slices.size());
    coordinator_->AddBytesSent(static_cast<int64_t>(data_bytes));
    StartWrite(&message_);
  }

  // What agents download (in its wire encoding), or the model alone.
  static ModelEncoder MakeEncoder(const PublishedModel& model, bool model_only,
                                  int chunk_bytes) {
    if (model_only) return ModelEncoder(model.model, chunk_bytes);
    if (model.wire.has_value()) return ModelEncoder(*model.wire, chunk_bytes);
    return ModelEncoder(model.download(), chunk_bytes);
  }

  Coordinator* coordinator_;
  ModelRef model_;
  ModelEncoder encoder_;
  v1::ModelChunk first_;      // The first chunk's own fields.
  grpc::ByteBuffer message_;  // Being written.
};

// Streams a file (the TorchScript archive) in chunks read as they go.
// Deletes itself when the call is done.
class ArchiveWriter final : public grpc::ServerWriteReactor<v1::ArchiveChunk> {
 public:
  ArchiveWriter(const std::string& path, int64_t size, int64_t offset,
                int chunk_bytes)
      : fd_(open(path.c_str(), O_RDONLY | O_CLOEXEC)),
        size_(size),
        offset_(offset),
        chunk_bytes_(chunk_bytes) {
    if (fd_.get() < 0 || lseek(fd_.get(), offset, SEEK_SET) != offset) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "the archive cannot be read"));
      return;
    }
    chunk_.set_total_size_bytes(size_);
    WriteNext();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      return Finish(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "archive stream broken"));
    }
    WriteNext();
  }
  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (offset_ >= size_) return Finish(grpc::Status::OK);
    const int64_t want = std::min<int64_t>(chunk_bytes_, size_ - offset_);
    std::string* data = chunk_.mutable_data();
    data->resize(static_cast<size_t>(want));
    const ssize_t n = read(fd_.get(), data->data(), data->size());
    if (n <= 0) {
      return Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "the archive changed on disk"));
    }
    data->resize(static_cast<size_t>(n));
    chunk_.set_offset(offset_);
    offset_ += n;
    StartWrite(&chunk_);
  }

  ScopedFd fd_;
  const int64_t size_;
  int64_t offset_;
  const int chunk_bytes_;
  v1::ArchiveChunk chunk_;
};

// An archive stream that only reports an error.
class ArchiveRefusal : public grpc::ServerWriteReactor<v1::ArchiveChunk> {
 public:
  explicit ArchiveRefusal(const absl::Status& s) { Finish(ToGrpcStatus(s)); }
  void OnDone() override { delete this; }
};

// A model stream that only reports an error.
class Refusal : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit Refusal(const absl::Status& s) { Finish(ToGrpcStatus(s)); }
  void OnDone() override { delete this; }
};

// Receives one update: metadata first, then bytes into an upload slot.
// The coordinator may end it from its Tick thread (the upload limits:
// idle past upload_idle_timeout_ms, round closed), so every step that uses
// the upload or finishes the call does so under shared_->mu, and only the
// one that sets `finished` calls Finish.
//
// A raw method: chunks arrive as ByteBuffers, their data read where gRPC
// received it (RawChunk), not copied into the message first.
class UpdateReader final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  // `wire_response`: where the v1::SubmitUpdateResponse goes, serialized.
  UpdateReader(Coordinator* coordinator, grpc::ByteBuffer* wire_response,
               std::string peer_identity)
      : coordinator_(coordinator),
        wire_response_(wire_response),
        peer_identity_(std::move(peer_identity)),
        shared_(std::make_shared<Shared>()),
        stream_id_(NextStreamId()) {
    shared_->reader = this;
    coordinator_->WatchUploadStream(stream_id_, MakeCancel(shared_));
    StartRead(&raw_);
  }

  void OnReadDone(bool ok) override {
    std::unique_ptr<Upload> freed;  // Destroyed after the lock: frees a slot.
    std::optional<grpc::Status> finish;
    bool begin = false;
    {
      absl::MutexLock lock(&shared_->mu);
      if (shared_->finished) return;  // Ended meanwhile (limits, cancel).
      absl::Status parsed =
          ok ? reading_.Parse(raw_, &chunk_) : absl::OkStatus();
      if (!ok) {
        finish = FinishUploadLocked();
      } else if (!parsed.ok()) {
        freed = std::move(upload_);
        finish = FailLocked(parsed);
      } else if (!begun_) {
        begun_ = true;
        begin = true;
        shared_->waiting_for_slot = true;
      } else if (chunk_.part_case() != v1::UpdateChunk::kData) {
        freed = std::move(upload_);
        finish = FailLocked(absl::InvalidArgumentError(
            "only the first chunk of an upload may hold metadata"));
      } else {
        absl::Status fed;
        for (absl::string_view piece : reading_.data()) {
          if (fed.ok()) fed = coordinator_->FeedUpload(*upload_, piece);
        }
        if (!fed.ok()) {
          freed = std::move(upload_);
          finish = FailLocked(fed);
        } else {
          StartRead(&raw_);
        }
      }
    }
    if (begin) return Begin();
    freed.reset();
    if (finish.has_value()) FinishStream(*finish);
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&shared_->mu);
      if (!shared_->waiting_for_slot || shared_->finished) return;
      shared_->finished = true;
    }
    FinishStream(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->reader = nullptr;
    }
    coordinator_->EndUploadStream(stream_id_);
    delete this;
  }

 private:
  struct Shared {
    absl::Mutex mu;
    UpdateReader* reader = nullptr;  // Null once the call is done.
    bool waiting_for_slot = false;
    bool finished = false;  // Finish was (or is being) called.
  };

  // Finishes the call. The stream stops counting for its agent first, so
  // that the agent's next upload is not refused because this one's OnDone
  // has not run yet when the agent reads the answer.
  void FinishStream(grpc::Status status) {
    coordinator_->EndUploadStream(stream_id_);
    if (status.ok()) {
      bool own_buffer;
      status = grpc::SerializationTraits<v1::SubmitUpdateResponse>::Serialize(
          response_, wire_response_, &own_buffer);
    }
    Finish(status);
  }

  // Ends the stream for the upload limits (Tick thread); false when it had
  // finished already.
  static std::function<bool(absl::Status)> MakeCancel(
      std::shared_ptr<Shared> shared) {
    return [shared](absl::Status status) {
      std::unique_ptr<Upload> freed;
      UpdateReader* reader;
      {
        absl::MutexLock lock(&shared->mu);
        if (shared->reader == nullptr || shared->finished) return false;
        shared->finished = true;
        reader = shared->reader;  // Alive until its Finish below.
        freed = std::move(reader->upload_);
      }
      freed.reset();  // The slot is free before the reply.
      reader->FinishStream(ToGrpcStatus(status));
      return true;
    };
  }

  static uint64_t NextStreamId() {
    static std::atomic<uint64_t> next{1};
    return next.fetch_add(1);
  }

  void Begin() {
    if (chunk_.part_case() != v1::UpdateChunk::kMetadata) {
      return FailBeforeUpload(absl::InvalidArgumentError(
          "the first chunk of an upload must hold its metadata"));
    }
    if (absl::Status caller = coordinator_->CheckCaller(
            chunk_.metadata().session_token(), peer_identity_, "SubmitUpdate");
        !caller.ok()) {
      return FailBeforeUpload(caller);
    }
    std::shared_ptr<Shared> shared = shared_;
    Coordinator::UploadStream stream;
    stream.id = stream_id_;
    stream.cancel = MakeCancel(shared_);
    coordinator_->BeginUpload(
        chunk_.metadata(),
        [shared, response = &response_](
            absl::StatusOr<std::unique_ptr<Upload>> upload) {
          std::unique_ptr<Upload> unused;  // Destroyed after the lock.
          UpdateReader* reader;
          grpc::Status finish;
          {
            absl::MutexLock lock(&shared->mu);
            shared->waiting_for_slot = false;
            if (shared->reader == nullptr || shared->finished) {
              if (upload.ok()) unused = *std::move(upload);
              return;
            }
            reader = shared->reader;  // Alive: Finish was not called yet.
            if (upload.ok()) {
              reader->upload_ = *std::move(upload);
              reader->StartRead(&reader->raw_);
              return;
            }
            shared->finished = true;
            if (absl::IsAlreadyExists(upload.status())) {
              response->set_duplicate(true);  // A retry of a counted upload.
            } else {
              finish = ToGrpcStatus(upload.status());
            }
          }
          reader->FinishStream(finish);
        },
        std::move(stream));
  }

  // Ends the call before any upload slot was asked for.
  void FailBeforeUpload(const absl::Status& status) {
    {
      absl::MutexLock lock(&shared_->mu);
      if (shared_->finished) return;
      shared_->finished = true;
    }
    FinishStream(ToGrpcStatus(status));
  }

  // The client closed its side: the upload is complete (or truncated).
  grpc::Status FinishUploadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared_->mu) {
    shared_->finished = true;
    if (upload_ == nullptr) {
      return ToGrpcStatus(
          absl::InvalidArgumentError("upload without metadata"));
    }
    auto result = coordinator_->FinishUpload(std::move(upload_));
    if (!result.ok()) return ToGrpcStatus(result.status());
    response_ = *result;
    return grpc::Status::OK;
  }

  grpc::Status FailLocked(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared_->mu) {
    shared_->finished = true;
    return ToGrpcStatus(status);
  }

  Coordinator* coordinator_;
  grpc::ByteBuffer* const wire_response_;
  // Written before Finish (under shared_->mu, or by the Begin callback
  // while the reader is alive).
  v1::SubmitUpdateResponse response_;
  const std::string peer_identity_;
  std::shared_ptr<Shared> shared_;
  const uint64_t stream_id_;
  grpc::ByteBuffer raw_;               // The chunk being read.
  RawChunk<v1::UpdateChunk> reading_;  // Its data, where gRPC put it.
  v1::UpdateChunk chunk_;              // Its other fields.
  bool begun_ = false;                 // The metadata was read.
  std::unique_ptr<Upload> upload_ ABSL_GUARDED_BY(shared_->mu);
};

}  // namespace

grpc::ServerUnaryReactor* FederationService::Join(
    grpc::CallbackServerContext* context, const v1::JoinRequest* request,
    v1::JoinResponse* response) {
  const std::string peer = PeerIdentity(*context);
  if (IsOperatorIdentity(peer)) {
    return Finish(context, absl::PermissionDeniedError(
                               "an operator certificate cannot join as an "
                               "agent; use an agent certificate"));
  }
  auto joined = coordinator_->Join(*request, peer, SourceAddress(*context));
  if (joined.ok()) *response = *std::move(joined);
  return Finish(context, joined.status());
}

grpc::ServerUnaryReactor* FederationService::Poll(
    grpc::CallbackServerContext* context, const v1::PollRequest* request,
    v1::PollResponse* response) {
  if (absl::Status s = Caller(*context, request->session_token(), "Poll");
      !s.ok()) {
    return Finish(context, s);
  }
  return Parked(context, response, [&](Coordinator::PollCallback done) {
    coordinator_->Poll(*request, std::move(done));
  });
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* FederationService::FetchModel(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw) {
  v1::FetchModelRequest request;
  if (absl::Status s = ParseRequest(*raw, &request); !s.ok()) {
    return new Refusal(s);
  }
  if (absl::Status s = Caller(*context, request.session_token(), "FetchModel");
      !s.ok()) {
    return new Refusal(s);
  }
  auto model = coordinator_->GetModel(request);
  if (!model.ok()) return new Refusal(model.status());
  return new ModelWriter(coordinator_, *std::move(model), request.offset(),
                         chunk_bytes_);
}

grpc::ServerReadReactor<grpc::ByteBuffer>* FederationService::SubmitUpdate(
    grpc::CallbackServerContext* context, grpc::ByteBuffer* response) {
  return new UpdateReader(coordinator_, response, PeerIdentity(*context));
}

grpc::ServerUnaryReactor* FederationService::Leave(
    grpc::CallbackServerContext* context, const v1::LeaveRequest* request,
    v1::LeaveResponse* response) {
  if (absl::Status s = Caller(*context, request->session_token(), "Leave");
      !s.ok()) {
    return Finish(context, s);
  }
  return Finish(context, coordinator_->Leave(*request));
}

grpc::ServerUnaryReactor* FederationService::SubmitEvaluation(
    grpc::CallbackServerContext* context,
    const v1::SubmitEvaluationRequest* request,
    v1::SubmitEvaluationResponse* response) {
  if (absl::Status s =
          Caller(*context, request->session_token(), "SubmitEvaluation");
      !s.ok()) {
    return Finish(context, s);
  }
  return Finish(context, coordinator_->SubmitEvaluation(*request));
}

grpc::ServerWriteReactor<v1::ArchiveChunk>* FederationService::FetchArchive(
    grpc::CallbackServerContext* context,
    const v1::FetchArchiveRequest* request) {
  if (absl::Status s =
          Caller(*context, request->session_token(), "FetchArchive");
      !s.ok()) {
    return new ArchiveRefusal(s);
  }
  auto archive = coordinator_->GetArchive(*request);
  if (!archive.ok()) return new ArchiveRefusal(archive.status());
  return new ArchiveWriter(archive->first, archive->second, request->offset(),
                           chunk_bytes_);
}

grpc::ServerUnaryReactor* FederationService::Heartbeat(
    grpc::CallbackServerContext* context, const v1::HeartbeatRequest* request,
    v1::HeartbeatResponse* response) {
  if (absl::Status s = Caller(*context, request->session_token(), "Heartbeat");
      !s.ok()) {
    return Finish(context, s);
  }
  return Finish(context, coordinator_->Heartbeat(*request));
}

grpc::ServerUnaryReactor* FederationService::ReportFailure(
    grpc::CallbackServerContext* context,
    const v1::ReportFailureRequest* request,
    v1::ReportFailureResponse* response) {
  if (absl::Status s =
          Caller(*context, request->session_token(), "ReportFailure");
      !s.ok()) {
    return Finish(context, s);
  }
  return Finish(context, coordinator_->ReportFailure(*request));
}

grpc::ServerUnaryReactor* FederationService::SecAggStep(
    grpc::CallbackServerContext* context, const v1::SecAggStepRequest* request,
    v1::SecAggStepResponse* response) {
  if (absl::Status s = Caller(*context, request->session_token(), "SecAggStep");
      !s.ok()) {
    return Finish(context, s);
  }
  return Parked(context, response, [&](Coordinator::SecAggCallback done) {
    coordinator_->SecAggStep(*request, std::move(done));
  });
}

absl::Status FederationService::Caller(
    const grpc::CallbackServerContext& context, const std::string& token,
    absl::string_view call) const {
  return coordinator_->CheckCaller(token, PeerIdentity(context), call);
}

absl::StatusOr<std::string> OperatorService::Operator(
    grpc::CallbackServerContext* context) const {
  const std::string cn = PeerIdentity(*context);
  absl::Status refused;
  if (require_operator_cert_) {
    if (IsOperatorIdentity(cn))
      return absl::StrCat(cn, " (", context->peer(), ")");
    refused = absl::PermissionDeniedError(absl::StrCat(
        "the Operator service needs an operator certificate (common name "
        "operator or operator-*, from deploy/make-certs.sh --operators N); "
        "got ",
        cn.empty() ? "none" : "'" + Printable(cn, 64) + "'"));
  } else {
    const auto& md = context->client_metadata();
    auto it = md.find("authorization");
    constexpr absl::string_view kBearer = "Bearer ";
    if (it != md.end()) {
      const absl::string_view value(it->second.data(), it->second.size());
      if (absl::StartsWith(value, kBearer) &&
          DigestsEqual(Sha256Of(value.substr(kBearer.size())),
                       operator_token_sha256_)) {
        return absl::StrCat("operator token (", context->peer(), ")");
      }
    }
    refused = absl::UnauthenticatedError(
        it == md.end()
            ? "the Operator service needs the operator token: fedge "
              "--operator_token_path <coordinator state_dir>/operator_token"
            : "the operator token is not this coordinator's (see its "
              "operator_token_path)");
  }
  FEDGE_LOG(WARNING) << "refused an Operator call from " << context->peer()
                     << ": " << refused.message();
  coordinator_->AuditEvent("operator_refused",
                           {{"peer", context->peer()},
                            {"certificate", cn},
                            {"reason", std::string(refused.message())}});
  return refused;
}

grpc::ServerUnaryReactor* OperatorService::Act(
    grpc::CallbackServerContext* context, v1::OperatorActionResponse* response,
    const std::function<absl::Status(const std::string& who)>& action,
    const std::string& done) {
  absl::StatusOr<std::string> who = Operator(context);
  if (!who.ok()) return Finish(context, who.status());
  absl::Status s = action(*who);
  if (s.ok()) response->set_message(done);
  return Finish(context, s);
}

grpc::ServerUnaryReactor* OperatorService::GetStatus(
    grpc::CallbackServerContext* context, const v1::GetStatusRequest* request,
    v1::GetStatusResponse* response) {
  if (auto who = Operator(context); !who.ok()) {
    return Finish(context, who.status());
  }
  *response = coordinator_->GetStatus();
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OperatorService::ListAgents(
    grpc::CallbackServerContext* context, const v1::ListAgentsRequest* request,
    v1::ListAgentsResponse* response) {
  if (auto who = Operator(context); !who.ok()) {
    return Finish(context, who.status());
  }
  *response = coordinator_->ListAgents();
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OperatorService::ListRounds(
    grpc::CallbackServerContext* context, const v1::ListRoundsRequest* request,
    v1::ListRoundsResponse* response) {
  if (auto who = Operator(context); !who.ok()) {
    return Finish(context, who.status());
  }
  *response = coordinator_->ListRounds();
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OperatorService::Pause(
    grpc::CallbackServerContext* context, const v1::PauseRequest* request,
    v1::OperatorActionResponse* response) {
  return Act(
      context, response,
      [this](const std::string& who) { return coordinator_->Pause(who); },
      "paused: no new round starts; the round in progress finishes");
}

grpc::ServerUnaryReactor* OperatorService::Resume(
    grpc::CallbackServerContext* context, const v1::ResumeRequest* request,
    v1::OperatorActionResponse* response) {
  return Act(
      context, response,
      [this](const std::string& who) { return coordinator_->Resume(who); },
      "resumed");
}

grpc::ServerUnaryReactor* OperatorService::StopAfterRound(
    grpc::CallbackServerContext* context,
    const v1::StopAfterRoundRequest* request,
    v1::OperatorActionResponse* response) {
  return Act(
      context, response,
      [this](const std::string& who) {
        return coordinator_->StopAfterRound(who);
      },
      "the federation ends after the round in progress");
}

grpc::ServerUnaryReactor* OperatorService::SetRounds(
    grpc::CallbackServerContext* context, const v1::SetRoundsRequest* request,
    v1::OperatorActionResponse* response) {
  const int rounds = request->rounds();
  return Act(
      context, response,
      [this, rounds](const std::string& who) {
        return coordinator_->SetRounds(rounds, who);
      },
      absl::StrCat("rounds set to ", rounds));
}

grpc::ServerUnaryReactor* OperatorService::EvictAgent(
    grpc::CallbackServerContext* context, const v1::EvictAgentRequest* request,
    v1::OperatorActionResponse* response) {
  const std::string id = request->agent_id();
  return Act(
      context, response,
      [this, id](const std::string& who) {
        return coordinator_->EvictAgent(id, who);
      },
      absl::StrCat("agent ", id,
                   " evicted; its joins are refused until "
                   "allowed"));
}

grpc::ServerUnaryReactor* OperatorService::AllowAgent(
    grpc::CallbackServerContext* context, const v1::AllowAgentRequest* request,
    v1::OperatorActionResponse* response) {
  const std::string id = request->agent_id();
  return Act(
      context, response,
      [this, id](const std::string& who) {
        return coordinator_->AllowAgent(id, who);
      },
      absl::StrCat("agent ", id, " may join again"));
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* OperatorService::ExportModel(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* /*raw*/) {
  absl::StatusOr<std::string> who = Operator(context);
  if (!who.ok()) return new Refusal(who.status());
  std::shared_ptr<const PublishedModel> model = coordinator_->latest_model();
  FEDGE_LOG(INFO) << "operator action export by " << *who << ": model version "
                  << model->version;
  coordinator_->AuditEvent(
      "operator", {{"action", "export"},
                   {"by", *who},
                   {"detail", absl::StrCat("model version ", model->version)}});
  return new ModelWriter(coordinator_, std::move(model), 0, chunk_bytes_,
                         /*model_only=*/true);
}

grpc::ServerUnaryReactor* OperatorService::CreateJoinToken(
    grpc::CallbackServerContext* context,
    const v1::CreateJoinTokenRequest* request,
    v1::CreateJoinTokenResponse* response) {
  absl::StatusOr<std::string> who = Operator(context);
  if (!who.ok()) return Finish(context, who.status());
  auto created = coordinator_->CreateJoinToken(*request, *who);
  if (created.ok()) *response = *std::move(created);
  return Finish(context, created.status());
}

grpc::ServerUnaryReactor* OperatorService::ListJoinTokens(
    grpc::CallbackServerContext* context,
    const v1::ListJoinTokensRequest* request,
    v1::ListJoinTokensResponse* response) {
  absl::StatusOr<std::string> who = Operator(context);
  if (!who.ok()) return Finish(context, who.status());
  *response = coordinator_->ListJoinTokens();
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OperatorService::RevokeJoinToken(
    grpc::CallbackServerContext* context,
    const v1::RevokeJoinTokenRequest* request,
    v1::OperatorActionResponse* response) {
  absl::StatusOr<std::string> who = Operator(context);
  if (!who.ok()) return Finish(context, who.status());
  auto done = coordinator_->RevokeJoinToken(request->token_id(), *who);
  if (done.ok()) response->set_message(*done);
  return Finish(context, done.status());
}

}  // namespace fedge
