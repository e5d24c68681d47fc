#include "server/secagg_round.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/secagg/messages.h"
#include "common/status_macros.h"

namespace fedge {

absl::StatusOr<std::unique_ptr<SecAggRound>> SecAggRound::Create(
    const SecureAggregationOptions& options, std::string session_id,
    std::vector<std::string> agents, const ModelSchema& schema) {
  ASSIGN_OR_RETURN(secagg::SecAggConfig config,
                   SecAggSessionConfig(options, std::move(session_id),
                                       static_cast<int>(agents.size()),
                                       SecAggVectorLength(schema)));
  secagg::SecAggServer::Options server_options;
  server_options.config = config;
  ASSIGN_OR_RETURN(std::unique_ptr<secagg::SecAggServer> server,
                   secagg::SecAggServer::Create(server_options));
  return std::unique_ptr<SecAggRound>(new SecAggRound(
      options, std::move(config), std::move(agents), std::move(server)));
}

SecAggRound::SecAggRound(SecureAggregationOptions options,
                         secagg::SecAggConfig config,
                         std::vector<std::string> agents,
                         std::unique_ptr<secagg::SecAggServer> server)
    : options_(std::move(options)),
      config_(std::move(config)),
      agents_(std::move(agents)),
      server_(std::move(server)) {
  for (size_t i = 0; i < agents_.size(); ++i) {
    ids_[agents_[i]] = static_cast<int>(i) + 1;
  }
}

absl::StatusOr<int> SecAggRound::ClientId(absl::string_view agent) const {
  auto it = ids_.find(agent);
  if (it == ids_.end()) {
    return absl::NotFoundError(
        absl::StrCat(agent, " is not an agent of secure-aggregation session ",
                     config_.session_id));
  }
  return it->second;
}

absl::Status SecAggRound::ForAgent(absl::string_view agent,
                                   absl::Status status) const {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(agent, ": ", status.message()));
}

absl::Status SecAggRound::ReceiveAdvertiseKeys(absl::string_view agent,
                                               absl::string_view message) {
  ASSIGN_OR_RETURN(const int id, ClientId(agent));
  absl::MutexLock lock(&mu_);
  return ForAgent(agent, server_->ReceiveAdvertiseKeys(id, message));
}

absl::Status SecAggRound::CloseAdvertiseKeys() {
  absl::MutexLock lock(&mu_);
  return server_->CloseAdvertiseKeys();
}

absl::StatusOr<std::string> SecAggRound::KeyDirectoryFor(
    absl::string_view agent) const {
  ASSIGN_OR_RETURN(const int id, ClientId(agent));
  absl::MutexLock lock(&mu_);
  return server_->KeyDirectoryFor(id);
}

absl::Status SecAggRound::ReceiveShareKeys(absl::string_view agent,
                                           absl::string_view message) {
  ASSIGN_OR_RETURN(const int id, ClientId(agent));
  absl::MutexLock lock(&mu_);
  return ForAgent(agent, server_->ReceiveShareKeys(id, message));
}

absl::Status SecAggRound::CloseShareKeys() {
  absl::MutexLock lock(&mu_);
  return server_->CloseShareKeys();
}

absl::StatusOr<std::string> SecAggRound::EncryptedSharesFor(
    absl::string_view agent) const {
  ASSIGN_OR_RETURN(const int id, ClientId(agent));
  absl::MutexLock lock(&mu_);
  return server_->EncryptedSharesFor(id);
}

absl::Status SecAggRound::ReceiveMaskedInput(absl::string_view agent,
                                             absl::string_view message) {
  ASSIGN_OR_RETURN(const int id, ClientId(agent));
  absl::MutexLock lock(&mu_);
  return ForAgent(agent, server_->ReceiveMaskedInput(id, message));
}

absl::Status SecAggRound::CloseMaskedInputs() {
  absl::MutexLock lock(&mu_);
  return server_->CloseMaskedInputs();
}

absl::StatusOr<std::string> SecAggRound::UnmaskingRequestFor(
    absl::string_view agent) const {
  ASSIGN_OR_RETURN(const int id, ClientId(agent));
  absl::MutexLock lock(&mu_);
  return server_->UnmaskingRequestFor(id);
}

absl::Status SecAggRound::ReceiveUnmaskingResponse(absl::string_view agent,
                                                   absl::string_view message) {
  ASSIGN_OR_RETURN(const int id, ClientId(agent));
  absl::MutexLock lock(&mu_);
  return ForAgent(agent, server_->ReceiveUnmaskingResponse(id, message));
}

std::vector<std::string> SecAggRound::InputsReceived() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (int id : server_->InputsReceived()) out.push_back(agents_[id - 1]);
  return out;
}

secagg::ServerState SecAggRound::state() const {
  absl::MutexLock lock(&mu_);
  return server_->state();
}

std::vector<std::string> SecAggRound::Awaited() const {
  absl::MutexLock lock(&mu_);
  std::vector<int> expected, answered;
  switch (server_->state()) {
    case secagg::ServerState::kCollectingKeys:
      for (size_t i = 0; i < agents_.size(); ++i) {
        expected.push_back(static_cast<int>(i) + 1);
      }
      answered = server_->KeysAdvertised();
      break;
    case secagg::ServerState::kCollectingShares:
      expected = server_->KeysAdvertised();
      answered = server_->SharesReceived();
      break;
    case secagg::ServerState::kCollectingInputs:
      expected = server_->SharesReceived();
      answered = server_->InputsReceived();
      break;
    case secagg::ServerState::kUnmasking:
      expected = server_->InputsReceived();
      answered = server_->UnmaskingResponders();
      break;
    case secagg::ServerState::kDone:
    case secagg::ServerState::kFailed:
      return {};
  }
  // Both ascending.
  std::vector<std::string> out;
  auto a = answered.begin();
  for (int id : expected) {
    while (a != answered.end() && *a < id) ++a;
    if (a == answered.end() || *a != id) out.push_back(agents_[id - 1]);
  }
  return out;
}

int64_t SecAggRound::MaskedInputBytes() const {
  secagg::MessageContext context;
  context.config_digest = secagg::ConfigDigest(config_);
  context.num_clients = config_.num_clients;
  context.vector_length = config_.vector_length;
  return static_cast<int64_t>(secagg::MaskedInputBytes(context));
}

absl::StatusOr<SecAggSum> SecAggRound::Finish(const ModelState& global) {
  absl::StatusOr<secagg::SecAggResult> result;
  {
    absl::MutexLock lock(&mu_);
    result = server_->Finish();
  }
  if (!result.ok()) return result.status();
  return DecodeSecAggSum(options_, global, result->sum,
                         static_cast<int64_t>(result->clients.size()));
}

}  // namespace fedge
