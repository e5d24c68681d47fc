// The limits on open upload streams (issue #9), so that a stalled, frozen
// or hostile upload never holds an upload slot past its round:
//   - max_uploads_per_agent: streams one agent may have open at once
//     (holding or waiting for a slot); another is RESOURCE_EXHAUSTED;
//   - upload_idle_timeout_ms: a stream that holds a slot and receives no
//     chunk for that long is ended (DEADLINE_EXCEEDED), and so is one that
//     sends no metadata for that long after it opened;
//   - a stream whose round closed is ended (ABORTED).
// No gRPC: the transport registers each stream with the function that ends
// it; the coordinator's Tick sweeps (Coordinator::SweepUploads).
//
// Thread-safe.
#ifndef FEDGE_SERVER_UPLOAD_GUARD_H_
#define FEDGE_SERVER_UPLOAD_GUARD_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "fedge/v1/federation.pb.h"

namespace fedge {

class UploadGuard {
 public:
  // Ends a stream with `status` (and frees its slot at once); false when
  // the stream had already finished (nothing to end).
  using Cancel = std::function<bool(absl::Status status)>;
  // A stream the sweep ended, with why.
  struct Ended {
    uint64_t id = 0;
    std::string agent_id;
    bool held_slot = false;
    std::string reason;  // "upload_idle_timeout_ms" or "round_closed".
    absl::Status status;
    Cancel cancel;
  };

  UploadGuard(int max_per_agent, absl::Duration idle_timeout)
      : max_per_agent_(max_per_agent), idle_timeout_(idle_timeout) {}

  // Watches stream `id` (unique, non-zero) from its start, before its
  // metadata names the agent: ended after the idle timeout without it.
  void Watch(uint64_t id, absl::Time now, Cancel cancel);
  // Registers stream `id` (watched or not) of `agent_id` for the update
  // `metadata`. RESOURCE_EXHAUSTED naming max_uploads_per_agent when the
  // agent already has that many open (it stays as it was then).
  absl::Status Open(uint64_t id, const std::string& agent_id,
                    const v1::UpdateMetadata& metadata, Cancel cancel);
  // The stream ended (any way); a no-op for one unknown or already ended.
  void Close(uint64_t id);
  // The stream got its upload slot: its idle clock starts.
  void SlotGranted(uint64_t id, absl::Time now);
  // A chunk arrived.
  void Touch(uint64_t id, absl::Time now);

  // Streams to end now, removed from the guard (their agents may open
  // others): those holding a slot without a chunk for the idle timeout (or
  // without metadata since they opened), and those for which `round_open`
  // is ABORTED (their round closed). `round_open` is called under the
  // guard's lock: it must not call the guard. The caller calls their
  // cancel.
  using RoundCheck = std::function<absl::Status(
      const v1::UpdateMetadata& metadata, const std::string& agent_id)>;
  std::vector<Ended> Sweep(absl::Time now, const RoundCheck& round_open);

  // Streams open (all agents), and of one agent.
  size_t size() const;
  int OpenBy(const std::string& agent_id) const;

 private:
  struct Stream {
    std::string agent_id;
    v1::UpdateMetadata metadata;  // Without the session token.
    Cancel cancel;
    bool holds_slot = false;
    bool awaiting_metadata = false;  // Watched, not opened yet.
    absl::Time last_activity = absl::InfinitePast();
  };
  Ended TakeLocked(uint64_t id, std::string reason, absl::Status status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int max_per_agent_;
  const absl::Duration idle_timeout_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Stream> streams_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> per_agent_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedge

#endif  // FEDGE_SERVER_UPLOAD_GUARD_H_
