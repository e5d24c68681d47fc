// fedge-agent's configuration (v1::AgentConfig in proto/fedge/v1/config.proto):
// validation with errors naming the field, conversion into the option
// structs of the agent loop and the transport, and the agent's identity.
// Stateless functions; thread-safe.
#ifndef FEDGE_EDGE_AGENT_AGENT_CONFIG_H_
#define FEDGE_EDGE_AGENT_AGENT_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model_signature.h"
#include "edge_agent/agent.h"
#include "edge_agent/device_conditions.h"
#include "edge_agent/link_throttle.h"
#include "edge_agent/model_cache.h"
#include "fedge/v1/config.pb.h"

namespace fedge {

// OK, or INVALID_ARGUMENT naming the first bad field (e.g.
// "config field 'profile.dropout_probability' must be in [0, 1], got 2").
absl::Status ValidateAgentConfig(const v1::AgentConfig& config);

// The loop's options from a validated config. agent_id, num_examples,
// architectures, seed, device and local_data_bytes are left for the caller.
AgentOptions ToAgentOptions(const v1::AgentConfig& config);

// The conditions a validated config requires, and where they are read.
EligibilityPolicy ToEligibilityPolicy(const v1::EligibilityConfig& config);
LinuxDeviceConditionsOptions ToDeviceConditionsOptions(
    const v1::EligibilityConfig& config);

// The simulated link of config.profile().
LinkProfile ToLinkProfile(const v1::DeviceProfile& profile);

// The pinned model-signing keys of config.model_signing_public_key_paths,
// nullopt when none is set (then logs once that models are not verified).
// INVALID_ARGUMENT naming the field (and the file) when a key does not
// load.
absl::StatusOr<std::optional<ModelVerifier>> LoadModelVerifier(
    const v1::AgentConfig& config);

// The agent's id: config.agent_id() when set; otherwise the one stored in
// the cache's state directory; otherwise "<hostname>-<pid>", which is then
// stored so that a restarted agent keeps its identity. Errors of the cache.
absl::StatusOr<std::string> ResolveAgentId(const v1::AgentConfig& config,
                                           ModelCache& cache);

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_AGENT_CONFIG_H_
