#include "edge_agent/agent_runner.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/config_loader.h"
#include "common/data/data_source.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "edge_agent/agent.h"
#include "edge_agent/agent_config.h"
#include "edge_agent/agent_metrics.h"
#include "edge_agent/device_conditions.h"
#include "edge_agent/grpc_coordinator_client.h"
#include "edge_agent/model_cache.h"
#include "edge_agent/torch_support.h"
#include "server/http_server.h"

namespace fedge {
namespace {

// Turns the first SIGINT/SIGTERM into `on_signal` (from a thread of its
// own); a second one exits the process at once. Blocks both signals in the
// constructing thread and the threads it starts later.
class SignalWatcher {
 public:
  explicit SignalWatcher(std::function<void()> on_signal) {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, &old_mask_);
    thread_ = std::thread(
        [this, on_signal = std::move(on_signal)] { Watch(on_signal); });
  }
  ~SignalWatcher() {
    done_.store(true);
    thread_.join();
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  void Watch(const std::function<void()>& on_signal) {
    int received = 0;
    while (!done_.load()) {
      const timespec tick = {0, 200 * 1000 * 1000};
      const int sig = sigtimedwait(&signals_, nullptr, &tick);
      if (sig <= 0) continue;
      if (++received > 1) {
        FEDGE_LOG(WARNING) << "second signal: exiting now";
        std::_Exit(128 + sig);
      }
      FEDGE_LOG(INFO) << "signal " << sig << ": leaving the federation";
      on_signal();
    }
  }

  sigset_t signals_;
  sigset_t old_mask_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

GrpcCoordinatorClientOptions ToClientOptions(const v1::AgentConfig& c) {
  GrpcCoordinatorClientOptions o;
  o.target = c.coordinator();
  o.tls = c.tls();
  o.keepalive_time_ms = c.keepalive_time_ms();
  o.link = ToLinkProfile(c.profile());
  return o;
}

// What a signal stops: the agent once it exists, its calls (in progress,
// and the waits of those to come: GrpcCoordinatorClient::BeginStop), and
// every sleep.
struct StopSignal {
  Event notification;
  std::atomic<Agent*> agent{nullptr};
  std::atomic<GrpcCoordinatorClient*> client{nullptr};

  // Stops the agent before cancelling its calls and waking its sleep, so
  // that it sees the request.
  void Fire() {
    if (Agent* a = agent.load()) a->Stop();
    if (GrpcCoordinatorClient* c = client.load()) c->BeginStop();
    if (!notification.HasBeenNotified()) notification.Notify();
  }
};

// Makes the client known to a StopSignal for its lifetime.
class ClientRegistration {
 public:
  ClientRegistration(StopSignal& stop, GrpcCoordinatorClient* client)
      : stop_(stop) {
    stop_.client.store(client);
  }
  ~ClientRegistration() { stop_.client.store(nullptr); }

 private:
  StopSignal& stop_;
};

// Runs the agent loop; a signal stops it.
absl::Status RunLoop(AgentOptions options, CoordinatorClient& client,
                     TrainerFactory factory, ModelCache& cache,
                     StopSignal& stop) {
  auto sleep = [&stop](absl::Duration d) { stop.notification.WaitFor(d); };
  ASSIGN_OR_RETURN(
      auto agent, Agent::Create(std::move(options), &client, std::move(factory),
                                &cache, RealClock::Get(), sleep));
  stop.agent.store(agent.get());
  if (stop.notification.HasBeenNotified()) agent->Stop();
  absl::Status status = agent->Run();
  stop.agent.store(nullptr);
  return status;
}

// Sets the configured nice value for this thread and the threads it starts
// afterwards (on Linux each thread has its own). PERMISSION_DENIED when
// not allowed (lowering it needs CAP_SYS_NICE).
absl::Status SetNiceness(const v1::AgentConfig& c) {
  if (!c.has_niceness()) return absl::OkStatus();
  if (setpriority(PRIO_PROCESS, 0, c.niceness()) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("config field 'niceness': cannot set ", c.niceness(), ": ",
                     std::strerror(errno),
                     " (going below the inherited value needs CAP_SYS_NICE)"));
  }
  FEDGE_LOG(INFO) << "niceness " << c.niceness();
  return absl::OkStatus();
}

// Bytes the local data holds in memory.
int64_t DataBytes(const LoadedData& data) {
  int64_t bytes = 0;
  for (const Dataset* d : {&data.train, &data.test}) {
    bytes += static_cast<int64_t>(d->features.size() * sizeof(float) +
                                  d->labels.size() * sizeof(int64_t));
  }
  return bytes;
}

// The loop's options, from the config and the loaded data.
absl::StatusOr<AgentOptions> MakeAgentOptions(const v1::AgentConfig& c,
                                              ModelCache& cache,
                                              const LoadedData& data) {
  AgentOptions options = ToAgentOptions(c);
  options.local_data_bytes = DataBytes(data);
  ASSIGN_OR_RETURN(options.agent_id, ResolveAgentId(c, cache));
  ASSIGN_OR_RETURN(options.join_credentials,
                   JoinCredentials::Load(c.join_token_path(),
                                         cache.state_dir() + "/agent_key",
                                         "join_token_path"));
  ASSIGN_OR_RETURN(options.num_examples, NumLocalExamples(c, data));
  options.agent_version = AgentVersion();
  options.architectures = TrainableArchitectures(/*archives=*/true);
  options.seed =
      MixSeed({static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())),
               static_cast<uint64_t>(getpid()),
               StableHash64(options.agent_id.data(), options.agent_id.size())});
  return options;
}

// Lower-case hex SHA-256 of the file at `path`.
absl::StatusOr<std::string> FileSha256(const std::string& path) {
  Sha256 sha;
  RETURN_IF_ERROR(ReadFileChunks(path, 1 << 20, [&sha](absl::string_view b) {
    sha.Update(b);
    return absl::OkStatus();
  }));
  return ToHex(sha.Finish());
}

// The federation's TorchScript archive on this device: the configured
// model_archive_path when it is that archive, else a copy in
// <state_dir>/archives/ (fetched from the coordinator once, verified).
ArchiveResolver MakeArchiveResolver(const v1::AgentConfig& c,
                                    CoordinatorClient& client) {
  return [&c, &client](
             const v1::JoinResponse& join) -> absl::StatusOr<std::string> {
    const v1::ModelSpecProto& m = join.model();
    if (!c.model_archive_path().empty()) {
      absl::StatusOr<std::string> sha = FileSha256(c.model_archive_path());
      if (sha.ok() && *sha == m.torchscript_sha256()) {
        return c.model_archive_path();
      }
      FEDGE_LOG(WARNING) << "model_archive_path " << c.model_archive_path()
                         << " is not the federation's archive ("
                         << m.torchscript_sha256() << "); fetching it";
    }
    const std::string dir = c.state_dir() + "/archives";
    RETURN_IF_ERROR(MakeDirs(dir));
    const std::string path = dir + "/" + m.torchscript_sha256() + ".pt";
    absl::StatusOr<std::string> cached = FileSha256(path);
    if (cached.ok() && *cached == m.torchscript_sha256()) return path;
    FEDGE_LOG(INFO) << "fetching the model archive " << m.torchscript_sha256()
                    << " (" << m.torchscript_size_bytes() << " bytes)";
    RETURN_IF_ERROR(client.FetchArchive(join.session_token(),
                                        m.torchscript_sha256(),
                                        m.torchscript_size_bytes(), path));
    return path;
  };
}

// The /metrics listener of --metrics_address.
absl::StatusOr<std::unique_ptr<HttpServer>> ServeMetrics(
    const v1::AgentConfig& c, MetricsRegistry& registry) {
  RegisterBuildInfo(&registry);
  HttpServerOptions http;
  http.address = c.metrics_address();
  http.num_threads = 2;
  http.port_file = c.state_dir() + "/metrics_port";
  if (!c.tls().cert_path().empty() && !c.tls().key_path().empty()) {
    http.tls_cert_path = c.tls().cert_path();
    http.tls_key_path = c.tls().key_path();
  } else {
    http.insecure = true;
  }
  http.routes["/metrics"] = [&registry](const HttpRequest&) {
    return HttpResponse{
        200, std::string(kPrometheusContentType), registry.Render(), {}};
  };
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Create(std::move(http));
  if (!server.ok()) {
    return Annotate(server.status(), "config field 'metrics_address'");
  }
  FEDGE_LOG(INFO) << "metrics at " << ((*server)->tls() ? "https" : "http")
                  << "://"
                  << c.metrics_address().substr(0,
                                                c.metrics_address().rfind(':'))
                  << ":" << (*server)->port() << "/metrics";
  return server;
}

// What the agent's loop needs, made from the configuration before the
// agent first calls the coordinator. On the heap: options point into it.
struct AgentParts {
  std::unique_ptr<ModelCache> cache;
  std::unique_ptr<GrpcCoordinatorClient> client;
  LoadedData data;
  AgentOptions options;
  std::optional<ModelVerifier> verifier;
  std::unique_ptr<LinuxDeviceConditions> device;
  MetricsRegistry registry;
  std::unique_ptr<AgentMetrics> metrics;
  std::unique_ptr<HttpServer> http;
};

absl::StatusOr<std::unique_ptr<AgentParts>> MakeAgentParts(
    const v1::AgentConfig& c) {
  auto p = std::make_unique<AgentParts>();
  ModelCacheOptions cache_options;
  cache_options.state_dir = c.state_dir();
  ASSIGN_OR_RETURN(p->cache, ModelCache::Open(cache_options));
  // Certificates are read here: their errors come before the data loads.
  ASSIGN_OR_RETURN(p->client,
                   GrpcCoordinatorClient::Create(ToClientOptions(c)));
  ASSIGN_OR_RETURN(p->data, LoadData(c.data()));
  if (p->data.used_fallback) FEDGE_LOG(WARNING) << p->data.description;
  RETURN_IF_ERROR(KeepOwnPartition(c, p->data));
  // The decoded files and whatever was dropped of them go back to the
  // system (glibc keeps freed heap memory otherwise).
  malloc_trim(0);
  ASSIGN_OR_RETURN(p->options, MakeAgentOptions(c, *p->cache, p->data));
  ASSIGN_OR_RETURN(p->verifier, LoadModelVerifier(c));
  if (p->verifier.has_value()) p->options.model_verifier = &*p->verifier;
  if (p->options.eligibility.needs_readings()) {
    ASSIGN_OR_RETURN(p->device,
                     LinuxDeviceConditions::Create(
                         ToDeviceConditionsOptions(c.eligibility())));
    p->options.device = p->device.get();
  }
  if (!c.metrics_address().empty()) {
    p->metrics = std::make_unique<AgentMetrics>(p->registry);
    ASSIGN_OR_RETURN(p->http, ServeMetrics(c, p->registry));
    p->options.metrics = p->metrics.get();
  }
  return p;
}

}  // namespace

std::string AgentVersion() {
  return absl::StrCat("fedge-agent/", kFedgeVersion);
}

absl::Status RunAgent(const v1::AgentConfig& c) {
  RETURN_IF_ERROR(ValidateAgentConfig(c));
  // Before any thread starts, so that all of them inherit it.
  RETURN_IF_ERROR(AsConfigError(SetNiceness(c)));
  StopSignal stop;
  // Before any thread starts, so that all of them block the signals.
  SignalWatcher watcher([&stop] { stop.Fire(); });
  SetTorchThreads(c.num_threads());
  // Whatever stops the agent before its loop comes from its configuration
  // and the files it names: INVALID_ARGUMENT, so that the program exits 2.
  absl::StatusOr<std::unique_ptr<AgentParts>> parts = MakeAgentParts(c);
  if (!parts.ok()) return AsConfigError(parts.status());
  AgentParts& p = **parts;
  ClientRegistration registration(stop, p.client.get());
  FEDGE_LOG(INFO) << AgentVersion() << " " << p.options.agent_id << " -> "
                  << c.coordinator()
                  << (c.tls().insecure() ? " (INSECURE plain text)" : " (TLS)")
                  << "; data: " << p.data.description << "; "
                  << p.options.num_examples << " local examples";
  return RunLoop(
      std::move(p.options), *p.client,
      MakeTorchTrainerFactory(c, p.data, MakeArchiveResolver(c, *p.client)),
      *p.cache, stop);
}

}  // namespace fedge
