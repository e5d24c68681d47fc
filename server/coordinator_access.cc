// Coordinator: who may join and call (join tokens, enrollments, sessions
// bound to certificates, session expiry, join rate limits, max_agents) and
// the audit log. docs/security.md.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/coordinator.h"

namespace fedge {
namespace {

// Buckets idle this long are full again, whatever the rate: dropped.
constexpr absl::Duration kPruneEvery = absl::Seconds(5);
// At most this many sources are tracked; past it full buckets are dropped
// first, then the map is cleared (a flood of sources forgets old ones).
constexpr size_t kMaxRateSources = 100000;

std::string StatePath(const v1::CoordinatorConfig& c,
                      const std::string& configured, absl::string_view name) {
  return configured.empty() ? absl::StrCat(c.state_dir(), "/", name)
                            : configured;
}

}  // namespace

absl::Status Coordinator::OpenAccess() {
  const v1::CoordinatorConfig& c = config_;
  ASSIGN_OR_RETURN(audit_log_,
                   AuditLog::Open(StatePath(c, c.audit_log_path(), "audit.log")));
  absl::StatusOr<std::unique_ptr<CredentialStore>> store =
      CredentialStore::Open(c.state_dir() + "/credentials");
  if (!store.ok()) {
    return Annotate(store.status(), "cannot open the join-token journal");
  }
  credentials_ = *std::move(store);
  const bool mtls = c.tls().require_client_cert();
  if (!mtls && !c.require_join_token() && c.upstream().address().empty()) {
    FEDGE_LOG(WARNING)
        << "neither mutual TLS (tls.require_client_cert) nor join tokens "
           "(require_join_token) are on: anyone who reaches this port can "
           "join as any agent id";
  }
  AuditEvent("start",
             {{"identity", mtls                   ? "mutual TLS"
                           : c.require_join_token() ? "join tokens"
                                                    : "open"},
              {"model_signing_key_id",
               signer_.has_value() ? signer_->key_id() : std::string()}});
  return absl::OkStatus();
}

void Coordinator::AuditEvent(
    absl::string_view event,
    std::vector<std::pair<absl::string_view, std::string>> fields) {
  if (audit_log_ != nullptr) {
    audit_log_->Record(clock_->WallNow(), event, std::move(fields));
  }
}

bool Coordinator::TakeJoinRateToken(const std::string& source) {
  const double rate = config_.join_rate_per_source();
  if (rate <= 0) return true;
  const double burst = std::max(1, config_.join_burst_per_source());
  const absl::Time now = clock_->Now();
  auto [it, inserted] = join_buckets_.try_emplace(source);
  RateBucket& b = it->second;
  if (inserted) {
    b.tokens = burst;
  } else {
    b.tokens = std::min(burst, b.tokens + rate * absl::ToDoubleSeconds(
                                                     now - b.last));
  }
  b.last = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

absl::Status Coordinator::AdmitJoin(const v1::JoinRequest& request,
                                    const std::string& agent_id,
                                    bool certified, const std::string& source,
                                    std::string* how, std::string* agent_key) {
  {
    absl::MutexLock lock(&mu_);
    if (!TakeJoinRateToken(source)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "too many joins from ", source.empty() ? "this source" : source,
          ": join_rate_per_source = ", config_.join_rate_per_source(),
          " per second (bursts of join_burst_per_source = ",
          config_.join_burst_per_source(), "); try again later"));
    }
  }
  if (!engine_->HasAgent(agent_id) &&
      static_cast<int64_t>(engine_->num_agents()) >= config_.max_agents()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the coordinator already holds max_agents = ", config_.max_agents(),
        " agents; raise max_agents or wait for agents to leave"));
  }
  if (config_.simulation().enabled()) {
    absl::MutexLock lock(&mu_);
    if (!partitions_.contains(agent_id) &&
        static_cast<int64_t>(partitions_.size()) >= config_.max_agents()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "simulation mode has assigned partitions to max_agents = ",
          config_.max_agents(), " agent ids; raise max_agents"));
    }
  }
  if (certified) {
    *how = "certificate";
    return absl::OkStatus();
  }
  if (!config_.require_join_token()) {
    *how = "open (require_join_token is off)";
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(CredentialStore::Grant grant,
                   credentials_->Authenticate(agent_id, request.agent_key(),
                                              request.join_token(),
                                              clock_->WallNow()));
  *agent_key = grant.agent_key;
  *how = grant.agent_key.empty()
             ? absl::StrCat("agent key (enrolled with ", grant.token_id, ")")
             : absl::StrCat("join token ", grant.token_id, " (enrolled now)");
  return absl::OkStatus();
}

void Coordinator::EndSessionLocked(const std::string& agent_id) {
  auto it = session_of_agent_.find(agent_id);
  if (it == session_of_agent_.end()) return;
  sessions_.erase(it->second);
  session_of_agent_.erase(it);
}

absl::Status Coordinator::CheckCaller(const std::string& session_token,
                                      const std::string& peer_identity,
                                      absl::string_view call) {
  if (!config_.tls().require_client_cert()) return absl::OkStatus();
  std::string owner;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(session_token);
    if (it == sessions_.end()) return absl::OkStatus();
    owner = it->second.agent_id;
  }
  if (owner == peer_identity) return absl::OkStatus();
  absl::Status denied = absl::PermissionDeniedError(absl::StrCat(
      call, ": the session belongs to another agent than this certificate's (",
      Printable(peer_identity, 64), ")"));
  FEDGE_LOG(WARNING) << "refused " << call << " from "
                     << Printable(peer_identity, 64)
                     << " carrying the session of " << owner;
  AuditEvent("refused", {{"agent", peer_identity},
                         {"what", std::string(call)},
                         {"reason", "another agent's session"},
                         {"session_of", owner}});
  return denied;
}

void Coordinator::PruneSessions() {
  const absl::Time now = clock_->Now();
  if (now - last_prune_ < kPruneEvery) return;
  last_prune_ = now;
  // The roster first (the engine has its own lock).
  std::vector<std::string> ids;
  {
    absl::MutexLock lock(&mu_);
    ids.reserve(session_of_agent_.size());
    for (const auto& [agent, token] : session_of_agent_) ids.push_back(agent);
  }
  std::vector<std::string> gone;
  for (const std::string& id : ids) {
    if (!engine_->HasAgent(id)) gone.push_back(id);
  }
  absl::MutexLock lock(&mu_);
  size_t expired = 0;
  for (const std::string& id : gone) EndSessionLocked(id);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (now >= it->second.expires) {
      session_of_agent_.erase(it->second.agent_id);
      sessions_.erase(it++);
      ++expired;
    } else {
      ++it;
    }
  }
  // What dropped agents declared goes with their sessions (it is declared
  // again at the next join).
  for (const std::string& id : gone) {
    if (!session_of_agent_.contains(id)) agents_.erase(id);
  }
  // Idle buckets have refilled: forget them.
  const double rate = config_.join_rate_per_source();
  const double refill_seconds =
      rate > 0 ? std::max(1, config_.join_burst_per_source()) / rate : 0;
  for (auto it = join_buckets_.begin(); it != join_buckets_.end();) {
    if (absl::ToDoubleSeconds(now - it->second.last) >= refill_seconds) {
      join_buckets_.erase(it++);
    } else {
      ++it;
    }
  }
  if (join_buckets_.size() > kMaxRateSources) join_buckets_.clear();
  if (!gone.empty() || expired > 0) {
    FEDGE_LOG(INFO) << "ended " << gone.size()
                    << " sessions of dropped agents and " << expired
                    << " expired sessions";
  }
}

absl::StatusOr<v1::CreateJoinTokenResponse> Coordinator::CreateJoinToken(
    const v1::CreateJoinTokenRequest& request, const std::string& who) {
  ASSIGN_OR_RETURN(
      CredentialStore::CreatedToken created,
      credentials_->CreateToken(request.agent_id(),
                                absl::Seconds(request.ttl_seconds()),
                                request.label(), clock_->WallNow()));
  v1::CreateJoinTokenResponse response;
  response.set_token(created.token);
  response.set_token_id(created.record.id);
  response.set_expires_unix_ms(created.record.expires_unix_ms);
  Audit("token_create", who,
        absl::StrCat(created.record.id, " for ",
                     request.agent_id().empty() ? "any agent"
                                                : request.agent_id(),
                     ", expires ",
                     absl::FormatTime(
                         absl::FromUnixMillis(created.record.expires_unix_ms),
                         absl::UTCTimeZone())));
  return response;
}

v1::ListJoinTokensResponse Coordinator::ListJoinTokens() const {
  v1::ListJoinTokensResponse response;
  for (const JoinTokenRecord& t : credentials_->Tokens()) {
    v1::JoinTokenInfo* info = response.add_tokens();
    info->set_token_id(t.id);
    info->set_agent_id(t.agent_id);
    info->set_created_unix_ms(t.created_unix_ms);
    info->set_expires_unix_ms(t.expires_unix_ms);
    info->set_revoked(t.revoked);
    info->set_label(t.label);
    info->set_enrollments(t.enrollments);
  }
  return response;
}

absl::StatusOr<std::string> Coordinator::RevokeJoinToken(
    const std::string& token_id, const std::string& who) {
  ASSIGN_OR_RETURN(std::vector<std::string> agents,
                   credentials_->RevokeToken(token_id));
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& agent : agents) EndSessionLocked(agent);
  }
  for (const std::string& agent : agents) {
    engine_->RemoveAgent(agent).IgnoreError();  // Gone already is fine.
  }
  const std::string detail = absl::StrCat(
      token_id, " revoked; ", agents.size(),
      " enrollments made with it revoked and their sessions ended");
  Audit("token_revoke", who, detail);
  return detail;
}

}  // namespace fedge
