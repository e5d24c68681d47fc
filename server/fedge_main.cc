// fedge: operator tooling.
//
//   fedge status [--coordinator HOST:PORT] [--tls.ca_path CA | --insecure]
//       The coordinator's state (Operator.GetStatus); exit 0 when it answers
//       (usable as a container health check), 1 otherwise.
//   fedge agents | rounds [...]      Operator.ListAgents / ListRounds.
//   fedge inspect MODEL.fedge        Tensors, sizes and SHA-256 of a model
//   file.
//   fedge plot HISTORY.csv -o FILE.png|FILE.svg
//       Accuracy and loss over rounds from a history CSV (fedge-sim
//       --history_out, or history.csv in the coordinator's state_dir) as a
//       PNG or SVG image; prints the path written.
//   fedge export|prune|finetune|quantize|distill|evaluate MODEL ...
//       The deployment commands: fedge-export (LibTorch) runs them, found
//       beside this binary or on PATH; `fedge export` is its `model`.
//   fedge predict --state_dir DIR ...   fedge-agent predict, likewise.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/config_loader.h"
#include "common/file_util.h"
#include "common/fl_config.h"
#include "common/ml/model_cost.h"
#include "common/ml/model_files.h"
#include "common/ml/model_spec.h"
#include "common/model_codec.h"
#include "common/net/credentials.h"
#include "common/net/grpc_deadline.h"
#include "common/net/grpc_status.h"
#include "common/plot.h"
#include "fedge/v1/config.pb.h"
#include "fedge/v1/federation.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "server/checkpoint_store.h"
#include "server/credential_store.h"

namespace {

constexpr char kUsage[] =
    "fedge: operator and data tooling for a fedge federation.\n"
    "\n"
    "  see:    fedge status|agents|rounds\n"
    "  steer:  fedge pause|resume|stop          (stop: after the current "
    "round)\n"
    "          fedge set-rounds N\n"
    "          fedge evict AGENT_ID | allow AGENT_ID\n"
    "          fedge export-model FILE.fedge    (the current global model,\n"
    "                                           and its FILE.spec)\n"
    "  tokens: fedge token create [--agent ID] [--ttl_seconds S] [--label "
    "TEXT]\n"
    "          fedge token list | fedge token revoke TOKEN_ID\n"
    "  each with [--coordinator HOST:PORT] [--tls.ca_path CA.pem | "
    "--insecure]\n"
    "           [--operator_token_path STATE_DIR/operator_token]"
    " (without mutual TLS)\n"
    "           [--tls.cert_path operator-1.pem --tls.key_path operator-1.key]"
    " (mutual TLS)\n"
    "           [--tls.server_name N]\n"
    "  files:  fedge inspect MODEL.fedge|CHECKPOINT.fedge   (with MODEL.spec\n"
    "          beside it: parameters and MACs)\n"
    "          fedge zoo                   (every zoo model's parameters and "
    "MACs)\n"
    "          fedge plot HISTORY.csv -o FILE.png|FILE.svg\n";

constexpr char kPlotUsage[] =
    "usage: fedge plot HISTORY.csv -o FILE.png|FILE.svg\n"
    "  Draws accuracy and loss over rounds from a history CSV (fedge-sim\n"
    "  --history_out, or history.csv in fedge-coordinator's --state_dir)\n"
    "  into a PNG or an SVG, by the extension of FILE, and prints the path\n"
    "  written.\n";

int Fail(int code, absl::string_view message) {
  absl::FPrintF(stderr, "fedge: %s\n", message);
  return code;
}

// A `fedge VERB` that another fedge program runs: the deployment commands
// need LibTorch, which fedge (an operator's tool, also in the container
// images) does without, and `predict` is the agent's.
struct DelegatedCommand {
  const char* verb;
  const char* program;
  const char* command;   // The program's own name for it.
  const char* heading;   // Above its program's commands in the usage text.
  const char* synopsis;  // The main arguments, for the usage text.
};
constexpr DelegatedCommand kDelegated[] = {
    {"export", "fedge-export", "model", "deploy",
     "MODEL.fedge --format onnx|torchscript -o OUT"},
    {"prune", "fedge-export", "prune", "deploy",
     "MODEL.fedge --sparsity 0.8 [--structured] -o OUT.fedge"},
    {"finetune", "fedge-export", "finetune", "deploy",
     "MODEL.fedge -o OUT.fedge"},
    {"quantize", "fedge-export", "quantize", "deploy", "MODEL.fedge -o OUT.pt"},
    {"distill", "fedge-export", "distill", "deploy",
     "MODEL.fedge --student ARCH -o OUT.fedge"},
    {"evaluate", "fedge-export", "evaluate", "deploy",
     "MODEL.fedge|MODEL.pt [--limit N]"},
    {"predict", "fedge-agent", "predict", "device",
     "--state_dir DIR [--limit N]"},
};

// The usage lines of kDelegated: each program's commands under its
// heading, then the program that runs them.
std::string DelegatedUsage() {
  constexpr size_t n = sizeof(kDelegated) / sizeof(kDelegated[0]);
  std::string out, commands;
  for (size_t i = 0; i < n; ++i) {
    const DelegatedCommand& d = kDelegated[i];
    const absl::string_view program = d.program;
    const bool first = i == 0 || kDelegated[i - 1].program != program;
    const bool last = i + 1 == n || kDelegated[i + 1].program != program;
    absl::StrAppendFormat(&out, "  %-7s fedge %s %s\n",
                          first ? absl::StrCat(d.heading, ":") : "", d.verb,
                          d.synopsis);
    absl::StrAppend(&commands, first ? "" : "|", d.command);
    if (last) {
      absl::StrAppendFormat(&out, "          (run by %s %s)\n", program,
                            commands);
      commands.clear();
    }
  }
  return absl::StrCat(
      out,
      "  each with its program's flags (fedge VERB --help lists them); the\n"
      "  program is found beside fedge, else on PATH\n");
}

const DelegatedCommand* FindDelegated(absl::string_view verb) {
  for (const DelegatedCommand& d : kDelegated) {
    if (verb == d.verb) return &d;
  }
  return nullptr;
}

// Replaces this process with d.program running d.command and the
// arguments after argv[1]. d.program is looked for beside this binary (an
// installation), then in the build tree's layout (build/server/fedge,
// build/edge_agent/fedge-agent), then on PATH. Returns only when it cannot
// be started.
int RunDelegated(const DelegatedCommand& d, int argc, char** argv) {
  std::vector<char*> args;
  args.push_back(const_cast<char*>(d.program));
  args.push_back(const_cast<char*>(d.command));
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  std::vector<std::string> looked;
  std::error_code error;
  const std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    const std::filesystem::path dir = self.parent_path();
    for (const std::filesystem::path& candidate :
         {dir / d.program, dir.parent_path() / "server" / d.program,
          dir.parent_path() / "edge_agent" / d.program}) {
      const std::string path = candidate.lexically_normal().string();
      if (std::find(looked.begin(), looked.end(), path) != looked.end()) {
        continue;
      }
      looked.push_back(path);
      if (access(path.c_str(), X_OK) != 0) continue;
      execv(path.c_str(), args.data());
      return Fail(
          1, absl::StrCat("cannot run ", path, ": ", std::strerror(errno)));
    }
  }
  execvp(d.program, args.data());
  return Fail(
      1, absl::StrCat(
             "fedge ", d.verb, " is run by ", d.program, ", found neither in ",
             looked.empty() ? "this program's folder"
                            : absl::StrJoin(looked, ", "),
             " nor on PATH (", std::strerror(errno), "): build it with ",
             "scripts/build.sh ", d.program,
             absl::string_view(d.program) == "fedge-export"
                 ? " (it needs LibTorch; the container images leave it out)"
                 : ""));
}

void PrintModel(const fedge::ModelState& model) {
  for (const fedge::TensorBuffer& t : model.tensors()) {
    absl::PrintF("%s\n", t.DebugString());
  }
}

// "1,28,28".
std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrJoin(shape, ",");
}

// One line: the network `spec` names, its parameters and MACs (zoo models;
// a TorchScript archive's cost is not known without LibTorch).
void PrintCost(const fedge::ml::ModelSpec& spec) {
  absl::StatusOr<fedge::ml::ModelCost> cost = fedge::ml::ComputeModelCost(spec);
  if (!cost.ok()) {
    absl::PrintF("model %s, input %s, %d classes: cost unknown (%s)\n",
                 spec.architecture, ShapeText(spec.input_shape),
                 spec.num_classes, cost.status().message());
    return;
  }
  absl::PrintF(
      "model %s, input %s, %d classes: %d parameters, %d MACs per example\n",
      spec.architecture, ShapeText(spec.input_shape), spec.num_classes,
      cost->parameters, cost->macs);
}

// Every zoo network's parameters and MACs, for MNIST-like and CIFAR-like
// inputs (10 classes, default widths).
int Zoo() {
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{1, 28, 28}, std::vector<int64_t>{3, 32, 32}}) {
    for (const std::string& name : fedge::ml::ZooNames()) {
      fedge::ml::ModelSpec spec;
      spec.architecture = name;
      spec.input_shape = shape;
      if (name == "mlp") spec.hidden_units = {200, 200};
      PrintCost(spec);
    }
  }
  return 0;
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
  absl::Status decoded;
  absl::Status fed =
      fedge::ReadFileChunks(path, 1 << 20, [&](absl::string_view bytes) {
        sha.Update(bytes);
        decoded = decoder.Feed(bytes);
        return decoded;
      });
  if (!fed.ok() && decoded.ok()) return Fail(1, fed.message());  // I/O.
  absl::StatusOr<fedge::ModelState> model =
      fed.ok() ? decoder.Finish() : absl::StatusOr<fedge::ModelState>(fed);
  if (!model.ok()) {
    return Fail(1, absl::StrCat(path, " does not decode as a fedge model (",
                                model.status().message(),
                                "); inspect reads models (MODEL.fedge, an "
                                "agent's cached model) and checkpoints"));
  }
  PrintModel(*model);
  absl::PrintF("%d tensors, %d elements, %d bytes encoded, sha256 %s\n",
               model->size(), model->NumElements(), decoder.bytes_consumed(),
               fedge::ToHex(sha.Finish()));
  // The spec beside it (final_model.spec), when there is one.
  const std::string spec_path = fedge::ml::DefaultSpecPath(path);
  absl::StatusOr<fedge::ml::ModelSpec> spec =
      fedge::ml::ReadSpecFile(spec_path);
  if (spec.ok()) {
    PrintCost(*spec);
  } else if (!absl::IsNotFound(spec.status())) {
    absl::PrintF("%s: %s\n", spec_path, spec.status().message());
  }
  return 0;
}

// Parses `fedge plot` arguments: HISTORY.csv and -o/--output FILE (or
// -o=FILE). Returns 0, -1 after printing help, or 2 after printing the
// usage error.
int ParsePlotArgs(const std::vector<std::string>& args, std::string* input,
                  std::string* output) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      absl::PrintF("%s", kPlotUsage);
      return -1;
    } else if (arg == "-o" || arg == "--output") {
      if (i + 1 == args.size()) {
        return Fail(2, absl::StrCat("plot: ", arg,
                                    " needs a value: FILE.png or FILE.svg"));
      }
      *output = args[++i];
    } else if (absl::StartsWith(arg, "-o=") ||
               absl::StartsWith(arg, "--output=")) {
      *output = arg.substr(arg.find('=') + 1);
    } else if (absl::StartsWith(arg, "-")) {
      return Fail(2,
                  absl::StrCat("plot: unknown flag ", arg, "\n", kPlotUsage));
    } else if (!input->empty()) {
      return Fail(2, absl::StrCat("plot: one HISTORY.csv at a time, got ",
                                  *input, " and ", arg));
    } else {
      *input = arg;
    }
  }
  if (input->empty()) {
    return Fail(2, absl::StrCat("plot: no HISTORY.csv given\n", kPlotUsage));
  }
  if (output->empty()) {
    return Fail(2, "plot: missing -o FILE.png or -o FILE.svg (what to write)");
  }
  return 0;
}

int Plot(const std::vector<std::string>& args) {
  std::string input, output;
  if (int rc = ParsePlotArgs(args, &input, &output); rc != 0) {
    return rc < 0 ? 0 : rc;
  }
  auto format = fedge::PlotFormatForPath(output);
  if (!format.ok()) {
    return Fail(2, absl::StrCat("plot -o: ", format.status().message()));
  }
  auto history = fedge::ReadHistoryFile(input);
  if (!history.ok()) return Fail(1, history.status().message());
  const fedge::Figure figure = fedge::HistoryFigure(
      *history, std::filesystem::path(input).filename().string());
  std::string bytes;
  if (*format == fedge::PlotFormat::kSvg) {
    bytes = fedge::RenderSvg(figure);
  } else {
    auto png = fedge::RenderPng(figure);
    if (!png.ok()) return Fail(1, png.status().message());
    bytes = *std::move(png);
  }
  if (auto s = fedge::WriteStringAtomically(output, bytes); !s.ok()) {
    return Fail(1, s.message());
  }
  absl::PrintF("%s\n", output);
  return 0;
}

std::unique_ptr<fedge::v1::Operator::Stub> Connect(
    const fedge::v1::ToolConfig& config, absl::Status* error) {
  auto creds = fedge::MakeChannelCredentials(config.tls());
  if (!creds.ok()) {
    *error = creds.status();
    return nullptr;
  }
  auto channel =
      grpc::CreateCustomChannel(config.coordinator(), *creds,
                                fedge::MakeChannelArguments(config.tls(), 0));
  return fedge::v1::Operator::NewStub(channel);
}

// The operator token of --operator_token_path as call metadata.
// Unset, the token of a coordinator started here with its default
// state_dir is used when there is one.
absl::Status AddOperatorToken(const fedge::v1::ToolConfig& config,
                              grpc::ClientContext& context) {
  constexpr char kDefaultPath[] = "state/coordinator/operator_token";
  std::string path = config.operator_token_path();
  if (path.empty() && access(kDefaultPath, R_OK) == 0) path = kDefaultPath;
  if (path.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> token = fedge::ReadOperatorToken(path);
  if (!token.ok()) {
    return absl::Status(token.status().code(),
                        absl::StrCat("--operator_token_path: ",
                                     token.status().message()));
  }
  context.AddMetadata("authorization", absl::StrCat("Bearer ", *token));
  return absl::OkStatus();
}

template <typename Request, typename Response, typename Method>
int Call(const fedge::v1::ToolConfig& config, Method method,
         Request request = Request()) {
  absl::Status error;
  auto stub = Connect(config, &error);
  if (stub == nullptr) return Fail(2, error.message());
  grpc::ClientContext context;
  context.set_deadline(
      fedge::MonotonicDeadline(absl::Seconds(config.timeout_seconds())));
  if (auto s = AddOperatorToken(config, context); !s.ok()) {
    return Fail(2, s.message());
  }
  Response response;
  absl::Status s =
      fedge::FromGrpcStatus(((*stub).*method)(&context, request, &response));
  if (!s.ok()) {
    return Fail(1, absl::StrCat(config.coordinator(), ": ", s.ToString(),
                                fedge::ConnectionFailureHint(config.tls(),
                                                             s.message())));
  }
  std::string text;
  google::protobuf::TextFormat::PrintToString(response, &text);
  absl::PrintF("%s", text);
  return 0;
}

// The spec of the model exported to `path`, beside it (DefaultSpecPath), as
// the coordinator writes final_model.spec; a coordinator that does not send
// it gets a note instead.
int WriteExportedSpec(const std::string& path,
                      const std::optional<fedge::v1::ModelSpecProto>& spec) {
  const std::string spec_path = fedge::ml::DefaultSpecPath(path);
  if (!spec.has_value()) {
    absl::PrintF(
        "no model spec from the coordinator (an older version): %s not "
        "written; fedge export needs --spec\n",
        spec_path);
    return 0;
  }
  absl::Status w =
      fedge::ml::WriteSpecFile(spec_path, fedge::ml::SpecFromProto(*spec));
  if (!w.ok()) return Fail(1, w.message());
  absl::PrintF("model spec written to %s\n", spec_path);
  return 0;
}

// Streams the current global model into `path` (atomically), and its spec
// beside it.
int ExportModel(const fedge::v1::ToolConfig& config, const std::string& path) {
  absl::Status error;
  auto stub = Connect(config, &error);
  if (stub == nullptr) return Fail(2, error.message());
  grpc::ClientContext context;
  context.set_deadline(
      fedge::MonotonicDeadline(absl::Seconds(config.timeout_seconds() + 600)));
  if (auto s = AddOperatorToken(config, context); !s.ok()) {
    return Fail(2, s.message());
  }
  auto reader = stub->ExportModel(&context, fedge::v1::ExportModelRequest());
  fedge::v1::ModelChunk chunk;
  fedge::ModelDecoder decoder;
  fedge::Sha256 sha;
  std::string bytes, expected_sha;
  int64_t version = -1;
  std::optional<fedge::v1::ModelSpecProto> spec;
  while (reader->Read(&chunk)) {
    if (version < 0) {
      version = chunk.version();
      expected_sha = chunk.sha256();
      if (chunk.has_model_spec()) spec = chunk.model_spec();
    }
    sha.Update(chunk.data());
    if (auto s = decoder.Feed(chunk.data()); !s.ok()) {
      return Fail(1, absl::StrCat("export: ", s.message()));
    }
    bytes += chunk.data();
  }
  absl::Status s = fedge::FromGrpcStatus(reader->Finish());
  if (!s.ok()) {
    return Fail(1, absl::StrCat(config.coordinator(), ": ", s.ToString()));
  }
  if (fedge::ToHex(sha.Finish()) != expected_sha) {
    return Fail(1, "export: the model's SHA-256 does not verify");
  }
  if (auto m = decoder.Finish(); !m.ok()) {
    return Fail(1, absl::StrCat("export: ", m.status().message()));
  }
  if (auto w = fedge::WriteStringAtomically(path, bytes); !w.ok()) {
    return Fail(1, w.message());
  }
  absl::PrintF("model version %d (sha256 %s) written to %s\n", version,
               expected_sha, path);
  return WriteExportedSpec(path, spec);
}

}  // namespace

int main(int argc, char** argv) {
  // plot takes POSIX-style flags (-o FILE) and no ToolConfig.
  if (argc >= 2 && std::string(argv[1]) == "plot") {
    return Plot(std::vector<std::string>(argv + 2, argv + argc));
  }
  // Commands of other fedge programs take those programs' flags.
  if (argc >= 2) {
    if (const DelegatedCommand* d = FindDelegated(argv[1])) {
      return RunDelegated(*d, argc, argv);
    }
  }
  fedge::CommandLineSpec spec;
  spec.aliases = {{"insecure", "tls.insecure"}};
  spec.config = fedge::v1::ToolConfig::descriptor();
  auto cmd = fedge::ParseCommandLine(argc - 1, argv + 1, spec);
  if (!cmd.ok()) return Fail(2, cmd.status().message());
  if (cmd->help || cmd->positional.empty()) {
    absl::PrintF("%s%s\nflags:\n%s", kUsage, DelegatedUsage(),
                 fedge::DescribeFlags(fedge::v1::ToolConfig::descriptor()));
    return cmd->help ? 0 : 2;
  }
  const std::string& verb = cmd->positional[0];
  if (verb == "zoo") return Zoo();
  if (verb == "inspect") {
    if (cmd->positional.size() != 2)
      return Fail(2, "usage: fedge inspect FILE");
    return Inspect(cmd->positional[1]);
  }
  fedge::v1::ToolConfig config;
  if (auto s = fedge::BuildConfig(*cmd, &config); !s.ok()) {
    return Fail(2, s.message());
  }
  if (auto s = fedge::ValidateToolConfig(config); !s.ok()) {
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
  using Action = v1::OperatorActionResponse;
  const auto& pos = cmd->positional;
  if (verb == "pause" && pos.size() == 1) {
    return Call<v1::PauseRequest, Action>(config, &Stub::Pause);
  }
  if (verb == "resume" && pos.size() == 1) {
    return Call<v1::ResumeRequest, Action>(config, &Stub::Resume);
  }
  if (verb == "stop" && pos.size() == 1) {
    return Call<v1::StopAfterRoundRequest, Action>(config,
                                                   &Stub::StopAfterRound);
  }
  if (verb == "set-rounds") {
    int rounds = 0;
    if (pos.size() != 2 || !absl::SimpleAtoi(pos[1], &rounds) || rounds < 1) {
      return Fail(2, "usage: fedge set-rounds N (N >= 1)");
    }
    v1::SetRoundsRequest request;
    request.set_rounds(rounds);
    return Call<v1::SetRoundsRequest, Action>(config, &Stub::SetRounds,
                                              request);
  }
  if (verb == "evict" || verb == "allow") {
    if (pos.size() != 2) return Fail(2, "usage: fedge evict|allow AGENT_ID");
    if (verb == "evict") {
      v1::EvictAgentRequest request;
      request.set_agent_id(pos[1]);
      return Call<v1::EvictAgentRequest, Action>(config, &Stub::EvictAgent,
                                                 request);
    }
    v1::AllowAgentRequest request;
    request.set_agent_id(pos[1]);
    return Call<v1::AllowAgentRequest, Action>(config, &Stub::AllowAgent,
                                               request);
  }
  if (verb == "token") {
    if (pos.size() == 2 && pos[1] == "create") {
      v1::CreateJoinTokenRequest request;
      request.set_agent_id(config.agent());
      request.set_ttl_seconds(config.ttl_seconds());
      request.set_label(config.label());
      return Call<v1::CreateJoinTokenRequest, v1::CreateJoinTokenResponse>(
          config, &Stub::CreateJoinToken, request);
    }
    if (pos.size() == 2 && pos[1] == "list") {
      return Call<v1::ListJoinTokensRequest, v1::ListJoinTokensResponse>(
          config, &Stub::ListJoinTokens);
    }
    if (pos.size() == 3 && pos[1] == "revoke") {
      v1::RevokeJoinTokenRequest request;
      request.set_token_id(pos[2]);
      return Call<v1::RevokeJoinTokenRequest, Action>(
          config, &Stub::RevokeJoinToken, request);
    }
    return Fail(2,
                "usage: fedge token create [--agent ID] [--ttl_seconds S] "
                "[--label TEXT] | fedge token list | fedge token revoke "
                "TOKEN_ID");
  }
  if (verb == "export-model") {
    if (pos.size() != 2) return Fail(2, "usage: fedge export-model FILE.fedge");
    return ExportModel(config, pos[1]);
  }
  return Fail(2, absl::StrCat("unknown command '", verb, "'\n", kUsage));
}
