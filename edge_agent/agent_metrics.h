// fedge-agent's Prometheus metrics, served at /metrics when the agent is
// started with --metrics_address (agent_runner.cc). Prefix fedge_device_,
// so that they never mix with the coordinator's fedge_agent_* (what the
// coordinator sees of its agents):
//
//   fedge_build_info{version}                  1
//   fedge_device_joins_total                   successful Joins
//   fedge_device_rounds_trained_total          local trainings completed
//   fedge_device_train_seconds_total           time spent in them
//   fedge_device_updates_total{result}         accepted, dropped
//   fedge_device_bytes_received_total          models downloaded (as encoded)
//   fedge_device_bytes_sent_total              updates sent (as encoded)
//   fedge_device_last_round                    the last round trained
//   fedge_device_model_version                 the newest global model held
//   fedge_device_trainings_interrupted_total   stopped by a device condition
//   fedge_device_rounds_given_up_total         given up (ReportFailure)
//
// Thread-safe (the metrics are).
#ifndef FEDGE_EDGE_AGENT_AGENT_METRICS_H_
#define FEDGE_EDGE_AGENT_AGENT_METRICS_H_

#include "common/metrics.h"

namespace fedge {

struct AgentMetrics {
  // Registers every metric in `registry` (which must outlive this).
  explicit AgentMetrics(MetricsRegistry& registry);

  Counter& joins;
  Counter& rounds_trained;
  Counter& train_seconds;
  CounterFamily& updates;  // Declared before its children below.
  Counter& updates_accepted;
  Counter& updates_dropped;
  Counter& bytes_received;
  Counter& bytes_sent;
  Gauge& last_round;
  Gauge& model_version;
  Counter& trainings_interrupted;
  Counter& rounds_given_up;
};

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_AGENT_METRICS_H_
