// RunAgent against an in-process gRPC coordinator on 127.0.0.1 (port 0) in
// simulation mode, with a real LibTorch trainer: join -> fetch -> train ->
// submit -> finished -> leave; then offline Predict from the cached model.
#include "edge_agent/agent_runner.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/checksum.h"
#include "common/ml/model_zoo.h"
#include "common/ml/torch_converters.h"
#include "common/model_codec.h"
#include "common/sha256.h"
#include "common/version.h"
#include "edge_agent/torch_support.h"
#include "fedge/v1/federation.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

ModelState InitialLogreg() {
  ml::ModelSpec spec;
  spec.architecture = "logreg";
  auto net = ml::BuildModel(spec);
  EXPECT_TRUE(net.ok()) << net.status();
  return *ml::ExportState(**net);
}

// A coordinator in simulation mode with one round of one agent.
class OneRoundFederation final : public v1::Federation::Service {
 public:
  OneRoundFederation() : encoding_(EncodeModel(InitialLogreg())) {}

  grpc::Status Join(grpc::ServerContext*, const v1::JoinRequest* request,
                    v1::JoinResponse* response) override {
    absl::MutexLock lock(&mu_);
    join_ = *request;
    response->set_session_token("tok");
    response->set_agent_id(request->agent_id());
    response->set_heartbeat_interval_ms(2000);
    response->mutable_model()->set_architecture("logreg");
    for (int64_t d : {1, 28, 28}) response->mutable_model()->add_input_shape(d);
    response->mutable_model()->set_num_classes(10);
    response->set_partition_index(1);
    response->set_num_partitions(4);
    response->set_partition_method("iid");
    response->set_partition_seed(42);
    return grpc::Status::OK;
  }

  grpc::Status Poll(grpc::ServerContext*, const v1::PollRequest*,
                    v1::PollResponse* response) override {
    absl::MutexLock lock(&mu_);
    response->set_latest_model_version(0);
    response->set_latest_model_sha256(Sha());
    if (submitted_) {
      response->set_finished(true);
      return grpc::Status::OK;
    }
    v1::TrainTask* task = response->mutable_train();
    task->set_round(1);
    task->set_model_version(0);
    task->set_model_sha256(Sha());
    task->set_model_size_bytes(encoding_.size());
    task->mutable_plan()->set_epochs(1);
    task->mutable_plan()->set_batch_size(10);
    task->mutable_plan()->set_learning_rate(0.1);
    task->mutable_plan()->set_seed(3);
    task->set_deadline_unix_ms(absl::ToUnixMillis(absl::Now()) + 60000);
    return grpc::Status::OK;
  }

  grpc::Status FetchModel(grpc::ServerContext*,
                          const v1::FetchModelRequest* request,
                          grpc::ServerWriter<v1::ModelChunk>* writer) override {
    absl::MutexLock lock(&mu_);
    ++fetches_;
    for (size_t offset = 0; offset < encoding_.size(); offset += 4096) {
      v1::ModelChunk chunk;
      chunk.set_version(0);
      chunk.set_total_size_bytes(encoding_.size());
      chunk.set_sha256(Sha());
      chunk.set_offset(offset);
      chunk.set_data(encoding_.substr(offset, 4096));
      writer->Write(chunk);
    }
    return grpc::Status::OK;
  }

  grpc::Status SubmitUpdate(grpc::ServerContext*,
                            grpc::ServerReader<v1::UpdateChunk>* reader,
                            v1::SubmitUpdateResponse*) override {
    absl::MutexLock lock(&mu_);
    v1::UpdateChunk chunk;
    while (reader->Read(&chunk)) {
      if (chunk.has_metadata()) {
        metadata_ = chunk.metadata();
      } else {
        update_ += chunk.data();
      }
    }
    submitted_ = true;
    return grpc::Status::OK;
  }

  grpc::Status Leave(grpc::ServerContext*, const v1::LeaveRequest* request,
                     v1::LeaveResponse*) override {
    absl::MutexLock lock(&mu_);
    left_ = request->session_token() == "tok";
    return grpc::Status::OK;
  }

  std::string Sha() const { return ToHex(Sha256Of(encoding_)); }

  const std::string encoding_;
  absl::Mutex mu_;
  v1::JoinRequest join_;
  int fetches_ = 0;
  bool submitted_ = false;
  v1::UpdateMetadata metadata_;
  std::string update_;
  bool left_ = false;
};

class AgentRunnerTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        absl::StrCat(testing::TempDir(), "/fedge_agent_runner_test.", getpid());
    std::filesystem::remove_all(dir_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  v1::AgentConfig Config() const {
    v1::AgentConfig c;
    c.set_coordinator(absl::StrCat("127.0.0.1:", port_));
    c.set_state_dir(dir_);
    c.mutable_tls()->set_insecure(true);
    c.mutable_data()->set_source("synthetic");
    c.mutable_data()->set_synthetic_train_examples(400);
    c.mutable_data()->set_synthetic_test_examples(50);
    c.set_give_up_after_ms(20000);
    return c;
  }

  std::string dir_;
  int port_ = 0;
  OneRoundFederation service_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(AgentRunnerTest, OneRound_ThenPredictsOffline) {
  ASSERT_TRUE(RunAgent(Config()).ok());
  {
    absl::MutexLock lock(&service_.mu_);
    EXPECT_EQ(service_.join_.num_examples(), 400);  // Before the partition.
    // The version the coordinator's build_info reports too.
    EXPECT_EQ(service_.join_.agent_version(),
              absl::StrCat("fedge-agent/", kFedgeVersion));
    EXPECT_EQ(service_.fetches_, 1);
    EXPECT_EQ(service_.metadata_.round(), 1);
    EXPECT_EQ(service_.metadata_.num_examples(), 100);  // Partition 1 of 4.
    EXPECT_EQ(service_.metadata_.total_size_bytes(),
              static_cast<int64_t>(service_.update_.size()));
    EXPECT_EQ(service_.metadata_.xxh3_128(),
              ToHex(Xxh3_128Of(service_.update_)));
    absl::StatusOr<ModelState> delta = DecodeModel(service_.update_);
    ASSERT_TRUE(delta.ok()) << delta.status();
    EXPECT_TRUE(CheckSameSchema(InitialLogreg(), *delta).ok());
    EXPECT_TRUE(service_.left_);
  }
  server_->Shutdown();  // Prediction needs no coordinator.

  PredictOptions options;
  options.state_dir = dir_;
  options.data = Config().data();
  options.limit = 20;
  std::FILE* out = std::tmpfile();
  absl::StatusOr<PredictSummary> summary = Predict(options, out);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->model_version, 0);
  EXPECT_EQ(summary->model_sha256, service_.Sha());
  EXPECT_EQ(summary->num_examples, 20);
  EXPECT_GE(summary->accuracy, 0.0);
  EXPECT_LE(summary->accuracy, 1.0);
  std::rewind(out);
  std::string text(1 << 16, '\0');
  text.resize(std::fread(text.data(), 1, text.size(), out));
  std::fclose(out);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 21);
  EXPECT_THAT(text, HasSubstr("index\tpredicted\tlabel\n0\t"));
}

TEST_F(AgentRunnerTest, Predict_NoAgentState_NotFound) {
  PredictOptions options;
  options.state_dir = dir_;
  options.data = Config().data();
  absl::StatusOr<PredictSummary> summary = Predict(options, stdout);
  EXPECT_EQ(summary.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(AgentRunnerTest, BadConfig_InvalidArgumentNamingTheField) {
  v1::AgentConfig c = Config();
  c.set_num_partitions(2);
  c.set_partition_index(2);
  const absl::Status s = RunAgent(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("num_partitions"));
}

}  // namespace
}  // namespace fedge
