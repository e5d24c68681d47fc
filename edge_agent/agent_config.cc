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

absl::Status ValidateProfile(const v1::DeviceProfile& p) {
  if (!std::isfinite(p.compute_slowdown()) || p.compute_slowdown() < 1.0) {
    return BadConfigField(
        "profile.compute_slowdown",
        absl::StrCat("must be >= 1, got ", p.compute_slowdown()));
  }
  RETURN_IF_ERROR(ConfigFieldAtLeast("profile.bandwidth_bytes_per_second",
                                     p.bandwidth_bytes_per_second(), 0));
  RETURN_IF_ERROR(
      ConfigFieldAtLeast("profile.added_latency_ms", p.added_latency_ms(), 0));
  if (!(p.dropout_probability() >= 0.0 && p.dropout_probability() <= 1.0)) {
    return BadConfigField(
        "profile.dropout_probability",
        absl::StrCat("must be in [0, 1], got ", p.dropout_probability()));
  }
  return absl::OkStatus();
}

absl::Status ValidatePartitioning(const v1::AgentConfig& c) {
  RETURN_IF_ERROR(
      ConfigFieldAtLeast("partition_index", c.partition_index(), -1));
  if (c.partition_index() >= 0 && c.num_partitions() <= c.partition_index()) {
    return BadConfigField(
        "num_partitions",
        absl::StrCat("must be > partition_index (", c.partition_index(),
                     "), got ", c.num_partitions()));
  }
  return ValidatePartitionConfig(c.partition(), "partition.");
}

absl::Status ValidateEligibility(const v1::EligibilityConfig& e) {
  if (e.min_battery_percent() < 0 || e.min_battery_percent() > 100) {
    return BadConfigField(
        "eligibility.min_battery_percent",
        absl::StrCat("must be in [0, 100], got ", e.min_battery_percent()));
  }
  if (!std::isfinite(e.max_load_average()) || e.max_load_average() < 0) {
    return BadConfigField(
        "eligibility.max_load_average",
        absl::StrCat("must be >= 0, got ", e.max_load_average()));
  }
  if (!e.time_window().empty()) {
    if (absl::Status s = ParseTimeWindow(e.time_window()).status(); !s.ok()) {
      return BadConfigField("eligibility.time_window",
                            std::string(s.message()));
    }
  }
  RETURN_IF_ERROR(ConfigFieldAtLeast("eligibility.check_interval_ms",
                                     e.check_interval_ms(), 100));
  RETURN_IF_ERROR(ConfigFieldAtLeast("eligibility.status_command_timeout_ms",
                                     e.status_command_timeout_ms(), 1));
  if (e.require_unmetered() && e.metered_path().empty() &&
      e.status_command().empty()) {
    return BadConfigField(
        "eligibility.require_unmetered",
        "needs eligibility.metered_path or eligibility.status_command "
        "(where the agent reads whether the network is metered)");
  }
  return absl::OkStatus();
}

absl::Status ValidateLimits(const v1::AgentConfig& c) {
  if (c.has_niceness() && (c.niceness() < -20 || c.niceness() > 19)) {
    return BadConfigField(
        "niceness", absl::StrCat("must be in [-20, 19], got ", c.niceness()));
  }
  RETURN_IF_ERROR(
      ConfigFieldAtLeast("memory_budget_bytes", c.memory_budget_bytes(), 0));
  if (!std::isfinite(c.memory_model_factor()) ||
      c.memory_model_factor() < 1.0) {
    return BadConfigField(
        "memory_model_factor",
        absl::StrCat("must be >= 1, got ", c.memory_model_factor()));
  }
  return ValidateEligibility(c.eligibility());
}

absl::Status ValidateBackoff(const v1::AgentConfig& c) {
  RETURN_IF_ERROR(
      ConfigFieldAtLeast("initial_backoff_ms", c.initial_backoff_ms(), 1));
  RETURN_IF_ERROR(ConfigFieldAtLeast("max_backoff_ms", c.max_backoff_ms(),
                                     c.initial_backoff_ms()));
  RETURN_IF_ERROR(
      ConfigFieldAtLeast("give_up_after_ms", c.give_up_after_ms(), 0));
  return ConfigFieldAtLeast("keepalive_time_ms", c.keepalive_time_ms(), 1000);
}

}  // namespace

absl::Status ValidateAgentConfig(const v1::AgentConfig& c) {
  if (c.coordinator().empty() || !absl::StrContains(c.coordinator(), ":")) {
    return BadConfigField(
        "coordinator",
        absl::StrCat("must be host:port, got '", c.coordinator(), "'"));
  }
  if (c.state_dir().empty()) return BadConfigField("state_dir", "must be set");
  if (!c.agent_id().empty()) {
    if (absl::Status id = ValidateAgentId(c.agent_id()); !id.ok()) {
      return BadConfigField("agent_id", std::string(id.message()));
    }
  }
  RETURN_IF_ERROR(ValidateDataConfig(c.data(), "data."));
  RETURN_IF_ERROR(ValidatePartitioning(c));
  RETURN_IF_ERROR(ValidateTlsConfig(c.tls(), /*server=*/false, "tls."));
  RETURN_IF_ERROR(ValidateNumThreads("num_threads", c.num_threads(), 1));
  RETURN_IF_ERROR(ValidateBackoff(c));
  RETURN_IF_ERROR(ValidateLimits(c));
  RETURN_IF_ERROR(ConfigFieldAtLeast("model_cache_interval_ms",
                                     c.model_cache_interval_ms(), 0));
  for (const std::string& path : c.model_signing_public_key_paths()) {
    if (path.empty()) {
      return BadConfigField("model_signing_public_key_paths",
                            "has an empty path");
    }
  }
  return ValidateProfile(c.profile());
}

absl::StatusOr<std::optional<ModelVerifier>> LoadModelVerifier(
    const v1::AgentConfig& c) {
  if (c.model_signing_public_key_paths().empty()) {
    FEDGE_LOG(WARNING) << "no model-signing key pinned "
                          "(model_signing_public_key_paths): global models "
                          "are not verified";
    return std::nullopt;
  }
  absl::StatusOr<ModelVerifier> verifier =
      ModelVerifier::Load({c.model_signing_public_key_paths().begin(),
                           c.model_signing_public_key_paths().end()});
  if (!verifier.ok()) {
    return BadConfigField(
        "model_signing_public_key_paths",
        absl::StrCat("does not load: ", verifier.status().message()));
  }
  FEDGE_LOG(INFO) << "verifying global models against model-signing key id(s) "
                  << verifier->KeyIds();
  return std::optional<ModelVerifier>(*std::move(verifier));
}

AgentOptions ToAgentOptions(const v1::AgentConfig& c) {
  AgentOptions o;
  o.initial_backoff = absl::Milliseconds(c.initial_backoff_ms());
  o.max_backoff = absl::Milliseconds(c.max_backoff_ms());
  o.give_up_after = absl::Milliseconds(c.give_up_after_ms());
  o.compute_slowdown = c.profile().compute_slowdown();
  o.dropout_probability = c.profile().dropout_probability();
  o.exit_when_finished = c.exit_when_finished();
  o.model_cache_interval = absl::Milliseconds(c.model_cache_interval_ms());
  o.device_class = c.device_class();
  o.examples_per_second = c.examples_per_second();
  o.eligibility = ToEligibilityPolicy(c.eligibility());
  o.training_threads = c.num_threads();
  o.memory_budget_bytes = c.memory_budget_bytes();
  o.memory_model_factor = c.memory_model_factor();
  return o;
}

EligibilityPolicy ToEligibilityPolicy(const v1::EligibilityConfig& e) {
  EligibilityPolicy p;
  p.require_external_power = e.require_external_power();
  p.min_battery_percent = e.min_battery_percent();
  p.require_unmetered = e.require_unmetered();
  p.require_idle = e.require_idle();
  p.max_load_average = e.max_load_average();
  if (!e.time_window().empty()) {
    absl::StatusOr<TimeWindow> window = ParseTimeWindow(e.time_window());
    FEDGE_CHECK(window.ok()) << "unvalidated config: " << window.status();
    p.window = *window;
  }
  p.check_interval = absl::Milliseconds(e.check_interval_ms());
  return p;
}

LinuxDeviceConditionsOptions ToDeviceConditionsOptions(
    const v1::EligibilityConfig& e) {
  LinuxDeviceConditionsOptions o;
  o.power_supply_dir = e.power_supply_dir();
  o.loadavg_path = e.loadavg_path();
  o.metered_path = e.metered_path();
  o.status_command = e.status_command();
  o.status_command_timeout = absl::Milliseconds(e.status_command_timeout_ms());
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
