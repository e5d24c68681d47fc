#include "server/coordinator_metrics.h"

#include <limits>
#include <string>
#include <vector>

namespace fedge {
namespace {

// Seconds buckets from 1 ms to ~17 min.
std::vector<double> SecondsBuckets() {
  return {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
          2.5,   5,     10,   30,    60,   120, 300,  1000};
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(MetricsRegistry& r)
    : rounds_completed(r.AddCounter("fedge_rounds_completed_total",
                                    "Rounds closed with a new global model.")
                           .Get()),
      rounds_abandoned(
          r.AddCounter("fedge_rounds_abandoned_total",
                       "Rounds closed without a new model (no quorum, or "
                       "the aggregate was refused).")
              .Get()),
      aggregates_refused(
          r.AddCounter("fedge_aggregates_refused_total",
                       "Rounds with a quorum whose aggregate was refused "
                       "(not finite, too few updates for the strategy): "
                       "the global model was kept.")
              .Get()),
      round_duration(r.AddHistogram("fedge_round_duration_seconds",
                                    "Wall time of each finished round.",
                                    SecondsBuckets())
                         .Get()),
      current_round(
          r.AddGauge("fedge_current_round",
                     "The round in progress, or the last one started.")
              .Get()),
      model_version(r.AddGauge("fedge_model_version",
                               "Version of the published global model.")
                        .Get()),
      paused(r.AddGauge("fedge_paused",
                        "1 while an operator has paused the federation.")
                 .Get()),
      agents_joined(r.AddCounter("fedge_agents_joined_total",
                                 "Successful joins (rejoins included).")
                        .Get()),
      agents_live(r.AddGauge("fedge_agents_live",
                             "Agents in the roster (seen recently).")
                      .Get()),
      agents_selected(r.AddGauge("fedge_agents_selected",
                                 "Agents selected in the round in progress.")
                          .Get()),
      updates(r.AddCounter("fedge_updates_total",
                           "Updates by result (accepted, duplicate, stale, "
                           "invalid, refused, unauthenticated) and reason.",
                           {"result", "reason"})),
      bytes_received(r.AddCounter("fedge_bytes_received_total",
                                  "Update bytes received from agents.")
                         .Get()),
      bytes_sent(r.AddCounter("fedge_bytes_sent_total",
                              "Model bytes streamed to agents.")
                     .Get()),
      aggregation_seconds(
          r.AddHistogram("fedge_aggregation_seconds",
                         "Time to turn a round's updates into the next "
                         "model.",
                         SecondsBuckets())
              .Get()),
      evaluation_seconds(r.AddHistogram("fedge_evaluation_seconds",
                                        "Time of each central evaluation.",
                                        SecondsBuckets())
                             .Get()),
      checkpoint_seconds(r.AddHistogram("fedge_checkpoint_seconds",
                                        "Time to write each checkpoint.",
                                        SecondsBuckets())
                             .Get()),
      checkpoint_failures(r.AddCounter("fedge_checkpoint_failures_total",
                                       "Checkpoint writes that failed.")
                              .Get()),
      evaluation_failures(
          r.AddCounter("fedge_evaluation_failures_total",
                       "Central evaluations that failed or timed out.")
              .Get()),
      central_accuracy(
          r.AddGauge("fedge_central_accuracy",
                     "Test accuracy of the newest evaluated model (0-1; NaN "
                     "until one is evaluated).")
              .Get()),
      central_loss(r.AddGauge("fedge_central_loss",
                              "Test loss of the newest evaluated model (NaN "
                              "until one is evaluated).")
                       .Get()),
      federated_accuracy(
          r.AddGauge("fedge_federated_accuracy",
                     "Example-weighted accuracy of the newest federated "
                     "evaluation (0-1; NaN until there is one).")
              .Get()),
      federated_loss(r.AddGauge("fedge_federated_loss",
                                "Example-weighted loss of the newest "
                                "federated evaluation (NaN until there is "
                                "one).")
                         .Get()),
      privacy_epsilon(
          r.AddGauge("fedge_privacy_epsilon",
                     "Differential privacy: the accountant's epsilon after "
                     "the completed rounds, at fedge_privacy_delta (0 when "
                     "the run is not private; strategy.dp).")
              .Get()),
      privacy_delta(r.AddGauge("fedge_privacy_delta",
                               "Differential privacy: the delta of "
                               "fedge_privacy_epsilon (0 when not private).")
                        .Get()),
      operator_actions(r.AddCounter("fedge_operator_actions_total",
                                    "Operator actions by kind.", {"action"})),
      agent_failures(r.AddCounter("fedge_agent_failures_total",
                                  "Rounds agents gave up (ReportFailure), by "
                                  "reason.",
                                  {"reason"})) {
  // Not evaluated yet: no value, rather than an accuracy of 0.
  for (Gauge* g : {&central_accuracy, &central_loss, &federated_accuracy,
                   &federated_loss}) {
    g->Set(std::numeric_limits<double>::quiet_NaN());
  }
}

void CoordinatorMetrics::Update(absl::string_view result,
                                absl::string_view reason) {
  updates.WithLabels({std::string(result), std::string(reason)}).Increment();
}

}  // namespace fedge
