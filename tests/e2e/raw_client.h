// A hand-driven client of the real coordinator (one connection), so that
// e2e tests can send what a real agent never would: stale, duplicate,
// malformed or silent uploads, stolen sessions, forged tokens.
#ifndef FEDGE_TESTS_E2E_RAW_CLIENT_H_
#define FEDGE_TESTS_E2E_RAW_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/checksum.h"
#include "common/model_codec.h"
#include "common/net/credentials.h"
#include "common/net/grpc_status.h"
#include "common/sha256.h"
#include "fedge/v1/federation.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/e2e/process.h"

namespace fedge::testing {

class RawClient {
 public:
  // `operator_token_path`: the coordinator's operator token, for Status().
  RawClient(int port, const v1::TlsConfig& tls,
            std::string operator_token_path = "")
      : operator_token_path_(std::move(operator_token_path)) {
    auto creds = MakeChannelCredentials(tls);
    EXPECT_TRUE(creds.ok()) << creds.status();
    channel_ = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                         *creds, MakeChannelArguments(tls, 0));
    stub_ = v1::Federation::NewStub(channel_);
    operator_ = v1::Operator::NewStub(channel_);
  }

  // Joins as `id`, declaring `num_examples` (0: none).
  absl::Status Join(const std::string& id, int64_t num_examples = 0) {
    v1::JoinRequest req;
    req.set_agent_id(id);
    req.set_num_examples(num_examples);
    v1::JoinResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    absl::Status s = FromGrpcStatus(stub_->Join(&ctx, req, &resp));
    token_ = resp.session_token();
    agent_id_ = resp.agent_id();
    return s;
  }

  // Joins with `req` as it is (tokens, keys); the response in `out`.
  absl::Status JoinWith(const v1::JoinRequest& req,
                        v1::JoinResponse* out = nullptr) {
    v1::JoinResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    absl::Status s = FromGrpcStatus(stub_->Join(&ctx, req, &resp));
    if (s.ok()) {
      token_ = resp.session_token();
      agent_id_ = resp.agent_id();
    }
    if (out != nullptr) *out = resp;
    return s;
  }
  // One heartbeat with the current session.
  absl::Status Heartbeat() {
    v1::HeartbeatRequest req;
    req.set_session_token(token_);
    v1::HeartbeatResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return FromGrpcStatus(stub_->Heartbeat(&ctx, req, &resp));
  }
  // One poll that answers at once.
  absl::Status PollNow() {
    v1::PollRequest req;
    req.set_session_token(token_);
    req.set_cached_model_version(-1);
    req.set_no_wait(true);
    v1::PollResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return FromGrpcStatus(stub_->Poll(&ctx, req, &resp));
  }
  const std::string& session() const { return token_; }
  void UseSession(const std::string& token) { token_ = token; }

  // Polls until a train task for a round after `after_round` arrives (or
  // `timeout` passes).
  std::optional<v1::TrainTask> WaitForTask(
      int64_t after_round = 0, absl::Duration timeout = absl::Seconds(60)) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      v1::PollRequest req;
      req.set_session_token(token_);
      req.set_cached_model_version(-1);
      v1::PollResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
      if (!stub_->Poll(&ctx, req, &resp).ok()) return std::nullopt;
      if (resp.has_train() && resp.train().round() > after_round) {
        return resp.train();
      }
    }
    return std::nullopt;
  }

  // The chunks of version `version` from byte `offset` on, as sent.
  absl::StatusOr<std::vector<v1::ModelChunk>> FetchChunks(int64_t version,
                                                          int64_t offset) {
    v1::FetchModelRequest req;
    req.set_session_token(token_);
    req.set_version(version);
    req.set_offset(offset);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    auto reader = stub_->FetchModel(&ctx, req);
    std::vector<v1::ModelChunk> chunks(1);
    while (reader->Read(&chunks.back())) chunks.emplace_back();
    chunks.pop_back();
    if (auto s = FromGrpcStatus(reader->Finish()); !s.ok()) return s;
    return chunks;
  }

  // Downloads version `version`, checking its size and SHA-256 (given in
  // `sha` when not null).
  absl::StatusOr<ModelState> Fetch(int64_t version,
                                   std::string* sha = nullptr) {
    std::string digest;
    if (sha == nullptr) sha = &digest;
    v1::FetchModelRequest req;
    req.set_session_token(token_);
    req.set_version(version);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    auto reader = stub_->FetchModel(&ctx, req);
    v1::ModelChunk chunk;
    ModelDecoder decoder;
    Sha256 hash;
    int64_t total = -1, received = 0;
    while (reader->Read(&chunk)) {
      if (total < 0) {
        total = chunk.total_size_bytes();
        *sha = chunk.sha256();
      }
      EXPECT_LE(chunk.data().size(), 1u << 20);  // Chunked, 1 MiB max.
      received += chunk.data().size();
      hash.Update(chunk.data());
      if (auto s = decoder.Feed(chunk.data()); !s.ok()) return s;
    }
    if (auto s = FromGrpcStatus(reader->Finish()); !s.ok()) return s;
    EXPECT_EQ(received, total);
    EXPECT_EQ(ToHex(hash.Finish()), *sha);
    return decoder.Finish();
  }

  // Uploads `bytes` (an encoded delta) with `m` (token, sizes filled here
  // unless already set).
  absl::StatusOr<v1::SubmitUpdateResponse> Submit(v1::UpdateMetadata m,
                                                  const std::string& bytes) {
    m.set_session_token(token_);
    if (m.total_size_bytes() == 0) m.set_total_size_bytes(bytes.size());
    if (m.sha256().empty() && m.xxh3_128().empty()) {
      m.set_xxh3_128(ToHex(Xxh3_128Of(bytes)));  // As agents do.
    }
    v1::SubmitUpdateResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    auto writer = stub_->SubmitUpdate(&ctx, &resp);
    v1::UpdateChunk first;
    *first.mutable_metadata() = m;
    writer->Write(first);
    for (size_t at = 0; at < bytes.size(); at += 1 << 20) {
      v1::UpdateChunk c;
      c.set_data(bytes.substr(at, 1 << 20));
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    absl::Status s = FromGrpcStatus(writer->Finish());
    if (!s.ok()) return s;
    return resp;
  }

  v1::GetStatusResponse Status() {
    v1::GetStatusResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    ctx.AddMetadata("authorization",
                    "Bearer " + std::string(absl::StripAsciiWhitespace(
                                    ReadFileOrEmpty(operator_token_path_))));
    operator_->GetStatus(&ctx, v1::GetStatusRequest(), &resp);
    return resp;
  }

 protected:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Federation::Stub> stub_;
  std::unique_ptr<v1::Operator::Stub> operator_;
  std::string operator_token_path_;
  std::string token_, agent_id_;
};

inline v1::TlsConfig ClientTls(const std::string& certs,
                               const std::string& agent) {
  v1::TlsConfig tls;
  tls.set_ca_path(certs + "/ca.pem");
  if (!agent.empty()) {
    tls.set_cert_path(certs + "/" + agent + ".pem");
    tls.set_key_path(certs + "/" + agent + ".key");
  }
  return tls;
}

// A delta shaped like `model` with every value `v`.
inline ModelState Filled(const ModelState& model, float v) {
  ModelState d = model.Clone();
  for (size_t i = 0; i < d.size(); ++i) {
    if (d.tensor(i).dtype() != DType::kFloat32) continue;
    for (float& x : d.mutable_tensor(i).mutable_floats()) x = v;
  }
  return d;
}

}  // namespace fedge::testing

#endif  // FEDGE_TESTS_E2E_RAW_CLIENT_H_
