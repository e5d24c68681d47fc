#include "edge_agent/agent_config.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fl_config.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

absl::Status Bad(const std::string& field, const std::string& rule) {
  return absl::InvalidArgumentError(
      absl::StrCat("config field '", field, "' ", rule,
                   " (set it in the config file or with --", field, "=VALUE)"));
}

absl::Status AtLeast(const std::string& field, int64_t value, int64_t min) {
  if (value >= min) return absl::OkStatus();
  return Bad(field, absl::StrCat("must be >= ", min, ", got ", value));
}

absl::Status ValidateProfile(const v1::DeviceProfile& p) {
  if (!std::isfinite(p.compute_slowdown()) || p.compute_slowdown() < 1.0) {
    return Bad("profile.compute_slowdown",
               absl::StrCat("must be >= 1, got ", p.compute_slowdown()));
  }
  RETURN_IF_ERROR(AtLeast("profile.bandwidth_bytes_per_second",
                          p.bandwidth_bytes_per_second(), 0));
  RETURN_IF_ERROR(AtLeast("profile.added_latency_ms", p.added_latency_ms(), 0));
  if (!(p.dropout_probability() >= 0.0 && p.dropout_probability() <= 1.0)) {
    return Bad(
        "profile.dropout_probability",
        absl::StrCat("must be in [0, 1], got ", p.dropout_probability()));
  }
  return absl::OkStatus();
}

absl::Status ValidatePartitioning(const v1::AgentConfig& c) {
  RETURN_IF_ERROR(AtLeast("partition_index", c.partition_index(), -1));
  if (c.partition_index() >= 0 && c.num_partitions() <= c.partition_index()) {
    return Bad("num_partitions",
               absl::StrCat("must be > partition_index (", c.partition_index(),
                            "), got ", c.num_partitions()));
  }
  return ValidatePartitionConfig(c.partition(), "partition.");
}

absl::Status ValidateBackoff(const v1::AgentConfig& c) {
  RETURN_IF_ERROR(AtLeast("initial_backoff_ms", c.initial_backoff_ms(), 1));
  RETURN_IF_ERROR(
      AtLeast("max_backoff_ms", c.max_backoff_ms(), c.initial_backoff_ms()));
  RETURN_IF_ERROR(AtLeast("give_up_after_ms", c.give_up_after_ms(), 0));
  return AtLeast("keepalive_time_ms", c.keepalive_time_ms(), 1000);
}

}  // namespace

absl::Status ValidateAgentConfig(const v1::AgentConfig& c) {
  if (c.coordinator().empty() || !absl::StrContains(c.coordinator(), ":")) {
    return Bad("coordinator",
               absl::StrCat("must be host:port, got '", c.coordinator(), "'"));
  }
  if (c.state_dir().empty()) return Bad("state_dir", "must be set");
  if (c.agent_id().find('\n') != std::string::npos) {
    return Bad("agent_id", "must be on one line");
  }
  RETURN_IF_ERROR(ValidateDataConfig(c.data(), "data."));
  RETURN_IF_ERROR(ValidatePartitioning(c));
  RETURN_IF_ERROR(ValidateTlsConfig(c.tls(), /*server=*/false, "tls."));
  RETURN_IF_ERROR(AtLeast("num_threads", c.num_threads(), 1));
  RETURN_IF_ERROR(ValidateBackoff(c));
  return ValidateProfile(c.profile());
}

AgentOptions ToAgentOptions(const v1::AgentConfig& c) {
  AgentOptions o;
  o.initial_backoff = absl::Milliseconds(c.initial_backoff_ms());
  o.max_backoff = absl::Milliseconds(c.max_backoff_ms());
  o.give_up_after = absl::Milliseconds(c.give_up_after_ms());
  o.compute_slowdown = c.profile().compute_slowdown();
  o.dropout_probability = c.profile().dropout_probability();
  o.exit_when_finished = c.exit_when_finished();
  o.device_class = c.device_class();
  o.examples_per_second = c.examples_per_second();
  return o;
}

LinkProfile ToLinkProfile(const v1::DeviceProfile& p) {
  LinkProfile link;
  link.added_latency = absl::Milliseconds(p.added_latency_ms());
  link.bytes_per_second = p.bandwidth_bytes_per_second();
  return link;
}

absl::StatusOr<std::string> ResolveAgentId(const v1::AgentConfig& config,
                                           ModelCache& cache) {
  if (!config.agent_id().empty()) return config.agent_id();
  absl::StatusOr<std::string> stored = cache.LoadAgentId();
  if (stored.ok() || stored.status().code() != absl::StatusCode::kNotFound) {
    return stored;
  }
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    std::snprintf(host, sizeof(host), "agent");
  }
  const std::string id = absl::StrCat(host, "-", getpid());
  RETURN_IF_ERROR(cache.StoreAgentId(id));
  FEDGE_LOG(INFO) << "new agent id " << id << " (stored in "
                  << cache.state_dir() << "/agent_id)";
  return id;
}

}  // namespace fedge
