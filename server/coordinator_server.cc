#include "server/coordinator_server.h"

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config_loader.h"
#include "common/data/data_source.h"
#include "common/file_util.h"
#include "common/fl_config.h"
#include "common/host_port.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/ml/model_files.h"
#include "common/ml/model_init.h"
#include "common/ml/model_spec.h"
#include "common/net/credentials.h"
#include "common/net/grpc_deadline.h"
#include "common/status_macros.h"
#include "common/subprocess.h"
#include "edge_agent/grpc_coordinator_client.h"
#include "server/crl_auth.h"
#include "server/evaluator_process.h"
#include "server/status_page.h"

namespace fedge {
namespace {

constexpr absl::Duration kTickPeriod = absl::Milliseconds(5);
// Time open streams get to finish once the coordinator shuts down.
constexpr absl::Duration kShutdownGrace = absl::Seconds(2);
// How often freed heap memory is handed back to the system (malloc_trim).
// Connections and calls that closed (thousands of half-open connections or
// silent streams, say) leave their memory free in glibc's per-thread arenas,
// resident for good otherwise: measured 72 MB still resident after 2,000
// half-open connections and 1,000 silent streams closed, 18 MB once trimmed
// (tests/e2e/capacity_e2e_test.cc, docs/security.md).
constexpr absl::Duration kTrimPeriod = absl::Seconds(10);

// tls.crl_path: every call's client certificate is checked against the
// CRL (server/crl_auth.h); refusals are logged and counted.
absl::Status AddRevocationCheck(const v1::TlsConfig& tls,
                                Coordinator& coordinator,
                                grpc::ServerCredentials& credentials) {
  if (tls.crl_path().empty()) return absl::OkStatus();
  CrlChecker::Options o;
  o.crl_path = tls.crl_path();
  o.ca_path = tls.ca_path();
  o.reload_interval = absl::Milliseconds(tls.crl_reload_interval_ms());
  ASSIGN_OR_RETURN(std::unique_ptr<CrlChecker> checker,
                   CrlChecker::Create(std::move(o)));
  Counter& refused =
      coordinator.metrics_registry()
          .AddCounter("fedge_revoked_certificate_calls_total",
                      "Calls refused because the client certificate is "
                      "revoked (tls.crl_path).")
          .Get();
  credentials.SetAuthMetadataProcessor(std::make_shared<CrlAuthProcessor>(
      std::shared_ptr<CrlChecker>(std::move(checker)),
      [&refused](const absl::Status& s) {
        refused.Increment();
        FEDGE_LOG(WARNING) << "refused a call: " << s.message();
      }));
  return absl::OkStatus();
}

}  // namespace

// The initial weights of a TorchScript model, from `fedge-evaluator
// --export-initial` (a child process that may load LibTorch).
absl::StatusOr<ModelState> InitialModelFromArchive(
    const v1::CoordinatorConfig& config, const ml::ModelSpec& spec) {
  const std::string out = config.state_dir() + "/initial_model.fedge";
  std::string shape;
  for (int64_t d : spec.input_shape) {
    absl::StrAppend(&shape, shape.empty() ? "" : ",", d);
  }
  const std::string binary = config.evaluator_path().empty()
                                 ? SiblingBinary("fedge-evaluator")
                                 : config.evaluator_path();
  ProcessOptions options;
  options.timeout = absl::Milliseconds(config.eval_timeout_ms());
  ASSIGN_OR_RETURN(
      ProcessResult run,
      RunProcess({binary, "--export-initial", spec.torchscript_path, out,
                  "--input_shape=" + shape,
                  absl::StrCat("--num_classes=", spec.num_classes)},
                 options));
  if (run.exit_code != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.torchscript_path ", spec.torchscript_path, ": ",
                     absl::StripAsciiWhitespace(run.output)));
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadSmallFile(out, int64_t{4} << 30));
  return DecodeModel(bytes);
}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Create(
    const v1::CoordinatorConfig& config) {
  RETURN_IF_ERROR(ValidateCoordinatorConfig(config));
  // TLS files first: a bad one stops the start before the state_dir, its
  // first checkpoint or the operator token are written.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> made =
      MakeServerCredentials(config.tls());
  if (!made.ok()) return AsConfigError(made.status());
  std::shared_ptr<grpc::ServerCredentials> credentials = *std::move(made);
  // gRPC and the HTTP listener bind their ports last: a port in use must
  // stop the start before the state_dir, its first checkpoint and the
  // operator token exist.
  for (const auto& [address, flag] :
       {std::pair<const std::string&, const char*>{config.listen_address(),
                                                   "listen_address"},
        {config.http_address(), "http_address"}}) {
    RETURN_IF_ERROR(Annotate(CheckAddressFree(address),
                             absl::StrCat("cannot listen (set --", flag,
                                          ", or stop the other one)")));
  }
  RETURN_IF_ERROR(MakeDirs(config.state_dir()));
  auto self = std::unique_ptr<CoordinatorServer>(new CoordinatorServer());
  self->config_ = config;
  CoordinatorOptions options;
  options.config = config;
  options.clock = RealClock::Get();
  ml::ModelSpec spec = ml::SpecFromConfig(config.model());
  if (spec.architecture == "torchscript") {
    // The coordinator never loads LibTorch: fedge-evaluator reads the
    // archive's weights and schema for it.
    RETURN_IF_ERROR(Annotate(ml::StampArchive(spec), "model.torchscript_path"));
    ASSIGN_OR_RETURN(options.initial_model,
                     InitialModelFromArchive(config, spec));
    options.archive_path = spec.torchscript_path;
    FEDGE_LOG(INFO) << "model: TorchScript archive " << spec.torchscript_path
                    << " (sha256 " << spec.torchscript_sha256 << ", "
                    << options.initial_model.NumElements() << " elements)";
  } else {
    ASSIGN_OR_RETURN(options.initial_model, ml::InitialModelState(spec));
  }
  ASSIGN_OR_RETURN(options.initial_model,
                   ml::InitialWeights(config.model().initial_weights_path(),
                                      std::move(options.initial_model)));
  options.model_spec = ml::SpecToProto(spec);
  if (config.has_eval_data()) {
    EvaluatorProcess::Options eval;
    *eval.config.mutable_data() = config.eval_data();
    *eval.config.mutable_model() = config.model();
    eval.binary = config.evaluator_path().empty()
                      ? SiblingBinary("fedge-evaluator")
                      : config.evaluator_path();
    eval.work_dir = config.state_dir();
    eval.timeout = absl::Milliseconds(config.eval_timeout_ms());
    ASSIGN_OR_RETURN(auto evaluator, EvaluatorProcess::Start(std::move(eval)));
    FEDGE_LOG(INFO) << "central evaluation on " << evaluator->description();
    self->evaluator_ = evaluator.get();
    options.evaluator = std::move(evaluator);
  }
  ASSIGN_OR_RETURN(self->coordinator_, Coordinator::Create(std::move(options)));
  self->federation_ = std::make_unique<FederationService>(
      self->coordinator_.get(), config.chunk_bytes());
  // Without mutual TLS operators present a token (the file is made on the
  // first start).
  Sha256Digest operator_token{};
  if (!config.tls().require_client_cert()) {
    const std::string path = config.operator_token_path().empty()
                                 ? config.state_dir() + "/operator_token"
                                 : config.operator_token_path();
    absl::StatusOr<Sha256Digest> token = LoadOrCreateOperatorToken(path);
    if (!token.ok()) {
      return Annotate(token.status(), "config field 'operator_token_path'");
    }
    operator_token = *token;
    FEDGE_LOG(INFO) << "the Operator service needs the operator token in "
                    << path << " (fedge --operator_token_path " << path << ")";
  }
  self->operator_ = std::make_unique<OperatorService>(
      self->coordinator_.get(), config.tls().require_client_cert(),
      operator_token, config.chunk_bytes());
  RETURN_IF_ERROR(
      AddRevocationCheck(config.tls(), *self->coordinator_, *credentials));
  grpc::ServerBuilder builder;
  ConfigureServerBuilder(builder, config);
  builder.AddListeningPort(config.listen_address(), credentials, &self->port_);
  builder.RegisterService(self->federation_.get());
  builder.RegisterService(self->operator_.get());
  self->server_ = builder.BuildAndStart();
  if (self->server_ == nullptr || self->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on '", config.listen_address(),
                     "' (address in use or invalid? set --listen_address)"));
  }
  RETURN_IF_ERROR(WriteStringAtomically(config.state_dir() + "/port",
                                        absl::StrCat(self->port_, "\n")));
  RETURN_IF_ERROR(self->StartHttp());
  FEDGE_LOG(INFO) << "fedge-coordinator listening on port " << self->port_
                  << (config.tls().insecure() ? " (INSECURE: plain text)"
                                              : " (TLS)");
  RETURN_IF_ERROR(self->StartEdgeAggregator());
  return self;
}

absl::Status CoordinatorServer::StartEdgeAggregator() {
  const v1::UpstreamConfig& u = config_.upstream();
  if (u.address().empty()) return absl::OkStatus();
  GrpcCoordinatorClientOptions o;
  o.target = u.address();
  o.tls = u.tls();
  o.keepalive_time_ms = u.keepalive_time_ms();
  absl::StatusOr<std::unique_ptr<GrpcCoordinatorClient>> client =
      GrpcCoordinatorClient::Create(std::move(o));
  if (!client.ok()) return Annotate(client.status(), "upstream.tls");
  GrpcCoordinatorClient* grpc_client = client->get();
  cancel_upstream_call_ = [grpc_client] { grpc_client->BeginStop(); };
  upstream_ = *std::move(client);
  EdgeAggregatorOptions edge_options = ToEdgeAggregatorOptions(config_);
  if (!u.model_signing_public_key_paths().empty()) {
    absl::StatusOr<ModelVerifier> verifier =
        ModelVerifier::Load({u.model_signing_public_key_paths().begin(),
                             u.model_signing_public_key_paths().end()});
    if (!verifier.ok()) {
      return Annotate(verifier.status(),
                      "upstream.model_signing_public_key_paths");
    }
    upstream_verifier_ = *std::move(verifier);
    edge_options.model_verifier = &*upstream_verifier_;
    FEDGE_LOG(INFO) << "verifying upstream models against model-signing key "
                       "id(s) "
                    << upstream_verifier_->KeyIds();
  } else {
    FEDGE_LOG(WARNING) << "no upstream model-signing key pinned "
                          "(upstream.model_signing_public_key_paths): the "
                          "upstream's models are not verified";
  }
  ASSIGN_OR_RETURN(
      edge_options.join_credentials,
      JoinCredentials::Load(u.join_token_path(),
                            config_.state_dir() + "/upstream_agent_key",
                            "upstream.join_token_path"));
  ASSIGN_OR_RETURN(edge_, EdgeAggregator::Create(
                              std::move(edge_options), upstream_.get(),
                              coordinator_.get(), RealClock::Get(),
                              [this](absl::Duration d) { stop_.WaitFor(d); }));
  FEDGE_LOG(INFO) << "edge aggregator: agent " << u.agent_id() << " of "
                  << u.address()
                  << (u.tls().insecure() ? " (INSECURE plain text)" : " (TLS)");
  edge_thread_ = std::thread([this] {
    edge_status_ = edge_->Run();
    if (!edge_status_.ok()) {
      FEDGE_LOG(ERROR) << "edge aggregator: " << edge_status_;
      Shutdown();
    }
  });
  return absl::OkStatus();
}

absl::Status CoordinatorServer::StopEdgeAggregator() {
  if (!edge_thread_.joinable()) return absl::OkStatus();
  edge_->Stop();
  cancel_upstream_call_();
  edge_thread_.join();
  return edge_status_;
}

CoordinatorServer::~CoordinatorServer() {
  if (server_ != nullptr) {
    if (coordinator_ != nullptr) coordinator_->BeginShutdown();
    StopEdgeAggregator().IgnoreError();
    server_->Shutdown(MonotonicDeadline(absl::ZeroDuration()));
  }
}

void CoordinatorServer::Shutdown() {
  if (stop_.HasBeenNotified()) return;
  stop_.Notify();
  if (evaluator_ != nullptr) evaluator_->Cancel();
}

absl::Status CoordinatorServer::Run() {
  absl::Status status;
  absl::Time next_trim = RealClock::Get()->Now() + kTrimPeriod;
  while (!stop_.WaitFor(kTickPeriod)) {
    if (RealClock::Get()->Now() >= next_trim) {
      malloc_trim(0);
      next_trim = RealClock::Get()->Now() + kTrimPeriod;
    }
    status = coordinator_->Tick();
    if (!status.ok()) {
      FEDGE_LOG(ERROR) << "stopping: " << status;
      break;
    }
    if (coordinator_->done() && coordinator_->Settled() &&
        config_.exit_when_done()) {
      break;
    }
  }
  if (status.ok() && coordinator_->done()) {
    status = coordinator_->Flush();
    if (status.ok()) status = WriteFinalModel();
    // Let agents see "finished" on their next poll before the port closes:
    // at least two polls' time, and until every agent in the roster was
    // told and is done with it (one still training or uploading on a busy
    // device polls later, then fetches the final model and leaves), but no
    // longer than finish_linger_ms (a frozen agent never polls).
    const absl::Time now = RealClock::Get()->Now();
    const absl::Time grace =
        now + 2 * absl::Milliseconds(config_.poll_wait_ms());
    const absl::Time latest =
        std::max(grace, now + absl::Milliseconds(config_.finish_linger_ms()));
    while (status.ok() && !stop_.WaitFor(kTickPeriod)) {
      coordinator_->Tick().IgnoreError();
      const absl::Time t = RealClock::Get()->Now();
      if (t >= latest ||
          (t >= grace && coordinator_->AllAgentsToldFinished())) {
        FEDGE_LOG(INFO) << (coordinator_->AllAgentsToldFinished()
                                ? "every agent was told the federation "
                                  "finished"
                                : "closing before every agent was told the "
                                  "federation finished (finish_linger_ms)");
        break;
      }
    }
  }
  if (edge_ != nullptr) edge_->Stop();  // Before its RunRound is answered.
  coordinator_->BeginShutdown();
  absl::Status flushed = coordinator_->Flush();
  if (status.ok()) status = flushed;
  absl::Status edge = StopEdgeAggregator();
  if (status.ok()) status = edge;
  // Parked calls are answered; streams still open get a moment to finish,
  // then are cancelled.
  server_->Shutdown(MonotonicDeadline(kShutdownGrace));
  if (http_ != nullptr) http_->Stop();
  return status;
}

absl::Status CoordinatorServer::StartHttp() {
  if (config_.http_address().empty()) return absl::OkStatus();
  HttpServerOptions o;
  o.address = config_.http_address();
  o.insecure = config_.tls().insecure();
  if (!o.insecure) {
    o.tls_cert_path = config_.tls().cert_path();
    o.tls_key_path = config_.tls().key_path();
  }
  o.port_file = config_.state_dir() + "/http_port";
  Coordinator* coordinator = coordinator_.get();
  o.routes["/metrics"] = [coordinator](const HttpRequest&) {
    HttpResponse r;
    r.content_type = std::string(kPrometheusContentType);
    r.body = coordinator->metrics_registry().Render();
    return r;
  };
  AddStatusPageRoutes([coordinator] { return coordinator->Snapshot(); },
                      &o.routes);
  absl::StatusOr<std::unique_ptr<HttpServer>> http =
      HttpServer::Create(std::move(o));
  if (!http.ok()) return Annotate(http.status(), "http_address");
  http_ = *std::move(http);
  FEDGE_LOG(INFO) << "status page at " << (http_->tls() ? "https" : "http")
                  << "://"
                  << config_.http_address().substr(
                         0, config_.http_address().rfind(':'))
                  << ":" << http_->port() << "/ (metrics at /metrics)";
  return absl::OkStatus();
}

absl::Status CoordinatorServer::WriteFinalModel() {
  std::shared_ptr<const PublishedModel> model = coordinator_->latest_model();
  const std::string path = config_.state_dir() + "/final_model.fedge";
  RETURN_IF_ERROR(ml::WriteModelWithSpec(path, model->model,
                                         ml::SpecFromConfig(config_.model())));
  FEDGE_LOG(INFO) << "final model (version " << model->version << ", sha256 "
                  << model->sha256_hex << ") written to " << path;
  return absl::OkStatus();
}

}  // namespace fedge
