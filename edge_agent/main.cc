// fedge-agent: the federated-learning agent that runs on a device.
//
//   fedge-agent --config FILE [--coordinator host:port] [--field=value ...]
//   fedge-agent predict --state_dir DIR [--data.source=...] [--limit N]
//
// Exit codes: 0 done, 1 runtime failure, 2 bad usage or configuration.
#include <malloc.h>

#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "common/config_loader.h"
#include "common/fl_config.h"
#include "common/ml/blas_kernels.h"
#include "edge_agent/agent_config.h"
#include "edge_agent/agent_runner.h"
#include "edge_agent/torch_support.h"
#include "fedge/v1/config.pb.h"

namespace {

constexpr char kUsage[] =
    "fedge-agent: joins a fedge federation, trains on local data that never\n"
    "leaves the device, and predicts offline with the last global model.\n"
    "\n"
    "usage: fedge-agent [--config FILE] [--coordinator HOST:PORT]\n"
    "                   [--insecure] [--<field.path>=VALUE ...]\n"
    "       fedge-agent predict --state_dir DIR [--config FILE]\n"
    "                   [--data.source=mnist|idx|csv|synthetic ...]\n"
    "                   [--split test|train] [--limit N]\n"
    "\n"
    "predict classifies the examples of the data config (its test split by\n"
    "default) with the newest model cached in --state_dir, with no\n"
    "coordinator, printing index, predicted class and label, then accuracy.\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.\n"
    "\n"
    "Every field of the config (proto/fedge/v1/config.proto, AgentConfig)\n"
    "can be set with a flag named by its path:\n";

int Fail(int code, absl::string_view message) {
  absl::FPrintF(stderr, "fedge-agent: %s\n", message);
  return code;
}

int RunPredict(const fedge::CommandLine& cmd,
               const fedge::v1::AgentConfig& config) {
  if (auto s =
          fedge::ValidateNumThreads("num_threads", config.num_threads(), 1);
      !s.ok()) {
    return Fail(2, s.message());
  }
  fedge::PredictOptions options;
  options.state_dir = config.state_dir();
  options.data = config.data();
  options.num_threads = config.num_threads();
  auto verifier = fedge::LoadModelVerifier(config);
  if (!verifier.ok()) return Fail(2, verifier.status().message());
  if (verifier->has_value()) options.verifier = &**verifier;
  if (auto it = cmd.flags.find("split"); it != cmd.flags.end()) {
    options.split = it->second;
  }
  if (auto it = cmd.flags.find("limit");
      it != cmd.flags.end() && !absl::SimpleAtoi(it->second, &options.limit)) {
    return Fail(2, "--limit must be a number, got '" + it->second + "'");
  }
  auto summary = fedge::Predict(options, stdout);
  if (!summary.ok()) {
    const bool usage =
        summary.status().code() == absl::StatusCode::kInvalidArgument;
    return Fail(usage ? 2 : 1, summary.status().message());
  }
  absl::PrintF("# model version %d (sha256 %s): %d examples, accuracy %.2f%%\n",
               summary->model_version, summary->model_sha256,
               summary->num_examples, 100 * summary->accuracy);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Each round allocates and frees model-sized buffers (the download, the
  // network's weights, the delta, the upload). glibc maps the largest with
  // mmap and unmaps them when freed, and returns freed heap above 128 KiB,
  // so every round faulted all of them in again (12% of the agents' CPU in
  // bench/transfer_bench.sh). Served from the heap (up to 32 MiB a block,
  // glibc's most) and with up to 256 MiB of freed heap kept, a round reuses
  // the last one's pages: its peak is unchanged, and between rounds the
  // agent keeps what its next round needs.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  fedge::CommandLineSpec spec;
  spec.own_flags = {"limit", "split"};
  spec.aliases = {{"data_dir", "data.data_dir"}, {"insecure", "tls.insecure"}};
  spec.config = fedge::v1::AgentConfig::descriptor();
  auto cmd = fedge::ParseCommandLine(argc - 1, argv + 1, spec);
  if (!cmd.ok()) return Fail(2, cmd.status().message());
  if (cmd->help) {
    absl::PrintF("%s%s", kUsage,
                 fedge::DescribeFlags(fedge::v1::AgentConfig::descriptor()));
    return 0;
  }
  const bool predict =
      cmd->positional.size() == 1 && cmd->positional[0] == "predict";
  if (!cmd->positional.empty() && !predict) {
    return Fail(
        2, "unexpected argument '" + cmd->positional.back() + "' (see --help)");
  }
  if (!predict && !cmd->flags.empty()) {
    return Fail(2, "--limit and --split apply to 'fedge-agent predict' only");
  }
  fedge::v1::AgentConfig config;
  if (auto s = fedge::BuildConfig(*cmd, &config); !s.ok()) {
    return Fail(2, s.message());
  }
  fedge::ml::ChooseBlasKernels();  // Before any thread or matrix product.
  if (predict) return RunPredict(*cmd, config);
  if (auto s = fedge::ValidateAgentConfig(config); !s.ok()) {
    return Fail(2, s.message());
  }
  if (auto s = fedge::RunAgent(config); !s.ok()) {
    if (absl::IsInvalidArgument(s)) return Fail(2, s.message());
    return Fail(1, s.ToString());
  }
  return 0;
}
