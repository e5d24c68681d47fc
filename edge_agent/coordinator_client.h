// CoordinatorClient: the agent's session with the coordinator, as the agent
// loop (edge_agent/agent.h) sees it. The loop speaks only to this interface,
// so the transport (gRPC today: grpc_coordinator_client.h) can change without
// touching it, and tests drive the loop with a scripted fake.
//
// Call order:
//   Join -> ( Poll -> [FetchModel] -> (train) -> SubmitUpdate
//                                  or ReportFailure )* -> Leave
// Poll doubles as the heartbeat; while the agent is busy between two polls
// (fetching, training, uploading) it calls Heartbeat from a thread of its
// own, at least every JoinResponse.heartbeat_interval_ms, or the
// coordinator drops it. FetchModel may also be called outside a task, to
// keep the newest global model for offline prediction.
//
// Status codes, by what the caller should do next (every method):
//   UNAVAILABLE         the coordinator is unreachable, overloaded or the
//                       call timed out: retry the same call with backoff.
//   UNAUTHENTICATED,
//   FAILED_PRECONDITION the session is unknown or expired (e.g. the
//                       coordinator restarted): Join again.
//   ABORTED             the round is over: drop the update, poll again.
//   INVALID_ARGUMENT    the request is malformed (a bug on our side or bad
//                       input): do not retry it unchanged; drop it.
//   NOT_FOUND           the model version is gone: poll again.
//   DATA_LOSS           a transfer arrived corrupt (size or SHA-256
//                       mismatch, malformed encoding): retry with backoff.
//   PERMISSION_DENIED   the coordinator refuses this agent: give up.
//   Other codes are passed through from the transport; treat them like
//   UNAVAILABLE.
//
// Thread-safety: the agent makes one call at a time, except Heartbeat,
// which implementations must allow concurrently with any other call.
#ifndef FEDGE_EDGE_AGENT_COORDINATOR_CLIENT_H_
#define FEDGE_EDGE_AGENT_COORDINATOR_CLIENT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/model_codec.h"
#include "common/tensor_buffer.h"
#include "fedge/v1/federation.pb.h"

namespace fedge {

class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;

  // Registers the agent. Returns the session (token, heartbeat interval,
  // the model spec to train and, in simulation mode, the data partition).
  // PERMISSION_DENIED or UNAUTHENTICATED (e.g. a rejected client
  // certificate) when the agent is not allowed in: give up; INVALID_ARGUMENT
  // for a malformed request (e.g. no architecture the federation trains).
  virtual absl::StatusOr<v1::JoinResponse> Join(
      const v1::JoinRequest& request) = 0;

  // Long poll and heartbeat: a train task, "wait" with a retry delay, or
  // "finished", plus the newest global model version.
  // UNAUTHENTICATED / FAILED_PRECONDITION when the session is not known.
  virtual absl::StatusOr<v1::PollResponse> Poll(
      const v1::PollRequest& request) = 0;

  // Streams global model `version` and decodes it as the chunks arrive.
  // Verifies that the bytes received add up to the announced total size and
  // that their SHA-256 equals the announced one and, when not empty,
  // `expected_sha256_hex` (lower-case hex). Returns the decoded model.
  // NOT_FOUND when the version is gone; DATA_LOSS when the transfer does not
  // verify or decode; UNAUTHENTICATED / FAILED_PRECONDITION for a lost
  // session.
  virtual absl::StatusOr<ModelState> FetchModel(
      const std::string& session_token, int64_t version,
      const std::string& expected_sha256_hex) = 0;

  // Uploads `delta` (local model minus the base version), or its lossy
  // encoding `encoded` when not null (fp16, int8, top-k), for the round named
  // in `metadata`. The caller fills session_token, round, base_version,
  // upload_id, num_examples, num_steps and metrics; the implementation fills
  // total_size_bytes and xxh3_128 (of the canonical encoding) and streams the
  // encoding in chunks. Retrying with the same upload_id is safe: the
  // coordinator counts it once (response.duplicate is then true).
  // ABORTED when the round is closed or the agent is not part of it;
  // INVALID_ARGUMENT when the update was refused as malformed (wrong schema,
  // non-finite values, too large); UNAUTHENTICATED / FAILED_PRECONDITION for
  // a lost session.
  virtual absl::StatusOr<v1::SubmitUpdateResponse> SubmitUpdate(
      v1::UpdateMetadata metadata, const ModelState& delta,
      const EncodedModel* encoded) = 0;

  // Leaves the federation; the agent's current round counts as failed.
  // UNAUTHENTICATED / FAILED_PRECONDITION when the session was already gone
  // (nothing left to do).
  virtual absl::Status Leave(const std::string& session_token) = 0;

  // Streams the TorchScript archive `sha256_hex` of `size_bytes` into
  // `path` (atomically: a temporary file renamed once its size and SHA-256
  // verify). NOT_FOUND when the coordinator has no such archive; DATA_LOSS
  // when the bytes do not verify; UNAUTHENTICATED / FAILED_PRECONDITION for
  // a lost session.
  virtual absl::Status FetchArchive(const std::string& session_token,
                                    const std::string& sha256_hex,
                                    int64_t size_bytes,
                                    const std::string& path) = 0;

  // Sends the result of an evaluate task. ABORTED when the evaluation is
  // over; INVALID_ARGUMENT when refused; UNAUTHENTICATED /
  // FAILED_PRECONDITION for a lost session.
  virtual absl::Status SubmitEvaluation(
      const v1::SubmitEvaluationRequest& request) = 0;

  // A sign of life while busy; thread-safe (see above). UNAUTHENTICATED /
  // FAILED_PRECONDITION when the session is gone (the coordinator dropped
  // the agent or restarted).
  virtual absl::Status Heartbeat(const std::string& session_token) = 0;

  // Gives the agent's round up, with why (it then counts as failed).
  // ABORTED when the round is over; FAILED_PRECONDITION when the agent is
  // not in it (not selected, or it already submitted an update);
  // UNAUTHENTICATED for a lost session; INVALID_ARGUMENT for an unspecified
  // reason.
  virtual absl::Status ReportFailure(
      const v1::ReportFailureRequest& request) = 0;

  // Secure aggregation (TrainTask.secure_aggregation): one stage message,
  // answered with the coordinator's next message or `pending` (ask again
  // with no message). ABORTED when the round's session is over or went on
  // without this agent: drop the round. The default: UNIMPLEMENTED (a
  // transport without secure aggregation).
  virtual absl::StatusOr<v1::SecAggStepResponse> SecAggStep(
      const v1::SecAggStepRequest& request) {
    return absl::UnimplementedError("secure aggregation is not supported");
  }
  // Uploads a masked input (the secagg message, `masked`) for the round in
  // `metadata` (session_token, round, base_version, upload_id; the
  // implementation sets masked, total_size_bytes and xxh3_128), in chunks.
  // Statuses as SubmitUpdate.
  virtual absl::StatusOr<v1::SubmitUpdateResponse> SubmitMaskedInput(
      v1::UpdateMetadata metadata, const std::string& masked) {
    return absl::UnimplementedError("secure aggregation is not supported");
  }

  // Bounds how long each later call may wait to reach the coordinator
  // (connect, handshake) before it fails with UNAVAILABLE: the agent passes
  // what is left of its give-up time (InfiniteDuration: no bound beyond the
  // implementation's own). Thread-safe. The default does nothing.
  virtual void SetConnectBudget(absl::Duration budget) {}
};

// What a client does with a failed call's status (the codes above), in one
// place for every client of a coordinator (fedge-agent's loop, an edge
// aggregator upstream).
//
// The coordinator did not answer (as opposed to answering with an error):
// retry with backoff.
inline bool IsUnreachable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kDeadlineExceeded;
}
// The session is unknown or expired: join again.
inline bool IsSessionLost(absl::StatusCode code) {
  return code == absl::StatusCode::kUnauthenticated ||
         code == absl::StatusCode::kFailedPrecondition;
}
// The coordinator refused the update for good: drop it.
inline bool IsRefusal(absl::StatusCode code) {
  return code == absl::StatusCode::kAborted ||
         code == absl::StatusCode::kInvalidArgument ||
         code == absl::StatusCode::kNotFound;
}
// Join errors that retrying cannot fix.
inline bool IsJoinRefusal(absl::StatusCode code) {
  return code == absl::StatusCode::kPermissionDenied ||
         code == absl::StatusCode::kInvalidArgument ||
         code == absl::StatusCode::kUnauthenticated;
}

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_COORDINATOR_CLIENT_H_
