// The coordinator's Prometheus metrics (served at /metrics by the HTTP
// listener), following Prometheus' naming conventions: base units,
// `_total` for counters, `_seconds` for durations.
//
//   fedge_build_info{version}                  1
//   fedge_rounds_completed_total / fedge_rounds_abandoned_total
//   fedge_aggregates_refused_total             aggregates not finite, ...
//   fedge_round_duration_seconds               histogram
//   fedge_current_round, fedge_model_version, fedge_paused
//   fedge_agents_joined_total, fedge_agents_live, fedge_agents_selected
//   fedge_updates_total{result, reason}        result: accepted, duplicate,
//                                              stale, invalid, refused,
//                                              unauthenticated; the
//                                              poisoning limits' reasons:
//                                              weight_declared, weight_max,
//                                              metrics, norm (invalid) and
//                                              clipped (accepted); the
//                                              upload limits: refused /
//                                              max_uploads_per_agent,
//                                              cancelled /
//                                              upload_idle_timeout_ms and
//                                              cancelled / round_closed
//   fedge_bytes_received_total, fedge_bytes_sent_total
//   fedge_aggregation_seconds, fedge_evaluation_seconds,
//   fedge_checkpoint_seconds                   histograms
//   fedge_checkpoint_failures_total, fedge_evaluation_failures_total
//   fedge_central_accuracy, fedge_central_loss       latest, per round
//   fedge_federated_accuracy, fedge_federated_loss   (federated evaluation)
//   fedge_privacy_epsilon, fedge_privacy_delta  the accountant's guarantee
//                                              after the completed rounds
//                                              (0 when not private)
//   fedge_operator_actions_total{action}
//   fedge_agent_failures_total{reason}         rounds agents gave up, by
//                                              FailureReason (power,
//                                              battery, metered, not_idle,
//                                              time_window, memory, ...)
//
// Thread-safe (the metrics are).
#ifndef FEDGE_SERVER_COORDINATOR_METRICS_H_
#define FEDGE_SERVER_COORDINATOR_METRICS_H_

#include "absl/strings/string_view.h"
#include "common/metrics.h"

namespace fedge {

struct CoordinatorMetrics {
  // Registers every metric in `registry` (which must outlive this).
  explicit CoordinatorMetrics(MetricsRegistry& registry);

  // Counts one update by its result and the reason of a refusal.
  void Update(absl::string_view result, absl::string_view reason);

  Counter& rounds_completed;
  Counter& rounds_abandoned;
  Counter& aggregates_refused;
  Histogram& round_duration;
  Gauge& current_round;
  Gauge& model_version;
  Gauge& paused;
  Counter& agents_joined;
  Gauge& agents_live;
  Gauge& agents_selected;
  CounterFamily& updates;
  Counter& bytes_received;
  Counter& bytes_sent;
  Histogram& aggregation_seconds;
  Histogram& evaluation_seconds;
  Histogram& checkpoint_seconds;
  Counter& checkpoint_failures;
  Counter& evaluation_failures;
  Gauge& central_accuracy;
  Gauge& central_loss;
  Gauge& federated_accuracy;
  Gauge& federated_loss;
  Gauge& privacy_epsilon;
  Gauge& privacy_delta;
  CounterFamily& operator_actions;
  CounterFamily& agent_failures;
};

}  // namespace fedge

#endif  // FEDGE_SERVER_COORDINATOR_METRICS_H_
