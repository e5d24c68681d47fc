// Validation of the federated-learning parts of the configuration
// (proto/fedge/v1/config.proto) and their conversion into the core's option
// structs. Shared by fedge-sim and fedge-coordinator, so both refuse the same
// bad values with the same messages. Every error names the field by its full
// path (e.g. "train.batch_size") and says what is allowed.
#ifndef FEDGE_COMMON_FL_CONFIG_H_
#define FEDGE_COMMON_FL_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/local_trainer.h"
#include "common/secagg_update.h"
#include "common/strategy.h"
#include "common/update_limits.h"
#include "fedge/v1/config.pb.h"
#include "fedge/v1/federation.pb.h"

namespace fedge {

// Each returns INVALID_ARGUMENT naming `prefix` + the bad field.
absl::Status ValidateModelConfig(const v1::ModelConfig& c,
                                 const std::string& prefix);
absl::Status ValidateDataConfig(const v1::DataConfig& c,
                                const std::string& prefix);
absl::Status ValidatePartitionConfig(const v1::PartitionConfig& c,
                                     const std::string& prefix);
absl::Status ValidateTrainPlan(const v1::TrainPlanConfig& c,
                               const std::string& prefix);
absl::Status ValidateStrategyConfig(const v1::StrategyConfig& c,
                                    const std::string& prefix);
// The poisoning limits (part of ValidateStrategyConfig).
absl::Status ValidateUpdateLimits(const v1::UpdateLimitsConfig& c,
                                  const std::string& prefix);
// Differential privacy, strategy.dp (part of ValidateStrategyConfig): the
// fields' ranges, and the combinations that would break the guarantee
// (strategy.mode other than sync, a strategy without DP support), each
// naming the field and the fix. `prefix` is the StrategyConfig's.
absl::Status ValidateDpConfig(const v1::StrategyConfig& c,
                              const std::string& prefix);
// The whole fedge-sim configuration, including the parts above.
absl::Status ValidateSimConfig(const v1::SimConfig& c);
// TLS settings of a coordinator (`server`) or an agent.
absl::Status ValidateTlsConfig(const v1::TlsConfig& c, bool server,
                               const std::string& prefix);
// An agent id (chosen with --agent_id, stored in the agent's state dir, or
// the CN of its client certificate): 1 to 256 characters, each a letter, a
// digit, '.', '_' or '-' (hostnames and certificate names fit), so that an
// id printed in a log, a metric label or a file cannot forge anything.
// INVALID_ARGUMENT saying the rule otherwise.
absl::Status ValidateAgentId(absl::string_view id);

// The one form of a bad configuration field's error, INVALID_ARGUMENT:
// "config field 'FIELD' RULE (set it in the config file or with
// --FIELD=VALUE)". `field` is the full path, e.g. "train.batch_size".
absl::Status BadConfigField(const std::string& field, absl::string_view rule);
// OK when value >= min, else BadConfigField's "must be >= MIN, got VALUE".
absl::Status ConfigFieldAtLeast(const std::string& field, int64_t value,
                                int64_t min);

// The most a num_threads field takes (LibTorch's threads, fedge-sim's
// workers): more than a device has cores, and few enough that a typo such
// as 1000 is refused rather than started.
inline constexpr int kMaxNumThreads = 256;
// A num_threads field: `min` <= value <= kMaxNumThreads, else
// INVALID_ARGUMENT naming `field` and the range.
absl::Status ValidateNumThreads(const std::string& field, int value, int min);

// The whole fedge-coordinator configuration.
absl::Status ValidateCoordinatorConfig(const v1::CoordinatorConfig& c);

// The fedge tool's configuration: timeout_seconds >= 1 (a call given no
// time fails at once with DEADLINE_EXCEEDED). INVALID_ARGUMENT naming the
// field otherwise.
absl::Status ValidateToolConfig(const v1::ToolConfig& c);

TrainPlan ToTrainPlan(const v1::TrainPlanConfig& c);
// The train plan as a TrainTask carries it, and back (seed included).
TrainPlan ToTrainPlan(const v1::TrainPlanProto& p);
v1::TrainPlanProto ToTrainPlanProto(const TrainPlan& plan);
// The strategy's options: the StrategyConfig, the base plan of every agent,
// and the federation's seed (selection and per-agent plan seeds).
// The poisoning limits of every update (a validated config).
UpdateLimits ToUpdateLimits(const v1::UpdateLimitsConfig& c);
// StrategyConfig.secure_aggregation (a validated config).
SecureAggregationOptions ToSecureAggregationOptions(
    const v1::SecureAggregationConfig& c);
StrategyOptions ToStrategyOptions(const v1::StrategyConfig& c,
                                  const v1::TrainPlanConfig& train,
                                  uint64_t seed);

// An agent's part in a round's secure aggregation, as TrainTask carries it
// (the coordinator makes it, the agent reads it back).
struct SecAggAssignment {
  secagg::SecAggConfig config;
  int client_id = 0;
  SecureAggregationOptions options;  // clip_range, weight_unit.
  std::string strategy_name;
  UpdateLimits limits;  // Applied by the agent before masking.
  int64_t stage_timeout_ms = 0;
};
v1::SecAggTask ToSecAggTask(const SecAggAssignment& a);
// INVALID_ARGUMENT naming the field for a task no session could have
// (a bad config, a client id outside 1..num_clients, a clip range or weight
// unit not > 0, negative limits).
absl::StatusOr<SecAggAssignment> FromSecAggTask(const v1::SecAggTask& t);

}  // namespace fedge

#endif  // FEDGE_COMMON_FL_CONFIG_H_
