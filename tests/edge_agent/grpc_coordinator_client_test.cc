#include "edge_agent/grpc_coordinator_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/model_codec.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ModelState TestModel() {
  std::vector<float> values(50);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.5f * i;
  std::vector<TensorBuffer> tensors;
  tensors.push_back(*TensorBuffer::FromFloats("fc.weight", {5, 10}, values));
  tensors.push_back(*TensorBuffer::FromFloats("fc.bias", {5}, {1, 2, 3, 4, 5}));
  return ModelState(std::move(tensors));
}

// An in-process coordinator with knobs to misbehave.
class FakeFederation final : public v1::Federation::Service {
 public:
  enum class Tamper { kNone, kBadHash, kTruncate, kBadOffset };

  std::string encoding = EncodeModel(TestModel());
  int64_t version = 3;
  size_t chunk_bytes = 7;
  Tamper tamper = Tamper::kNone;
  grpc::Status status = grpc::Status::OK;  // Returned by every method.

  v1::JoinRequest last_join;
  v1::FetchModelRequest last_fetch;
  v1::UpdateMetadata last_metadata;
  std::string received_update;
  int update_chunks = 0;
  bool answer_duplicate = false;  // SubmitUpdateResponse.duplicate.

  grpc::Status Join(grpc::ServerContext*, const v1::JoinRequest* request,
                    v1::JoinResponse* response) override {
    last_join = *request;
    response->set_session_token("token-1");
    response->mutable_model()->set_architecture("logreg");
    return status;
  }

  grpc::Status Poll(grpc::ServerContext* context, const v1::PollRequest*,
                    v1::PollResponse* response) override {
    poll_time_left = absl::FromChrono(context->deadline()) - absl::Now();
    response->set_wait_retry_after_ms(5);
    return status;
  }
  // What was left of the last Poll's deadline when it arrived.
  absl::Duration poll_time_left;

  grpc::Status FetchModel(grpc::ServerContext*,
                          const v1::FetchModelRequest* request,
                          grpc::ServerWriter<v1::ModelChunk>* writer) override {
    last_fetch = *request;
    if (!status.ok()) return status;
    std::string sha = ToHex(Sha256Of(encoding));
    if (tamper == Tamper::kBadHash) sha = ToHex(Sha256Of("other"));
    size_t end = encoding.size();
    if (tamper == Tamper::kTruncate) end -= 3;
    for (size_t offset = 0; offset < end; offset += chunk_bytes) {
      v1::ModelChunk chunk;
      chunk.set_version(version);
      chunk.set_total_size_bytes(encoding.size());
      chunk.set_sha256(sha);
      chunk.set_offset(offset +
                       (tamper == Tamper::kBadOffset && offset ? 1 : 0));
      chunk.set_data(
          encoding.substr(offset, std::min(chunk_bytes, end - offset)));
      writer->Write(chunk);
    }
    return grpc::Status::OK;
  }

  grpc::Status SubmitUpdate(grpc::ServerContext*,
                            grpc::ServerReader<v1::UpdateChunk>* reader,
                            v1::SubmitUpdateResponse* response) override {
    v1::UpdateChunk chunk;
    while (reader->Read(&chunk)) {
      if (chunk.has_metadata()) {
        last_metadata = chunk.metadata();
      } else {
        received_update += chunk.data();
        ++update_chunks;
      }
    }
    response->set_duplicate(answer_duplicate);
    return status;
  }

  grpc::Status Leave(grpc::ServerContext* context, const v1::LeaveRequest*,
                     v1::LeaveResponse*) override {
    leave_time_left = absl::FromChrono(context->deadline()) - absl::Now();
    return status;
  }
  // What was left of the last Leave's deadline when it arrived.
  absl::Duration leave_time_left;
};

class GrpcCoordinatorClientTest : public testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override { server_->Shutdown(); }

  std::unique_ptr<GrpcCoordinatorClient> MakeClient(LinkProfile link = {}) {
    GrpcCoordinatorClientOptions options;
    options.chunk_bytes = 16;
    options.link = link;
    options.clock = &clock_;
    options.sleep = [this](absl::Duration d) {
      sleeps_.push_back(d);
      clock_.Advance(d);
    };
    return GrpcCoordinatorClient::CreateForChannel(
        options, server_->InProcessChannel(grpc::ChannelArguments()));
  }

  std::string Sha() const { return ToHex(Sha256Of(service_.encoding)); }

  FakeFederation service_;
  std::unique_ptr<grpc::Server> server_;
  FakeClock clock_;
  std::vector<absl::Duration> sleeps_;
};

TEST_F(GrpcCoordinatorClientTest, Join_RoundTrips) {
  auto client = MakeClient();
  v1::JoinRequest request;
  request.set_agent_id("phone-1");
  request.set_num_examples(600);
  absl::StatusOr<v1::JoinResponse> response = client->Join(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->session_token(), "token-1");
  EXPECT_EQ(service_.last_join.agent_id(), "phone-1");
  EXPECT_EQ(service_.last_join.num_examples(), 600);
}

TEST_F(GrpcCoordinatorClientTest, ErrorCodes_ReachTheCaller) {
  auto client = MakeClient();
  service_.status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "who?");
  absl::StatusOr<v1::PollResponse> poll = client->Poll(v1::PollRequest());
  EXPECT_EQ(poll.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(poll.status().message(), HasSubstr("who?"));
  service_.status = grpc::Status(grpc::StatusCode::NOT_FOUND, "gone");
  EXPECT_EQ(client->FetchModel("t", 3, "").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client->Leave("t").code(), absl::StatusCode::kNotFound);
}

// Leave is a stopping agent's last call: a hung coordinator holds it at
// most leave_timeout (2 s), not call_timeout (30 s).
TEST_F(GrpcCoordinatorClientTest, Leave_HasItsOwnShortDeadline) {
  auto client = MakeClient();
  ASSERT_TRUE(client->Leave("t").ok());
  EXPECT_GT(service_.leave_time_left, absl::ZeroDuration());
  // (gRPC converts the deadline between clocks: up to a millisecond more.)
  EXPECT_LE(service_.leave_time_left,
            absl::Seconds(2) + absl::Milliseconds(50));
}

// After BeginStop() a call still goes out (a trained update's last try),
// but a hung coordinator holds it at most leave_timeout.
TEST_F(GrpcCoordinatorClientTest, AfterBeginStop_CallsGetLeaveTimeoutAtMost) {
  auto client = MakeClient();
  ASSERT_TRUE(client->Poll(v1::PollRequest()).ok());
  EXPECT_GT(service_.poll_time_left, absl::Seconds(20));  // call_timeout.
  client->BeginStop();
  ASSERT_TRUE(client->Poll(v1::PollRequest()).ok());
  EXPECT_GT(service_.poll_time_left, absl::ZeroDuration());
  EXPECT_LE(service_.poll_time_left, absl::Seconds(2) + absl::Milliseconds(50));
}

TEST_F(GrpcCoordinatorClientTest, FetchModel_DecodesChunkedStream) {
  auto client = MakeClient();
  absl::StatusOr<ModelState> model = client->FetchModel("token-1", 3, Sha());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(EncodeModel(*model), service_.encoding);
  EXPECT_EQ(service_.last_fetch.session_token(), "token-1");
  EXPECT_EQ(service_.last_fetch.version(), 3);
  EXPECT_EQ(service_.last_fetch.offset(), 0);
}

TEST_F(GrpcCoordinatorClientTest, FetchModel_AnnouncedHashMismatch_DataLoss) {
  auto client = MakeClient();
  service_.tamper = FakeFederation::Tamper::kBadHash;
  absl::StatusOr<ModelState> model = client->FetchModel("t", 3, "");
  EXPECT_EQ(model.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(model.status().message(), HasSubstr("SHA-256"));
}

TEST_F(GrpcCoordinatorClientTest, FetchModel_ExpectedHashMismatch_DataLoss) {
  auto client = MakeClient();
  const std::string other = ToHex(Sha256Of("another model"));
  EXPECT_EQ(client->FetchModel("t", 3, other).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(GrpcCoordinatorClientTest, FetchModel_Truncated_DataLoss) {
  auto client = MakeClient();
  service_.tamper = FakeFederation::Tamper::kTruncate;
  absl::StatusOr<ModelState> model = client->FetchModel("t", 3, Sha());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(model.status().message(), HasSubstr("truncated"));
}

TEST_F(GrpcCoordinatorClientTest, FetchModel_OffsetGap_DataLoss) {
  auto client = MakeClient();
  service_.tamper = FakeFederation::Tamper::kBadOffset;
  EXPECT_EQ(client->FetchModel("t", 3, Sha()).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(GrpcCoordinatorClientTest, FetchModel_OtherVersion_DataLoss) {
  auto client = MakeClient();
  EXPECT_EQ(client->FetchModel("t", 4, Sha()).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_TRUE(client->FetchModel("t", -1, Sha()).ok());  // -1: the newest.
}

TEST_F(GrpcCoordinatorClientTest, SubmitUpdate_MetadataThenChunks) {
  auto client = MakeClient();
  const ModelState delta = TestModel();
  v1::UpdateMetadata metadata;
  metadata.set_session_token("token-1");
  metadata.set_round(4);
  metadata.set_upload_id("abc");
  absl::StatusOr<v1::SubmitUpdateResponse> response =
      client->SubmitUpdate(metadata, delta, nullptr);
  ASSERT_TRUE(response.ok()) << response.status();

  const std::string encoding = EncodeModel(delta);
  EXPECT_EQ(service_.last_metadata.round(), 4);
  EXPECT_EQ(service_.last_metadata.upload_id(), "abc");
  EXPECT_EQ(service_.last_metadata.total_size_bytes(),
            static_cast<int64_t>(encoding.size()));
  EXPECT_EQ(service_.last_metadata.xxh3_128(), ToHex(ModelChecksum(delta)));
  EXPECT_EQ(service_.last_metadata.sha256(), "");
  EXPECT_EQ(service_.received_update, encoding);
  EXPECT_EQ(service_.update_chunks,
            static_cast<int>((encoding.size() + 15) / 16));
  EXPECT_FALSE(response->duplicate());  // An empty answer parses.
  service_.answer_duplicate = true;
  response = client->SubmitUpdate(metadata, delta, nullptr);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(response->duplicate());
}

TEST_F(GrpcCoordinatorClientTest, SubmitUpdate_Refused_Aborted) {
  auto client = MakeClient();
  service_.status = grpc::Status(grpc::StatusCode::ABORTED, "round closed");
  EXPECT_EQ(client->SubmitUpdate(v1::UpdateMetadata(), TestModel(), nullptr)
                .status()
                .code(),
            absl::StatusCode::kAborted);
}

TEST_F(GrpcCoordinatorClientTest, DeviceProfile_LatencyAndBandwidthSlept) {
  LinkProfile link;
  link.added_latency = absl::Milliseconds(30);
  link.bytes_per_second = 100;
  auto client = MakeClient(link);
  ASSERT_TRUE(client->Poll(v1::PollRequest()).ok());
  EXPECT_THAT(sleeps_, ElementsAre(absl::Milliseconds(30)));

  sleeps_.clear();
  ASSERT_TRUE(client->FetchModel("t", 3, Sha()).ok());
  absl::Duration total;
  for (absl::Duration d : sleeps_) total += d;
  const absl::Duration transfer =
      absl::Seconds(static_cast<double>(service_.encoding.size()) / 100);
  EXPECT_GE(total, transfer);  // Latency plus the capped transfer.
  EXPECT_LE(total, transfer + absl::Milliseconds(31));
}

// A port on 127.0.0.1 where nothing listens (it was free a moment ago).
int ClosedPort() {
  int port = 0;
  FakeFederation service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  EXPECT_GT(port, 0);
  server->Shutdown();
  return port;
}

absl::StatusOr<std::unique_ptr<GrpcCoordinatorClient>> PlainClient(
    int port, absl::Duration connect_timeout = absl::Seconds(10)) {
  GrpcCoordinatorClientOptions options;
  options.target = "127.0.0.1:" + std::to_string(port);
  options.tls.set_insecure(true);
  options.call_timeout = absl::Seconds(30);
  options.connect_timeout = connect_timeout;
  return GrpcCoordinatorClient::Create(options);
}

TEST(GrpcCoordinatorClientTcpTest, NothingListening_FailsFastWithTheCause) {
  auto client = PlainClient(ClosedPort());
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Time start = absl::Now();
  const absl::Status s = (*client)->Poll(v1::PollRequest()).status();
  // Not after call_timeout (30 s), and not just "Deadline Exceeded".
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr("cannot reach the coordinator"));
  EXPECT_THAT(s.message(), HasSubstr("Connection refused"));
}

TEST(GrpcCoordinatorClientTcpTest, ConnectBudget_BoundsTheWait) {
  auto client = PlainClient(ClosedPort());
  ASSERT_TRUE(client.ok()) << client.status();
  (*client)->SetConnectBudget(absl::ZeroDuration());
  // The channel still fails from the first call: later calls wait for it
  // to connect, here not at all.
  (*client)->Poll(v1::PollRequest()).IgnoreError();
  const absl::Time start = absl::Now();
  EXPECT_EQ((*client)->Poll(v1::PollRequest()).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

// A stopping agent's heartbeat thread is joined: a heartbeat waiting for
// the channel (up to call_timeout, 30 s) is cancelled, or not sent when it
// comes after BeginStop().
TEST(GrpcCoordinatorClientTcpTest,
     BeginStop_CancelsHeartbeatWaitingForChannel) {
  auto client = PlainClient(ClosedPort());
  ASSERT_TRUE(client.ok()) << client.status();
  absl::Status heartbeat;
  std::thread thread([&] { heartbeat = (*client)->Heartbeat("t"); });
  // Most likely waiting for the channel by now; CANCELLED either way.
  absl::SleepFor(absl::Milliseconds(300));
  (*client)->BeginStop();
  thread.join();
  EXPECT_EQ(heartbeat.code(), absl::StatusCode::kCancelled) << heartbeat;
}

// A call after BeginStop() (a trained update's last try, after the stop
// came during training) does not wait connect_timeout for a coordinator
// that went away.
TEST(GrpcCoordinatorClientTcpTest, BeginStop_LaterCallsDoNotWaitToConnect) {
  auto client = PlainClient(ClosedPort(), absl::Seconds(60));
  ASSERT_TRUE(client.ok()) << client.status();
  // The channel fails from now on: a call would wait for it to connect.
  (*client)->Poll(v1::PollRequest()).IgnoreError();
  (*client)->BeginStop();
  const absl::Time start = absl::Now();
  EXPECT_EQ((*client)->Poll(v1::PollRequest()).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));  // Not 60 s.
}

TEST(GrpcCoordinatorClientTcpTest, CoordinatorStartsLater_NextCallConnects) {
  const int port = ClosedPort();
  auto client = PlainClient(port);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->Poll(v1::PollRequest()).status().code(),
            absl::StatusCode::kUnavailable);
  FakeFederation service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  // The call waits for gRPC's next reconnection (at most 2 s away).
  const absl::Time start = absl::Now();
  EXPECT_TRUE((*client)->Poll(v1::PollRequest()).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  server->Shutdown();
}

TEST(GrpcCoordinatorClientCreateTest, TlsWithoutCa_InvalidArgument) {
  GrpcCoordinatorClientOptions options;
  EXPECT_EQ(GrpcCoordinatorClient::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.tls.set_insecure(true);
  EXPECT_TRUE(GrpcCoordinatorClient::Create(options).ok());
}

}  // namespace
}  // namespace fedge
