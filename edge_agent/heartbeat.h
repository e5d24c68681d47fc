// HeartbeatThread: sends CoordinatorClient::Heartbeat every `interval` from
// a thread of its own for as long as it lives, so an agent that is busy
// downloading, training or uploading (and so not polling) stays live at the
// coordinator. The first heartbeat goes out after one interval. Stopping
// (the destructor) wakes the thread at once and joins it; a heartbeat in
// flight ends by its own call deadline.
//
// Thread-safety: construct and destroy from one thread; session_lost() from
// any.
#ifndef FEDGE_EDGE_AGENT_HEARTBEAT_H_
#define FEDGE_EDGE_AGENT_HEARTBEAT_H_

#include <atomic>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/logging.h"
#include "edge_agent/coordinator_client.h"

namespace fedge {

class HeartbeatThread {
 public:
  // `client` must outlive this object and allow Heartbeat concurrently with
  // its other calls. `interval` > 0.
  HeartbeatThread(CoordinatorClient* client, std::string session_token,
                  absl::Duration interval)
      : client_(client),
        token_(std::move(session_token)),
        interval_(interval),
        thread_([this] { Loop(); }) {}
  ~HeartbeatThread() {
    stop_.Notify();
    thread_.join();
  }
  HeartbeatThread(const HeartbeatThread&) = delete;
  HeartbeatThread& operator=(const HeartbeatThread&) = delete;

  // Heartbeats sent and acknowledged.
  int sent() const { return sent_.load(); }
  // True once the coordinator said the session is gone.
  bool session_lost() const { return session_lost_.load(); }

 private:
  void Loop() {
    while (!stop_.WaitFor(interval_)) {
      const absl::Status s = client_->Heartbeat(token_);
      if (s.ok()) {
        sent_.fetch_add(1);
      } else if (s.code() == absl::StatusCode::kUnauthenticated ||
                 s.code() == absl::StatusCode::kFailedPrecondition) {
        session_lost_.store(true);
        FEDGE_LOG(WARNING) << "heartbeat: " << s.message();
        return;
      }  // Other errors: the next one may get through.
    }
  }

  CoordinatorClient* const client_;
  const std::string token_;
  const absl::Duration interval_;
  Event stop_;
  std::atomic<int> sent_{0};
  std::atomic<bool> session_lost_{false};
  std::thread thread_;  // Last: starts after the members it uses.
};

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_HEARTBEAT_H_
