#include "server/coordinator_server.h"

#include <fcntl.h>
#include <unistd.h>

#include <ATen/Parallel.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/data/data_source.h"
#include "common/file_util.h"
#include "common/fl_config.h"
#include "common/logging.h"
#include "common/ml/torch_converters.h"
#include "common/ml/torch_trainer.h"
#include "common/net/credentials.h"
#include "common/status_macros.h"
#include "google/protobuf/text_format.h"

namespace fedge {
namespace {

constexpr absl::Duration kTickPeriod = absl::Milliseconds(5);

// Evaluates on the eval_data test split; the datasets live as long as it.
class CentralEvaluator final : public LocalTrainer {
 public:
  static absl::StatusOr<std::unique_ptr<LocalTrainer>> Create(
      const v1::DataConfig& data_config, const ml::ModelSpec& spec) {
    auto self = std::unique_ptr<CentralEvaluator>(new CentralEvaluator());
    ASSIGN_OR_RETURN(self->data_, LoadData(data_config, /*test_only=*/true));
    FEDGE_LOG(INFO) << "central evaluation on " << self->data_.description;
    ml::TorchTrainerOptions options;
    options.model = spec;
    options.train = &self->data_.test;
    options.eval = &self->data_.test;
    ASSIGN_OR_RETURN(self->trainer_, ml::TorchTrainer::Create(options));
    return std::unique_ptr<LocalTrainer>(std::move(self));
  }
  absl::StatusOr<TrainOutput> Train(const ModelState&, const TrainPlan&,
                                    absl::Span<const int64_t>) override {
    return absl::UnimplementedError("the central evaluator does not train");
  }
  absl::StatusOr<EvalMetrics> Evaluate(const ModelState& weights) override {
    return trainer_->Evaluate(weights);
  }

 private:
  CentralEvaluator() = default;
  LoadedData data_;
  std::unique_ptr<ml::TorchTrainer> trainer_;
};

absl::StatusOr<ModelState> InitialModel(const ml::ModelSpec& spec) {
  ASSIGN_OR_RETURN(std::shared_ptr<ml::Net> net, ml::BuildModel(spec));
  return ml::ExportState(*net);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Create(
    const v1::CoordinatorConfig& config) {
  RETURN_IF_ERROR(ValidateCoordinatorConfig(config));
  RETURN_IF_ERROR(MakeDirs(config.state_dir()));
  at::set_num_threads(1);
  auto self = std::unique_ptr<CoordinatorServer>(new CoordinatorServer());
  self->config_ = config;
  CoordinatorOptions options;
  options.config = config;
  options.clock = RealClock::Get();
  const ml::ModelSpec spec = ml::SpecFromConfig(config.model());
  options.model_spec = ml::SpecToProto(spec);
  ASSIGN_OR_RETURN(options.initial_model, InitialModel(spec));
  if (config.has_eval_data()) {
    ASSIGN_OR_RETURN(options.evaluator,
                     CentralEvaluator::Create(config.eval_data(), spec));
  }
  ASSIGN_OR_RETURN(self->coordinator_, Coordinator::Create(std::move(options)));
  self->federation_ = std::make_unique<FederationService>(
      self->coordinator_.get(), config.chunk_bytes());
  self->operator_ = std::make_unique<OperatorService>(self->coordinator_.get());
  ASSIGN_OR_RETURN(auto credentials, MakeServerCredentials(config.tls()));
  grpc::ServerBuilder builder;
  ConfigureServerBuilder(builder);
  builder.AddListeningPort(config.listen_address(), credentials, &self->port_);
  builder.RegisterService(self->federation_.get());
  builder.RegisterService(self->operator_.get());
  self->server_ = builder.BuildAndStart();
  if (self->server_ == nullptr || self->port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on '", config.listen_address(),
        "' (address in use or invalid? set --listen_address)"));
  }
  RETURN_IF_ERROR(WriteStringAtomically(config.state_dir() + "/port",
                                      absl::StrCat(self->port_, "\n")));
  FEDGE_LOG(INFO) << "fedge-coordinator listening on port " << self->port_
                  << (config.tls().insecure() ? " (INSECURE: plain text)"
                                              : " (TLS)");
  return self;
}

CoordinatorServer::~CoordinatorServer() {
  if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now()));
}

void CoordinatorServer::Shutdown() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
}

absl::Status CoordinatorServer::Run() {
  absl::Status status;
  while (!stop_.WaitForNotificationWithTimeout(kTickPeriod)) {
    absl::StatusOr<std::vector<RoundRecord>> rounds = coordinator_->Tick();
    if (!rounds.ok()) {
      status = rounds.status();
      break;
    }
    if (coordinator_->done() && config_.exit_when_done()) break;
  }
  if (status.ok() && coordinator_->done()) status = WriteFinalModel();
  // Let agents see "finished" on their next poll before the port closes.
  const absl::Time grace = absl::Now() + absl::Milliseconds(
      coordinator_->done() ? 2 * config_.poll_wait_ms() : 0);
  while (absl::Now() < grace && !stop_.HasBeenNotified()) {
    coordinator_->Tick().IgnoreError();
    absl::SleepFor(kTickPeriod);
  }
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  return status;
}

absl::Status CoordinatorServer::WriteFinalModel() {
  std::shared_ptr<const PublishedModel> model = coordinator_->latest_model();
  const std::string path = config_.state_dir() + "/final_model.fedge";
  ModelEncoder encoder(model->model);
  RETURN_IF_ERROR(WriteFileAtomically(
      path, [&encoder](std::string* out) { return encoder.Next(out); }));
  std::string spec;
  google::protobuf::TextFormat::PrintToString(
      ml::SpecToProto(ml::SpecFromConfig(config_.model())), &spec);
  RETURN_IF_ERROR(
      WriteStringAtomically(config_.state_dir() + "/final_model.spec", spec));
  FEDGE_LOG(INFO) << "final model (version " << model->version << ", sha256 "
                  << model->sha256_hex << ") written to " << path;
  return absl::OkStatus();
}

}  // namespace fedge
