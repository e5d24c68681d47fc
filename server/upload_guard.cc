#include "server/upload_guard.h"

#include "absl/strings/str_cat.h"

namespace fedge {

void UploadGuard::Watch(uint64_t id, absl::Time now, Cancel cancel) {
  absl::MutexLock lock(&mu_);
  Stream& s = streams_[id];
  s.awaiting_metadata = true;
  s.last_activity = now;
  s.cancel = std::move(cancel);
}

absl::Status UploadGuard::Open(uint64_t id, const std::string& agent_id,
                               const v1::UpdateMetadata& metadata,
                               Cancel cancel) {
  absl::MutexLock lock(&mu_);
  int& open = per_agent_[agent_id];
  if (open >= max_per_agent_) {
    const int n = open;
    if (n == 0) per_agent_.erase(agent_id);
    return absl::ResourceExhaustedError(absl::StrCat(
        "agent ", agent_id, " already has ", n,
        " upload(s) open and max_uploads_per_agent is ", max_per_agent_,
        ": wait for the open one to finish (or to be ended after "
        "upload_idle_timeout_ms without a chunk)"));
  }
  ++open;
  Stream& s = streams_[id];
  s.agent_id = agent_id;
  s.metadata = metadata;
  s.metadata.clear_session_token();
  s.awaiting_metadata = false;
  if (cancel) s.cancel = std::move(cancel);
  return absl::OkStatus();
}

UploadGuard::Ended UploadGuard::TakeLocked(uint64_t id, std::string reason,
                                           absl::Status status) {
  auto it = streams_.find(id);
  Ended e;
  e.id = id;
  e.agent_id = it->second.agent_id;
  e.held_slot = it->second.holds_slot;
  e.reason = std::move(reason);
  e.status = std::move(status);
  e.cancel = std::move(it->second.cancel);
  if (!it->second.awaiting_metadata) {
    auto a = per_agent_.find(e.agent_id);
    if (a != per_agent_.end() && --a->second <= 0) per_agent_.erase(a);
  }
  streams_.erase(it);
  return e;
}

void UploadGuard::Close(uint64_t id) {
  absl::MutexLock lock(&mu_);
  if (streams_.contains(id)) TakeLocked(id, "", absl::OkStatus());
}

void UploadGuard::SlotGranted(uint64_t id, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  it->second.holds_slot = true;
  it->second.last_activity = now;
}

void UploadGuard::Touch(uint64_t id, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  if (it != streams_.end()) it->second.last_activity = now;
}

std::vector<UploadGuard::Ended> UploadGuard::Sweep(
    absl::Time now, const RoundCheck& round_open) {
  std::vector<Ended> ended;
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<uint64_t, absl::Status>> to_end;
  std::vector<std::string> reasons;
  for (const auto& [id, s] : streams_) {
    if ((s.holds_slot || s.awaiting_metadata) &&
        now - s.last_activity >= idle_timeout_) {
      const std::string silent =
          absl::StrCat(absl::ToInt64Milliseconds(now - s.last_activity));
      const std::string limit =
          absl::StrCat("(upload_idle_timeout_ms = ",
                       absl::ToInt64Milliseconds(idle_timeout_), ")");
      to_end.emplace_back(
          id, absl::DeadlineExceededError(
                  s.awaiting_metadata
                      ? absl::StrCat("upload ended: no metadata ", silent,
                                     " ms after the stream opened ", limit)
                      : absl::StrCat("upload ended: no chunk for ", silent,
                                     " ms while holding an upload slot ",
                                     limit, "; its slot was freed")));
      reasons.push_back("upload_idle_timeout_ms");
      continue;
    }
    if (s.awaiting_metadata) continue;
    absl::Status open = round_open(s.metadata, s.agent_id);
    if (!absl::IsAborted(open)) continue;
    to_end.emplace_back(
        id, absl::AbortedError(absl::StrCat(
                "upload cancelled: round ", s.metadata.round(),
                " closed before this upload finished (", open.message(),
                "); its slot was freed")));
    reasons.push_back("round_closed");
  }
  for (size_t i = 0; i < to_end.size(); ++i) {
    ended.push_back(TakeLocked(to_end[i].first, std::move(reasons[i]),
                               std::move(to_end[i].second)));
  }
  return ended;
}

size_t UploadGuard::size() const {
  absl::MutexLock lock(&mu_);
  return streams_.size();
}

int UploadGuard::OpenBy(const std::string& agent_id) const {
  absl::MutexLock lock(&mu_);
  auto it = per_agent_.find(agent_id);
  return it == per_agent_.end() ? 0 : it->second;
}

}  // namespace fedge
