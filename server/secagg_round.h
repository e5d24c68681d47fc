// SecAggRound: the server's half of one round's secure aggregation, for
// fedge-sim and the coordinator alike (no transport): the round's session
// (common/secagg_update.h's SecAggSessionConfig), the mapping of the
// round's agents to client ids, and the four stages of
// secagg::SecAggServer by agent id, serialized under one lock. Finish()
// turns the dequantized sum into a SecAggSum, which
// RoundAccumulator::AddSum folds into the strategy, so a secure round closes
// through the same RoundAccumulator::Close as a plain one.
//
// Stages (server.h has the protocol's rules): the driver hands in each
// agent's message, closes a stage when every expected agent answered or its
// deadline passed, and fetches what each agent gets next. An agent that
// stops answering after sharing its keys is recovered while each
// neighbourhood keeps `threshold` survivors; below that, a Close* or
// Finish fails with ABORTED and the round must be abandoned (no sum).
//
// Memory: the session's keys and shares (O(agents x neighbours)) and one
// running sum of the vector (O(model)): each masked input is added as it
// arrives and not kept.
//
// Thread-safe.
#ifndef FEDGE_SERVER_SECAGG_ROUND_H_
#define FEDGE_SERVER_SECAGG_ROUND_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/secagg/server.h"
#include "common/secagg_update.h"
#include "common/tensor_buffer.h"

namespace fedge {

class SecAggRound {
 public:
  // A round of `agents` (distinct ids; client id i + 1 for agents[i]) for
  // a model of `schema`. INVALID_ARGUMENT as SecAggSessionConfig.
  static absl::StatusOr<std::unique_ptr<SecAggRound>> Create(
      const SecureAggregationOptions& options, std::string session_id,
      std::vector<std::string> agents, const ModelSchema& schema);

  const secagg::SecAggConfig& config() const { return config_; }
  const SecureAggregationOptions& options() const { return options_; }
  const std::vector<std::string>& agents() const { return agents_; }
  // The client id of `agent` in this round; NOT_FOUND when not selected.
  absl::StatusOr<int> ClientId(absl::string_view agent) const;

  // Stage 0: public keys.
  absl::Status ReceiveAdvertiseKeys(absl::string_view agent,
                                    absl::string_view message);
  absl::Status CloseAdvertiseKeys();
  absl::StatusOr<std::string> KeyDirectoryFor(absl::string_view agent) const;
  // Stage 1: encrypted shares.
  absl::Status ReceiveShareKeys(absl::string_view agent,
                                absl::string_view message);
  absl::Status CloseShareKeys();
  absl::StatusOr<std::string> EncryptedSharesFor(absl::string_view agent) const;
  // Stage 2: masked inputs (added into the running sum at once).
  absl::Status ReceiveMaskedInput(absl::string_view agent,
                                  absl::string_view message);
  absl::Status CloseMaskedInputs();
  absl::StatusOr<std::string> UnmaskingRequestFor(
      absl::string_view agent) const;
  // Stage 3: shares of the survivors' self masks and the dropped agents'
  // masking keys.
  absl::Status ReceiveUnmaskingResponse(absl::string_view agent,
                                        absl::string_view message);

  // The agents whose masked input was received (after CloseMaskedInputs:
  // the ones the sum will hold).
  std::vector<std::string> InputsReceived() const;

  // Where the session is (secagg::ServerState: collecting keys, shares,
  // inputs, unmasking; done; failed).
  secagg::ServerState state() const;
  // The agents the open stage still waits for: those that completed the
  // previous stage (all agents for the keys) and have not sent this one's
  // message. Empty when done or failed.
  std::vector<std::string> Awaited() const;
  // The exact size of an agent's masked-input message in this session.
  int64_t MaskedInputBytes() const;
  // Removes the masks and decodes the sum for a model shaped like `global`
  // (whose int64 tensors it takes). ABORTED when too few agents answered
  // (the round must be abandoned); call once.
  absl::StatusOr<SecAggSum> Finish(const ModelState& global);

 private:
  SecAggRound(SecureAggregationOptions options, secagg::SecAggConfig config,
              std::vector<std::string> agents,
              std::unique_ptr<secagg::SecAggServer> server);

  // Wraps a server status with the agent's id.
  absl::Status ForAgent(absl::string_view agent, absl::Status status) const;

  const SecureAggregationOptions options_;
  const secagg::SecAggConfig config_;
  const std::vector<std::string> agents_;
  absl::flat_hash_map<std::string, int> ids_;
  mutable absl::Mutex mu_;
  std::unique_ptr<secagg::SecAggServer> server_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedge

#endif  // FEDGE_SERVER_SECAGG_ROUND_H_
