// Wiring of fedge-agent: from a validated AgentConfig to a running Agent
// (local data, the LibTorch trainer factory of torch_support.h, the gRPC
// client, the model cache, signal handling).
#ifndef FEDGE_EDGE_AGENT_AGENT_RUNNER_H_
#define FEDGE_EDGE_AGENT_AGENT_RUNNER_H_

#include <string>

#include "absl/status/status.h"
#include "fedge/v1/config.pb.h"

namespace fedge {

// Software version reported at Join and logged at start: "fedge-agent/"
// and fedge's version (common/version.h).
std::string AgentVersion();

// Runs the agent described by `config` until the federation finishes
// (exit_when_finished) or SIGINT/SIGTERM: it then leaves the federation and
// returns OK, with an unreachable or hung coordinator within two
// leave_timeouts (4 s: a trained update's last try, then Leave); a second
// signal exits at once. Errors: INVALID_ARGUMENT for whatever stops it
// before it first calls the coordinator, naming the field or file (a bad
// value, a file that cannot be read, corrupt local data, another agent
// using state_dir); then Agent::Run's errors (UNAVAILABLE after
// give_up_after_ms, Join refused, local data that does not fit the
// federation's model).
absl::Status RunAgent(const v1::AgentConfig& config);

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_AGENT_RUNNER_H_
