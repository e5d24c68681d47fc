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
#include "common/net/grpc_status.h"
#include "fedge/v1/config.pb.h"
#include "fedge/v1/federation.grpc.pb.h"
#include "google/protobuf/text_format.h"

namespace {

constexpr char kUsage[] =
    "usage: fedge status|agents|rounds [--coordinator HOST:PORT]\n"
    "                  [--tls.ca_path CA.pem | --insecure] [--tls.server_name "
    "N]\n"
    "       fedge inspect MODEL.fedge\n";

int Fail(int code, absl::string_view message) {
  absl::FPrintF(stderr, "fedge: %s\n", message);
  return code;
}

int Inspect(const std::string& path) {
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
  for (const fedge::TensorBuffer& t : model->tensors()) {
    absl::PrintF("%s\n", t.DebugString());
  }
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
  context.set_deadline(absl::ToChronoTime(
      absl::Now() + absl::Seconds(config.timeout_seconds())));
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
