// fedge: operator tooling.
//
//   fedge status [--coordinator HOST:PORT] [--tls.ca_path CA | --insecure]
//       The coordinator's state (Operator.GetStatus); exit 0 when it answers
//       (usable as a container health check), 1 otherwise.
//   fedge agents | rounds [...]      Operator.ListAgents / ListRounds.
//   fedge inspect MODEL.fedge        Tensors, sizes and SHA-256 of a model
//   file.
#include <grpcpp/grpcpp.h>

#include <cstdio>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/config_loader.h"
#include "common/file_util.h"
#include "common/model_codec.h"
#include "common/net/credentials.h"
#include "common/net/grpc_deadline.h"
#include "common/net/grpc_status.h"
#include "fedge/v1/config.pb.h"
#include "fedge/v1/federation.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "server/checkpoint_store.h"

namespace {

constexpr char kUsage[] =
    "usage: fedge status|agents|rounds [--coordinator HOST:PORT]\n"
    "                  [--tls.ca_path CA.pem | --insecure] [--tls.server_name "
    "N]\n"
    "       fedge inspect MODEL.fedge|CHECKPOINT.fedge\n";

int Fail(int code, absl::string_view message) {
  absl::FPrintF(stderr, "fedge: %s\n", message);
  return code;
}

void PrintModel(const fedge::ModelState& model) {
  for (const fedge::TensorBuffer& t : model.tensors()) {
    absl::PrintF("%s\n", t.DebugString());
  }
}

// A checkpoint file (magic FEDGECK1): its header, then its model.
int InspectCheckpoint(const std::string& path) {
  absl::StatusOr<fedge::Checkpoint> ckpt =
      fedge::CheckpointStore::ReadFile(path);
  if (!ckpt.ok()) return Fail(1, ckpt.status().message());
  absl::PrintF(
      "checkpoint: model version %d, next round %d, %d rounds completed, "
      "%d bytes of coordinator state\n",
      ckpt->model_version, ckpt->next_round, ckpt->completed_rounds,
      ckpt->extra.size());
  PrintModel(ckpt->model);
  absl::PrintF("%d tensors, %d elements, model sha256 %s\n", ckpt->model.size(),
               ckpt->model.NumElements(),
               fedge::ToHex(fedge::ModelDigest(ckpt->model)));
  return 0;
}

// A model (MODEL.fedge, a cached model) or a checkpoint.
int Inspect(const std::string& path) {
  std::string magic;
  absl::Status peeked =
      fedge::ReadFileChunks(path, 8, [&magic](absl::string_view bytes) {
        magic.assign(bytes.data(), bytes.size());
        return absl::CancelledError("");  // Only the first 8 bytes.
      });
  if (!peeked.ok() && !absl::IsCancelled(peeked)) {
    return Fail(1, peeked.message());
  }
  if (magic == "FEDGECK1") return InspectCheckpoint(path);
  fedge::ModelDecoder decoder;
  fedge::Sha256 sha;
  absl::Status fed =
      fedge::ReadFileChunks(path, 1 << 20, [&](absl::string_view bytes) {
        sha.Update(bytes);
        return decoder.Feed(bytes);
      });
  if (!fed.ok()) return Fail(1, fed.message());
  auto model = decoder.Finish();
  if (!model.ok()) return Fail(1, model.status().message());
  PrintModel(*model);
  absl::PrintF("%d tensors, %d elements, %d bytes encoded, sha256 %s\n",
               model->size(), model->NumElements(), decoder.bytes_consumed(),
               fedge::ToHex(sha.Finish()));
  return 0;
}

template <typename Request, typename Response, typename Method>
int Call(const fedge::v1::ToolConfig& config, Method method) {
  auto creds = fedge::MakeChannelCredentials(config.tls());
  if (!creds.ok()) return Fail(2, creds.status().message());
  auto channel =
      grpc::CreateCustomChannel(config.coordinator(), *creds,
                                fedge::MakeChannelArguments(config.tls(), 0));
  auto stub = fedge::v1::Operator::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(
      fedge::MonotonicDeadline(absl::Seconds(config.timeout_seconds())));
  Response response;
  absl::Status s =
      fedge::FromGrpcStatus(((*stub).*method)(&context, Request(), &response));
  if (!s.ok())
    return Fail(1, absl::StrCat(config.coordinator(), ": ", s.ToString()));
  std::string text;
  google::protobuf::TextFormat::PrintToString(response, &text);
  absl::PrintF("%s", text);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<const char*> args;
  for (int i = 1; i < argc; ++i) {
    args.push_back(std::string(argv[i]) == "--insecure" ? "--tls.insecure=true"
                                                        : argv[i]);
  }
  auto cmd =
      fedge::ParseCommandLine(static_cast<int>(args.size()), args.data(), {});
  if (!cmd.ok()) return Fail(2, cmd.status().message());
  if (cmd->help || cmd->positional.empty()) {
    absl::PrintF("%s\nflags:\n%s", kUsage,
                 fedge::DescribeFlags(fedge::v1::ToolConfig::descriptor()));
    return cmd->help ? 0 : 2;
  }
  const std::string& verb = cmd->positional[0];
  if (verb == "inspect") {
    if (cmd->positional.size() != 2)
      return Fail(2, "usage: fedge inspect FILE");
    return Inspect(cmd->positional[1]);
  }
  fedge::v1::ToolConfig config;
  if (auto s = fedge::BuildConfig(*cmd, &config); !s.ok()) {
    return Fail(2, s.message());
  }
  using Stub = fedge::v1::Operator::Stub;
  namespace v1 = fedge::v1;
  if (verb == "status") {
    return Call<v1::GetStatusRequest, v1::GetStatusResponse>(config,
                                                             &Stub::GetStatus);
  }
  if (verb == "agents") {
    return Call<v1::ListAgentsRequest, v1::ListAgentsResponse>(
        config, &Stub::ListAgents);
  }
  if (verb == "rounds") {
    return Call<v1::ListRoundsRequest, v1::ListRoundsResponse>(
        config, &Stub::ListRounds);
  }
  return Fail(2, absl::StrCat("unknown command '", verb, "'\n", kUsage));
}
