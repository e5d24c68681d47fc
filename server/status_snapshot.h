// FederationSnapshot: what the live status page shows, as a plain value the
// coordinator fills under its own lock and then hands off; ToJson() turns
// it into the body of GET /api/status. No behaviour lives here.
//
// Stateless; ToJson is thread-safe.
#ifndef FEDGE_SERVER_STATUS_SNAPSHOT_H_
#define FEDGE_SERVER_STATUS_SNAPSHOT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fedge {

// Differential privacy (strategy.dp): the accountant's guarantee so far.
struct PrivacyStatus {
  std::string mode;    // "central" or "local".
  double epsilon = 0;  // After the completed rounds; null in JSON if inf.
  double delta = 0;
  double max_epsilon = 0;         // The budget; 0 = none.
  int64_t rounds = 0;             // Rounds accounted.
  bool budget_exhausted = false;  // The run stopped at the budget.
};

struct FederationStatus {
  std::string state;  // The federation state's name, e.g. "IN_PROGRESS".
  bool paused = false;
  int64_t current_round = 0;     // The open round, 0 before the first.
  int64_t completed_rounds = 0;  // Rounds closed with an aggregate.
  int64_t total_rounds = 0;      // Rounds the federation will run.
  int64_t model_version = 0;
  std::string model_sha256;  // Lowercase hex of the global model.
  std::string strategy;      // e.g. "FedAvg".
  int64_t started_unix_ms = 0;
  int64_t now_unix_ms = 0;  // When the snapshot was taken.
  std::optional<PrivacyStatus> privacy;  // Unset: the run is not private.
};

// The round being run.
struct CurrentRoundStatus {
  int64_t round = 0;
  int selected = 0;  // Agents asked to train.
  int reported = 0;  // Updates received.
  int failed = 0;    // Selected agents that failed or timed out.
  int64_t deadline_remaining_ms = 0;  // 0 once the deadline has passed.
  int64_t elapsed_ms = 0;
};

struct AgentStatus {
  std::string id;
  std::string device_class;
  // One of "idle", "training", "reported", "failed", "evicted".
  std::string state;
  // Unset for an evicted agent: it is out of the roster, not seen.
  std::optional<int64_t> last_seen_ms_ago;
  int64_t rounds_contributed = 0;
};

// One round of the history. Unset optionals (and non-finite values) are
// null in the JSON.
struct RoundStatus {
  int64_t round = 0;
  bool completed = false;  // False for a round that was abandoned.
  int num_agents = 0;      // Updates aggregated.
  int num_failed = 0;
  int64_t num_examples = 0;
  double train_loss = 0;
  double train_accuracy = 0;
  std::optional<double> test_loss;  // Central evaluation.
  std::optional<double> test_accuracy;
  std::optional<double> fed_eval_loss;  // Federated evaluation.
  std::optional<double> fed_eval_accuracy;
  int64_t bytes_received = 0;
  int64_t bytes_sent = 0;
  double round_seconds = 0;
};

// A join or update the coordinator refused.
struct RefusalStatus {
  int64_t unix_ms = 0;
  std::string agent_id;
  std::string reason;
};

struct FederationSnapshot {
  FederationStatus federation;
  std::optional<CurrentRoundStatus> current_round;  // Unset between rounds.
  std::vector<AgentStatus> agents;
  std::vector<RoundStatus> rounds;      // Oldest first.
  std::vector<RefusalStatus> refusals;  // Most recent last.
};

// The snapshot as one line of JSON (RFC 8259) with the field names above:
//   {"federation":{...,"privacy":{...}|null},"current_round":{...}|null,
//    "agents":[...],
//    "rounds":[...],"refusals":[...]}
// Strings are escaped (quote, backslash, control characters; invalid
// UTF-8 becomes U+FFFD; other characters pass through as UTF-8); unset
// optionals and NaN/infinite doubles are null.
std::string ToJson(const FederationSnapshot& snapshot);

}  // namespace fedge

#endif  // FEDGE_SERVER_STATUS_SNAPSHOT_H_
