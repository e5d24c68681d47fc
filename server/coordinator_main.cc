// fedge-coordinator: the federation's server.
//
//   fedge-coordinator --config configs/coordinator/mnist_2nn.textproto
//       [--listen_address 0.0.0.0:50051] [--state_dir DIR] [--insecure]
//       [--field.path=VALUE ...]
// SIGTERM or SIGINT stops it cleanly (checkpoints are written every round).
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/config_loader.h"
#include "common/file_util.h"
#include "common/fl_config.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "fedge/v1/config.pb.h"
#include "server/coordinator_server.h"

namespace {

constexpr char kUsage[] =
    "fedge-coordinator: serves a federation (FedAvg) to fedge agents.\n"
    "\n"
    "usage: fedge-coordinator --config FILE [--insecure] [--<field>=VALUE]\n"
    "\n"
    "TLS is on unless --insecure (developer mode) is given; certificates come\n"
    "from deploy/make-certs.sh. Every field of CoordinatorConfig\n"
    "(proto/fedge/v1/config.proto) can be set by a flag named by its path:\n";

// Descriptors the coordinator needs besides one per connection: checkpoint
// and history files, the evaluator's pipes, the listeners, gRPC's own.
constexpr int64_t kSpareDescriptors = 256;

// Makes RLIMIT_NOFILE cover `max_connections` plus spares (past the limit
// gRPC stops accepting connections for good and checkpoints cannot be
// written).
absl::Status CheckDescriptorLimit(int max_connections) {
  const int64_t need = int64_t{max_connections} + kSpareDescriptors;
  ASSIGN_OR_RETURN(
      fedge::OpenFileLimit limit,
      fedge::RaiseOpenFileLimit(
          need, absl::StrCat("max_connections is ", max_connections, ", which"),
          absl::StrCat("raise it with ulimit -n ", need,
                       " (the hard limit as root, or LimitNOFILE= in a "
                       "systemd unit) or lower --max_connections")));
  if (limit.after != limit.before) {
    FEDGE_LOG(INFO) << "raised RLIMIT_NOFILE from " << limit.before << " to "
                    << limit.after << " for max_connections "
                    << max_connections;
  }
  return absl::OkStatus();
}

// Blocks SIGTERM/SIGINT (and SIGUSR1) in every thread and returns their set;
// one thread waits for them with sigwait.
sigset_t BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);  // Wakes the waiting thread at exit.
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

}  // namespace

int main(int argc, char** argv) {
  // Model-sized buffers (decoded updates, published models) come and go
  // every round: serve every block above 4 MB (more than a 1 MiB chunk) by
  // mmap so that freeing it returns
  // the memory at once, instead of glibc's adaptive threshold keeping freed
  // blocks in per-thread arenas (which grows the resident set with the
  // number of concurrent uploads).
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  // A file-size limit makes writes fail with EFBIG (reported with the path)
  // instead of killing the process mid-write.
  signal(SIGXFSZ, SIG_IGN);
  const sigset_t stop_signals = BlockStopSignals();
  fedge::CommandLineSpec spec;
  spec.aliases = {{"insecure", "tls.insecure"}};
  spec.config = fedge::v1::CoordinatorConfig::descriptor();
  auto cmd = fedge::ParseCommandLine(argc - 1, argv + 1, spec);
  if (!cmd.ok()) {
    absl::FPrintF(stderr, "fedge-coordinator: %s\n", cmd.status().message());
    return 2;
  }
  if (cmd->help) {
    absl::PrintF(
        "%s%s", kUsage,
        fedge::DescribeFlags(fedge::v1::CoordinatorConfig::descriptor()));
    return 0;
  }
  fedge::v1::CoordinatorConfig config;
  if (auto s = fedge::BuildConfig(*cmd, &config); !s.ok()) {
    absl::FPrintF(stderr, "fedge-coordinator: %s\n", s.message());
    return 2;
  }
  // Validated (again by Create) so that max_connections can be trusted
  // before the port opens.
  if (auto s = fedge::ValidateCoordinatorConfig(config); !s.ok()) {
    absl::FPrintF(stderr, "fedge-coordinator: %s\n", s.message());
    return 2;
  }
  if (auto s = CheckDescriptorLimit(config.max_connections()); !s.ok()) {
    absl::FPrintF(stderr, "fedge-coordinator: %s\n", s.message());
    return 1;
  }
  auto server = fedge::CoordinatorServer::Create(config);
  if (!server.ok()) {
    absl::FPrintF(stderr, "fedge-coordinator: %s\n", server.status().message());
    return absl::IsInvalidArgument(server.status()) ? 2 : 1;
  }
  // The first SIGTERM/SIGINT shuts down cleanly (within seconds); a second
  // one exits at once.
  std::thread signals([&stop_signals, s = server->get()] {
    for (int received = 0;; ++received) {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      if (sig == SIGUSR1) return;  // Sent by main at exit.
      if (received > 0) {
        FEDGE_LOG(WARNING) << "second signal " << sig << ": exiting now";
        std::_Exit(128 + sig);
      }
      FEDGE_LOG(INFO) << "signal " << sig << ": shutting down";
      s->Shutdown();
    }
  });
  absl::Status status = (*server)->Run();
  pthread_kill(signals.native_handle(), SIGUSR1);
  signals.join();
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  FEDGE_LOG(INFO) << absl::StrFormat(
      "resources: cpu_user_s=%.2f cpu_sys_s=%.2f peak_rss_mb=%.1f",
      usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6,
      usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6,
      usage.ru_maxrss / 1024.0);
  if (!status.ok()) {
    absl::FPrintF(stderr, "fedge-coordinator: %s\n", status.message());
    return 1;
  }
  return 0;
}
