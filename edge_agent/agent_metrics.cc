#include "edge_agent/agent_metrics.h"

namespace fedge {

AgentMetrics::AgentMetrics(MetricsRegistry& r)
    : joins(r.AddCounter("fedge_device_joins_total",
                         "Successful joins to the coordinator.")
                .Get()),
      rounds_trained(r.AddCounter("fedge_device_rounds_trained_total",
                                  "Local trainings completed.")
                         .Get()),
      train_seconds(r.AddCounter("fedge_device_train_seconds_total",
                                 "Time spent in completed local trainings.")
                        .Get()),
      updates(r.AddCounter("fedge_device_updates_total",
                           "Updates trained, by result: accepted by the "
                           "coordinator, or dropped.",
                           {"result"})),
      updates_accepted(updates.WithLabels({"accepted"})),
      updates_dropped(updates.WithLabels({"dropped"})),
      bytes_received(r.AddCounter("fedge_device_bytes_received_total",
                                  "Global models downloaded, in bytes as "
                                  "encoded.")
                         .Get()),
      bytes_sent(r.AddCounter("fedge_device_bytes_sent_total",
                              "Updates accepted, in bytes as encoded.")
                     .Get()),
      last_round(
          r.AddGauge("fedge_device_last_round", "The last round trained.")
              .Get()),
      model_version(r.AddGauge("fedge_device_model_version",
                               "The newest global model version held.")
                        .Get()),
      trainings_interrupted(
          r.AddCounter("fedge_device_trainings_interrupted_total",
                       "Local trainings stopped by a failed device "
                       "condition.")
              .Get()),
      rounds_given_up(r.AddCounter("fedge_device_rounds_given_up_total",
                                   "Rounds given up (ReportFailure).")
                          .Get()) {}

}  // namespace fedge
