#include "common/fl_config.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/host_port.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

absl::Status Bad(const std::string& prefix, const char* field,
                 const std::string& rule) {
  return BadConfigField(prefix + field, rule);
}

absl::Status AtLeast(const std::string& prefix, const char* field,
                     int64_t value, int64_t min) {
  return ConfigFieldAtLeast(prefix + field, value, min);
}

absl::Status InRange(const std::string& prefix, const char* field, double value,
                     double lo, double hi, bool lo_open) {
  const bool ok = std::isfinite(value) &&
                  (lo_open ? value > lo : value >= lo) && value <= hi;
  if (ok) return absl::OkStatus();
  return Bad(prefix, field,
             absl::StrCat("must be in ", lo_open ? "(" : "[", lo, ", ", hi,
                          "], got ", value));
}

bool OneOf(const std::string& v, std::initializer_list<const char*> options) {
  for (const char* o : options) {
    if (v == o) return true;
  }
  return false;
}

}  // namespace

absl::Status ValidateModelConfig(const v1::ModelConfig& c,
                                 const std::string& p) {
  if (!OneOf(c.architecture(),
             {"logreg", "2nn", "mlp", "cnn", "mobile_cnn", "mobilenet_v2",
              "shufflenet_v2", "squeezenet", "torchscript"})) {
    return Bad(p, "architecture",
               absl::StrCat("must be one of logreg, 2nn, mlp, cnn, mobile_cnn,"
                            " mobilenet_v2, shufflenet_v2, squeezenet, "
                            "torchscript; got '",
                            c.architecture(), "'"));
  }
  if (c.architecture() == "torchscript" && c.torchscript_path().empty()) {
    return Bad(p, "torchscript_path",
               "must name the TorchScript archive for architecture "
               "'torchscript' (see examples/torchscript_cnn/)");
  }
  if (c.architecture() == "mlp" && c.hidden_units_size() == 0) {
    return Bad(p, "hidden_units", "must list the hidden widths for 'mlp'");
  }
  for (int h : c.hidden_units()) {
    RETURN_IF_ERROR(AtLeast(p, "hidden_units", h, 1));
  }
  return InRange(p, "width_multiplier", c.width_multiplier(), 0, 4, true);
}

absl::Status ValidateDataConfig(const v1::DataConfig& c, const std::string& p) {
  if (!OneOf(c.source(), {"mnist", "idx", "csv", "npy", "synthetic"})) {
    return Bad(p, "source",
               absl::StrCat("must be one of mnist, idx, csv, npy, "
                            "synthetic; got '",
                            c.source(), "'"));
  }
  if (c.source() == "idx" &&
      (c.idx_train_images().empty() || c.idx_train_labels().empty())) {
    return Bad(p, "idx_train_images",
               "and idx_train_labels are required for "
               "source 'idx'");
  }
  if (c.source() == "csv" && c.csv_train_path().empty()) {
    return Bad(p, "csv_train_path", "is required for source 'csv'");
  }
  if (c.source() == "npy" &&
      (c.npy_train_features().empty() || c.npy_train_labels().empty())) {
    return Bad(p, "npy_train_features",
               "and npy_train_labels are required for source 'npy'");
  }
  if (c.source() == "npy" &&
      c.npy_test_features().empty() != c.npy_test_labels().empty()) {
    return Bad(p, "npy_test_features",
               "and npy_test_labels must be set together");
  }
  RETURN_IF_ERROR(
      AtLeast(p, "synthetic_train_examples", c.synthetic_train_examples(), 1));
  RETURN_IF_ERROR(
      AtLeast(p, "synthetic_test_examples", c.synthetic_test_examples(), 1));
  RETURN_IF_ERROR(
      AtLeast(p, "synthetic_num_classes", c.synthetic_num_classes(), 2));
  RETURN_IF_ERROR(InRange(p, "synthetic_separation", c.synthetic_separation(),
                          0, 1e6, true));
  RETURN_IF_ERROR(AtLeast(p, "max_train_examples", c.max_train_examples(), 0));
  return AtLeast(p, "max_test_examples", c.max_test_examples(), 0);
}

absl::Status ValidatePartitionConfig(const v1::PartitionConfig& c,
                                     const std::string& p) {
  if (!OneOf(c.method(), {"iid", "dirichlet", "shards"})) {
    return Bad(p, "method",
               absl::StrCat("must be one of iid, dirichlet, "
                            "shards; got '",
                            c.method(), "'"));
  }
  RETURN_IF_ERROR(
      InRange(p, "dirichlet_alpha", c.dirichlet_alpha(), 0, 1e9, true));
  return AtLeast(p, "shards_per_agent", c.shards_per_agent(), 1);
}

absl::Status ValidateTrainPlan(const v1::TrainPlanConfig& c,
                               const std::string& p) {
  RETURN_IF_ERROR(AtLeast(p, "epochs", c.epochs(), 1));
  RETURN_IF_ERROR(AtLeast(p, "batch_size", c.batch_size(), 1));
  RETURN_IF_ERROR(InRange(p, "learning_rate", c.learning_rate(), 0, 100, true));
  RETURN_IF_ERROR(InRange(p, "momentum", c.momentum(), 0, 0.999, false));
  RETURN_IF_ERROR(InRange(p, "weight_decay", c.weight_decay(), 0, 1, false));
  return InRange(p, "proximal_mu", c.proximal_mu(), 0, 1e3, false);
}

absl::Status ValidateUpdateLimits(const v1::UpdateLimitsConfig& c,
                                  const std::string& p) {
  // 2^40 examples: the most any update may claim (UpdateMetadata's check).
  constexpr int64_t kMaxExamples = int64_t{1} << 40;
  if (c.max_examples_per_update() < 0 ||
      c.max_examples_per_update() > kMaxExamples) {
    return Bad(
        p, "max_examples_per_update",
        absl::StrCat("must be in [0, ", kMaxExamples,
                     "] (0 = no maximum), got ", c.max_examples_per_update()));
  }
  RETURN_IF_ERROR(
      InRange(p, "update_norm_bound", c.update_norm_bound(), 0, 1e300, false));
  if (!OneOf(c.update_norm_action(), {"refuse", "clip"})) {
    return Bad(p, "update_norm_action",
               absl::StrCat("must be refuse or clip, got '",
                            c.update_norm_action(), "'"));
  }
  return absl::OkStatus();
}

static absl::Status ValidateSecureAggregation(const v1::StrategyConfig& c,
                                              const std::string& p) {
  const v1::SecureAggregationConfig& s = c.secure_aggregation();
  const std::string sp = p + "secure_aggregation.";
  RETURN_IF_ERROR(AtLeast(sp, "threshold", s.threshold(), 0));
  RETURN_IF_ERROR(AtLeast(sp, "neighbors", s.neighbors(), 0));
  if (s.neighbors() == 1 || s.neighbors() % 2 != 0) {
    return Bad(sp, "neighbors",
               absl::StrCat("must be 0 (complete graph) or an even number "
                            ">= 2, got ",
                            s.neighbors()));
  }
  if (s.neighbors() > 0 && s.threshold() > s.neighbors() + 1) {
    return Bad(
        sp, "threshold",
        absl::StrCat("must be <= neighbors + 1 (", s.neighbors() + 1,
                     ", the agents of a neighbourhood), got ", s.threshold()));
  }
  RETURN_IF_ERROR(InRange(sp, "clip_range", s.clip_range(), 0, 1e9, true));
  RETURN_IF_ERROR(InRange(sp, "weight_unit", s.weight_unit(), 0, 1e12, false));
  RETURN_IF_ERROR(AtLeast(sp, "stage_timeout_ms", s.stage_timeout_ms(), 100));
  if (!s.enabled()) return absl::OkStatus();
  if (!IsSumOnlyStrategy(c.name())) {
    return Bad(sp, "enabled",
               absl::StrCat("secure aggregation gives the coordinator only "
                            "the sum of the updates, which strategy '",
                            c.name(),
                            "' cannot use; choose fedavg, fedavgm, fedprox, "
                            "fednova, fedadam, fedyogi or fedadagrad, or set "
                            "enabled to false"));
  }
  if (c.mode() != "sync") {
    return Bad(sp, "enabled",
               "secure aggregation needs strategy.mode sync (fedbuff folds "
               "updates one by one); set mode to sync or enabled to false");
  }
  if (c.update_encoding() != "fp32") {
    return Bad(sp, "enabled",
               absl::StrCat("masked updates are fixed point in a ring, not '",
                            c.update_encoding(),
                            "': set strategy.update_encoding to fp32"));
  }
  for (int i = 0; i < c.device_plans_size(); ++i) {
    const std::string& e = c.device_plans(i).update_encoding();
    if (!e.empty() && e != "fp32") {
      return Bad(sp, "enabled",
                 absl::StrCat("masked updates are fixed point in a ring: set "
                              "strategy.device_plans[",
                              i, "].update_encoding to fp32, not '", e, "'"));
    }
  }
  if (c.count() == 1) {
    return Bad(sp, "enabled",
               "a round with secure aggregation needs at least 2 agents: set "
               "strategy.count to 0 or >= 2");
  }
  return absl::OkStatus();
}

absl::Status ValidateDpConfig(const v1::StrategyConfig& s,
                              const std::string& strategy_prefix) {
  const v1::DpConfig& c = s.dp();
  const std::string p = strategy_prefix + "dp.";
  if (!OneOf(c.mode(), {"off", "central", "local"})) {
    return Bad(
        p, "mode",
        absl::StrCat("must be off, central or local, got '", c.mode(), "'"));
  }
  if (c.mode() == "off") return absl::OkStatus();
  RETURN_IF_ERROR(InRange(p, "clip_norm", c.clip_norm(), 0, 1e30, true));
  RETURN_IF_ERROR(
      InRange(p, "noise_multiplier", c.noise_multiplier(), 0, 1e6, true));
  if (!(c.delta() > 0 && c.delta() < 1)) {
    return Bad(p, "delta",
               absl::StrCat("must be in (0, 1) (e.g. 1e-5, below 1 / the "
                            "number of agents), got ",
                            c.delta()));
  }
  RETURN_IF_ERROR(InRange(p, "max_epsilon", c.max_epsilon(), 0, 1e6, false));
  // The combinations that would break the guarantee, each with its fix.
  const char* why =
      "DP-FedAvg's guarantee needs every clipped update to enter one "
      "uniform-weight sum per round, over a fixed denominator";
  if (s.mode() != "sync") {
    return Bad(
        strategy_prefix, "mode",
        absl::StrCat("must be sync with ", p, "mode = ", c.mode(), " (", why,
                     "; fedbuff's staleness weights break it), "
                     "got '",
                     s.mode(), "'"));
  }
  if (!SupportsDifferentialPrivacy(s.name())) {
    return Bad(strategy_prefix, "name",
               absl::StrCat("must be fedavg, fedprox, fedavgm, fedadam, "
                            "fedyogi or fedadagrad with ",
                            p, "mode = ", c.mode(), " (", why,
                            "; robust rules, fednova's step weights and "
                            "scaffold's control variates break it), got '",
                            s.name(), "'"));
  }
  return absl::OkStatus();
}

absl::Status ValidateStrategyConfig(const v1::StrategyConfig& c,
                                    const std::string& p) {
  RETURN_IF_ERROR(InRange(p, "fraction", c.fraction(), 0, 1, true));
  RETURN_IF_ERROR(AtLeast(p, "count", c.count(), 0));
  RETURN_IF_ERROR(
      AtLeast(p, "min_available_agents", c.min_available_agents(), 1));
  RETURN_IF_ERROR(AtLeast(p, "min_fit_agents", c.min_fit_agents(), 1));
  if (c.min_fit_agents() > c.min_available_agents()) {
    return Bad(
        p, "min_fit_agents",
        absl::StrCat("must be <= min_available_agents (",
                     c.min_available_agents(), "), got ", c.min_fit_agents()));
  }
  RETURN_IF_ERROR(AtLeast(p, "round_deadline_ms", c.round_deadline_ms(), 1));
  RETURN_IF_ERROR(InRange(p, "server_learning_rate", c.server_learning_rate(),
                          0, 100, true));
  RETURN_IF_ERROR(
      AtLeast(p, "evaluate_deadline_ms", c.evaluate_deadline_ms(), 1));
  if (c.mode() != "sync" && c.mode() != "fedbuff") {
    return Bad(p, "mode",
               absl::StrCat("must be sync or fedbuff, got '", c.mode(), "'"));
  }
  if (c.mode() == "fedbuff") {
    RETURN_IF_ERROR(
        AtLeast(p, "fedbuff_buffer_size", c.fedbuff_buffer_size(), 1));
    RETURN_IF_ERROR(
        AtLeast(p, "fedbuff_max_staleness", c.fedbuff_max_staleness(), 0));
    RETURN_IF_ERROR(
        AtLeast(p, "fedbuff_concurrency", c.fedbuff_concurrency(), 0));
    if (c.name() == "scaffold" || c.name() == "median" ||
        c.name() == "trimmed_mean" || c.name() == "krum" ||
        c.name() == "multi_krum") {
      return Bad(p, "mode",
                 absl::StrCat("fedbuff works with the averaging strategies, "
                              "not '",
                              c.name(), "'"));
    }
  }
  if (absl::Status e = ParseUpdateEncoding(c.update_encoding()).status();
      !e.ok()) {
    return Bad(p, "update_encoding", std::string(e.message()));
  }
  RETURN_IF_ERROR(InRange(p, "topk_fraction", c.topk_fraction(), 0, 1, true));
  if (absl::Status e = ParseDownloadEncoding(c.download_encoding()).status();
      !e.ok()) {
    return Bad(p, "download_encoding", std::string(e.message()));
  }
  for (int i = 0; i < c.device_plans_size(); ++i) {
    const v1::DeviceClassPlanConfig& d = c.device_plans(i);
    const std::string dp = absl::StrCat(p, "device_plans[", i, "].");
    if (!d.update_encoding().empty()) {
      if (absl::Status e = ParseUpdateEncoding(d.update_encoding()).status();
          !e.ok()) {
        return Bad(dp, "update_encoding", std::string(e.message()));
      }
    }
    RETURN_IF_ERROR(AtLeast(dp, "epochs", d.epochs(), 0));
    RETURN_IF_ERROR(AtLeast(dp, "max_steps", d.max_steps(), 0));
  }
  RETURN_IF_ERROR(
      ValidateUpdateLimits(c.update_limits(), p + "update_limits."));
  RETURN_IF_ERROR(ValidateSecureAggregation(c, p));
  RETURN_IF_ERROR(ValidateDpConfig(c, p));
  if (c.secure_aggregation().enabled() && c.dp().mode() != "off") {
    // Under secure aggregation the coordinator can neither clip each
    // update nor weigh them uniformly, which DP-FedAvg's guarantee needs.
    return Bad(p + "dp.", "mode",
               absl::StrCat("must be off with secure_aggregation.enabled "
                            "(the coordinator sees only the masked sum, so "
                            "it cannot clip or weigh each update as DP-FedAvg "
                            "needs); got '",
                            c.dp().mode(), "'"));
  }
  // The strategy's own ranges (its messages name strategy.<field>).
  StrategyOptions options = ToStrategyOptions(c, v1::TrainPlanConfig(), 0);
  return ValidateStrategyOptions(options);
}

absl::Status BadConfigField(const std::string& field, absl::string_view rule) {
  return absl::InvalidArgumentError(
      absl::StrCat("config field '", field, "' ", rule,
                   " (set it in the config file or with --", field, "=VALUE)"));
}

absl::Status ConfigFieldAtLeast(const std::string& field, int64_t value,
                                int64_t min) {
  if (value >= min) return absl::OkStatus();
  return BadConfigField(field,
                        absl::StrCat("must be >= ", min, ", got ", value));
}

absl::Status ValidateNumThreads(const std::string& field, int value, int min) {
  if (value >= min && value <= kMaxNumThreads) return absl::OkStatus();
  return BadConfigField(field, absl::StrCat("must be in [", min, ", ",
                                            kMaxNumThreads, "], got ", value));
}

absl::Status ValidateSimConfig(const v1::SimConfig& c) {
  RETURN_IF_ERROR(AtLeast(std::string(), "num_agents", c.num_agents(), 1));
  RETURN_IF_ERROR(AtLeast(std::string(), "rounds", c.rounds(), 1));
  RETURN_IF_ERROR(ValidateNumThreads("num_threads", c.num_threads(), 0));
  RETURN_IF_ERROR(
      AtLeast(std::string(), "eval_every_rounds", c.eval_every_rounds(), 1));
  RETURN_IF_ERROR(InRange(std::string(), "stop_at_accuracy",
                          c.stop_at_accuracy(), 0, 1, false));
  RETURN_IF_ERROR(InRange(std::string(), "agent_dropout_probability",
                          c.agent_dropout_probability(), 0, 1, false));
  RETURN_IF_ERROR(
      AtLeast(std::string(), "poisoned_agents", c.poisoned_agents(), 0));
  RETURN_IF_ERROR(AtLeast(std::string(), "max_abandoned_rounds",
                          c.max_abandoned_rounds(), 0));
  RETURN_IF_ERROR(
      AtLeast(std::string(), "random_epochs_max", c.random_epochs_max(), 0));
  // The simulator's agents are all there is: a count above num_agents could
  // never be selected (it used to be lowered to num_agents without a word).
  if (c.strategy().count() > c.num_agents()) {
    return Bad("strategy.", "count",
               absl::StrCat("must be <= num_agents (", c.num_agents(),
                            "), got ", c.strategy().count()));
  }
  if (c.poisoned_agents() > c.num_agents()) {
    return Bad(std::string(), "poisoned_agents",
               absl::StrCat("must be <= num_agents (", c.num_agents(),
                            "), got ", c.poisoned_agents()));
  }
  RETURN_IF_ERROR(InRange(std::string(), "poison_scale", c.poison_scale(), -1e6,
                          1e6, false));
  const v1::DeviceSpeedConfig& speed = c.device_speed();
  RETURN_IF_ERROR(InRange("device_speed.", "examples_per_second",
                          speed.examples_per_second(), 0, 1e12, false));
  RETURN_IF_ERROR(InRange("device_speed.", "slow_fraction",
                          speed.slow_fraction(), 0, 1, false));
  RETURN_IF_ERROR(InRange("device_speed.", "slow_factor", speed.slow_factor(),
                          1, 1e6, false));
  RETURN_IF_ERROR(InRange("device_speed.", "task_overhead_seconds",
                          speed.task_overhead_seconds(), 0, 1e6, false));
  if (c.strategy().mode() == "fedbuff" && speed.examples_per_second() <= 0) {
    return Bad("device_speed.", "examples_per_second",
               "must be > 0 with strategy.mode=fedbuff (it runs on "
               "simulated time)");
  }
  RETURN_IF_ERROR(ValidateModelConfig(c.model(), "model."));
  RETURN_IF_ERROR(ValidateDataConfig(c.data(), "data."));
  RETURN_IF_ERROR(ValidatePartitionConfig(c.partition(), "partition."));
  RETURN_IF_ERROR(ValidateTrainPlan(c.train(), "train."));
  return ValidateStrategyConfig(c.strategy(), "strategy.");
}

absl::Status ValidateTlsConfig(const v1::TlsConfig& c, bool server,
                               const std::string& p) {
  if (c.insecure()) return absl::OkStatus();
  const char* fix =
      "is required unless tls.insecure=true (developer mode); "
      "deploy/make-certs.sh creates certificates";
  if (server && c.cert_path().empty()) return Bad(p, "cert_path", fix);
  if (server && c.key_path().empty()) return Bad(p, "key_path", fix);
  if (!server && c.ca_path().empty()) return Bad(p, "ca_path", fix);
  if (c.require_client_cert() && c.ca_path().empty()) {
    return Bad(p, "ca_path", "is required with require_client_cert");
  }
  if (c.cert_path().empty() != c.key_path().empty()) {
    return Bad(p, "key_path", "and cert_path must be set together");
  }
  return absl::OkStatus();
}

namespace {

// Edge aggregator mode: the upstream session, and what composes (an edge
// aggregator's update must be its agents' example-weighted mean delta, so
// that the upstream's aggregate equals a flat federation's; docs/
// hierarchy.md).
absl::Status ValidateUpstreamConfig(const v1::CoordinatorConfig& c) {
  const v1::UpstreamConfig& u = c.upstream();
  const std::string p = "upstream.";
  if (u.address().empty()) return absl::OkStatus();
  if (u.agent_id().empty() && u.tls().cert_path().empty()) {
    return Bad(p, "agent_id",
               "must name this edge aggregator upstream (or use a client "
               "certificate: upstream.tls.cert_path)");
  }
  RETURN_IF_ERROR(AtLeast(p, "initial_backoff_ms", u.initial_backoff_ms(), 1));
  RETURN_IF_ERROR(
      AtLeast(p, "max_backoff_ms", u.max_backoff_ms(), u.initial_backoff_ms()));
  RETURN_IF_ERROR(AtLeast(p, "keepalive_time_ms", u.keepalive_time_ms(), 1000));
  RETURN_IF_ERROR(AtLeast(p, "upload_margin_ms", u.upload_margin_ms(), 0));
  RETURN_IF_ERROR(
      ValidateTlsConfig(u.tls(), /*server=*/false, "upstream.tls."));
  for (const std::string& path : u.model_signing_public_key_paths()) {
    if (path.empty()) {
      return Bad(p, "model_signing_public_key_paths", "has an empty path");
    }
  }
  const v1::StrategyConfig& s = c.strategy();
  const char* why =
      "with upstream.address set (an edge aggregator sends its agents' "
      "example-weighted mean delta upstream; the upstream applies its own "
      "strategy: fedavg, fedprox, fedavgm, fedadam, fedyogi or fedadagrad "
      "compose, docs/hierarchy.md)";
  if (s.name() != "fedavg") {
    return Bad("strategy.", "name",
               absl::StrCat("must be fedavg ", why, ", got '", s.name(), "'"));
  }
  if (s.server_learning_rate() != 1.0) {
    return Bad(
        "strategy.", "server_learning_rate",
        absl::StrCat("must be 1 ", why, ", got ", s.server_learning_rate()));
  }
  if (s.mode() != "sync") {
    return Bad("strategy.", "mode",
               absl::StrCat("must be sync ", why, ", got '", s.mode(), "'"));
  }
  if (s.fraction_evaluate() != 0) {
    return Bad("strategy.", "fraction_evaluate",
               "must be 0 with upstream.address set (federated evaluation "
               "is the upstream's; an edge aggregator does not answer "
               "evaluate tasks)");
  }
  if (s.device_plans_size() > 0 || s.local_time_budget_ms() > 0) {
    return Bad("strategy.", "device_plans",
               "and local_time_budget_ms must be unset with upstream.address "
               "set (the plan comes from the upstream's task)");
  }
  if (s.dp().mode() != "off") {
    return Bad("strategy.dp.", "mode",
               "must be off with upstream.address set (privacy is the "
               "upstream's: its plan tells the agents to clip, and it clips "
               "and noises the aggregate; docs/privacy.md)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateCoordinatorConfig(const v1::CoordinatorConfig& c) {
  const std::string top;
  if (!absl::StartsWith(c.listen_address(), "unix:")) {
    std::string host;
    int port = 0;
    if (absl::Status s = ParseHostPort(c.listen_address(), &host, &port);
        !s.ok()) {
      return Bad(top, "listen_address",
                 absl::StrCat("must be HOST:PORT or unix:PATH: ", s.message()));
    }
  }
  if (c.state_dir().empty()) return Bad(top, "state_dir", "must be set");
  RETURN_IF_ERROR(AtLeast(top, "rounds", c.rounds(), 1));
  RETURN_IF_ERROR(AtLeast(top, "keep_checkpoints", c.keep_checkpoints(), 1));
  RETURN_IF_ERROR(
      AtLeast(top, "heartbeat_interval_ms", c.heartbeat_interval_ms(), 10));
  RETURN_IF_ERROR(AtLeast(top, "agent_timeout_ms", c.agent_timeout_ms(),
                          c.heartbeat_interval_ms()));
  RETURN_IF_ERROR(AtLeast(top, "poll_wait_ms", c.poll_wait_ms(), 1));
  RETURN_IF_ERROR(AtLeast(top, "eval_timeout_ms", c.eval_timeout_ms(), 100));
  RETURN_IF_ERROR(AtLeast(top, "finish_linger_ms", c.finish_linger_ms(), 0));
  RETURN_IF_ERROR(
      AtLeast(top, "max_concurrent_uploads", c.max_concurrent_uploads(), 1));
  RETURN_IF_ERROR(AtLeast(top, "max_update_bytes", c.max_update_bytes(), 1));
  RETURN_IF_ERROR(
      InRange(top, "chunk_bytes", c.chunk_bytes(), 1024, 4 << 20, false));
  RETURN_IF_ERROR(AtLeast(top, "simulation.num_partitions",
                          c.simulation().num_partitions(), 1));
  RETURN_IF_ERROR(ValidatePartitionConfig(c.simulation().partition(),
                                          "simulation.partition."));
  RETURN_IF_ERROR(ValidateModelConfig(c.model(), "model."));
  RETURN_IF_ERROR(ValidateTrainPlan(c.train(), "train."));
  RETURN_IF_ERROR(ValidateStrategyConfig(c.strategy(), "strategy."));
  if (c.strategy().secure_aggregation().enabled() &&
      !c.upstream().address().empty()) {
    return Bad("strategy.secure_aggregation.", "enabled",
               "an edge aggregator forwards its agents' mean update upstream, "
               "which it could not compute from masked inputs: set it to "
               "false (or run the edge's federation without upstream)");
  }
  if (c.has_eval_data()) {
    RETURN_IF_ERROR(ValidateDataConfig(c.eval_data(), "eval_data."));
  }
  // Capacity (config.proto). Fewer than 4 streams per connection would make
  // an agent's heartbeat wait behind its upload.
  RETURN_IF_ERROR(AtLeast(top, "max_connections", c.max_connections(), 1));
  RETURN_IF_ERROR(AtLeast(top, "max_concurrent_streams_per_connection",
                          c.max_concurrent_streams_per_connection(), 4));
  RETURN_IF_ERROR(
      AtLeast(top, "handshake_timeout_ms", c.handshake_timeout_ms(), 100));
  RETURN_IF_ERROR(InRange(top, "tls_max_frame_bytes", c.tls_max_frame_bytes(),
                          1024, 16384, false));
  const int64_t min_quota_mb = 16 + (int64_t{c.max_connections()} + 63) / 64;
  if (c.grpc_memory_quota_mb() < min_quota_mb) {
    return Bad(
        top, "grpc_memory_quota_mb",
        absl::StrCat("must be >= ", min_quota_mb, " (16 plus 16 KiB ",
                     "per connection of max_connections=", c.max_connections(),
                     "), got ", c.grpc_memory_quota_mb()));
  }
  RETURN_IF_ERROR(ValidateTlsConfig(c.tls(), /*server=*/true, "tls."));
  // Upload limits and revocation (docs/security.md).
  RETURN_IF_ERROR(
      AtLeast(top, "upload_idle_timeout_ms", c.upload_idle_timeout_ms(), 100));
  RETURN_IF_ERROR(
      AtLeast(top, "max_uploads_per_agent", c.max_uploads_per_agent(), 1));
  if (!c.tls().crl_path().empty() && !c.tls().require_client_cert()) {
    return Bad("tls.", "crl_path",
               "revokes client certificates: it needs "
               "tls.require_client_cert=true (mutual TLS)");
  }
  RETURN_IF_ERROR(AtLeast("tls.", "crl_reload_interval_ms",
                          c.tls().crl_reload_interval_ms(), 10));
  return ValidateUpstreamConfig(c);
}

absl::Status ValidateToolConfig(const v1::ToolConfig& c) {
  return AtLeast("", "timeout_seconds", c.timeout_seconds(), 1);
}

absl::Status ValidateAgentId(absl::string_view id) {
  constexpr size_t kMaxAgentIdBytes = 256;
  const bool fits =
      !id.empty() && id.size() <= kMaxAgentIdBytes &&
      std::all_of(id.begin(), id.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
               c == '_' || c == '-';
      });
  if (fits) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "agent id '", absl::CHexEscape(id.substr(0, 64)),
      id.size() > 64 ? "...'" : "'",
      " is not 1 to 256 letters, digits, '.', '_' or '-' (set --agent_id, or "
      "the CN of the client certificate)"));
}

namespace {

// The fields the configured plan (TrainPlanConfig) and the plan on the
// wire (TrainPlanProto) share.
template <typename PlanMessage>
TrainPlan CommonPlanFields(const PlanMessage& m) {
  TrainPlan plan;
  plan.epochs = m.epochs();
  plan.batch_size = m.batch_size();
  plan.learning_rate = m.learning_rate();
  plan.momentum = m.momentum();
  plan.weight_decay = m.weight_decay();
  plan.proximal_mu = m.proximal_mu();
  plan.keep_pruned = m.keep_pruned();
  return plan;
}

}  // namespace

TrainPlan ToTrainPlan(const v1::TrainPlanConfig& c) {
  return CommonPlanFields(c);
}

TrainPlan ToTrainPlan(const v1::TrainPlanProto& p) {
  TrainPlan plan = CommonPlanFields(p);
  plan.seed = p.seed();
  plan.max_steps = p.max_steps();
  if (!p.update_encoding().empty()) {
    absl::StatusOr<UpdateEncoding> kind =
        ParseUpdateEncoding(p.update_encoding());
    // An unknown encoding (a newer coordinator) falls back to raw fp32,
    // which every coordinator accepts.
    if (kind.ok()) plan.update_encoding.kind = *kind;
  }
  if (p.topk_fraction() > 0 && p.topk_fraction() <= 1) {
    plan.update_encoding.topk_fraction = p.topk_fraction();
  }
  plan.update_encoding.per_channel = p.int8_per_channel();
  plan.update_encoding.seed = p.seed();
  // Values out of range (a newer or broken coordinator) are ignored.
  auto usable = [](double v) { return v > 0 && std::isfinite(v); };
  if (usable(p.dp_clip_norm())) plan.dp_clip_norm = p.dp_clip_norm();
  if (usable(p.dp_noise_stddev())) plan.dp_noise_stddev = p.dp_noise_stddev();
  return plan;
}

v1::TrainPlanProto ToTrainPlanProto(const TrainPlan& plan) {
  v1::TrainPlanProto p;
  p.set_epochs(plan.epochs);
  p.set_batch_size(plan.batch_size);
  p.set_learning_rate(plan.learning_rate);
  p.set_momentum(plan.momentum);
  p.set_weight_decay(plan.weight_decay);
  p.set_proximal_mu(plan.proximal_mu);
  p.set_keep_pruned(plan.keep_pruned);
  p.set_seed(plan.seed);
  p.set_max_steps(plan.max_steps);
  p.set_update_encoding(UpdateEncodingName(plan.update_encoding.kind));
  p.set_topk_fraction(plan.update_encoding.topk_fraction);
  p.set_int8_per_channel(plan.update_encoding.per_channel);
  p.set_dp_clip_norm(plan.dp_clip_norm);
  p.set_dp_noise_stddev(plan.dp_noise_stddev);
  return p;
}

UpdateLimits ToUpdateLimits(const v1::UpdateLimitsConfig& c) {
  UpdateLimits limits;
  limits.max_examples_per_update = c.max_examples_per_update();
  limits.update_norm_bound = c.update_norm_bound();
  limits.clip = c.update_norm_action() == "clip";
  return limits;
}

SecureAggregationOptions ToSecureAggregationOptions(
    const v1::SecureAggregationConfig& c) {
  SecureAggregationOptions o;
  o.enabled = c.enabled();
  o.threshold = c.threshold();
  o.neighbors = c.neighbors();
  o.clip_range = c.clip_range();
  o.weight_unit = c.weight_unit();
  return o;
}

v1::SecAggTask ToSecAggTask(const SecAggAssignment& a) {
  v1::SecAggTask t;
  t.set_session_id(a.config.session_id);
  t.set_client_id(a.client_id);
  t.set_num_clients(a.config.num_clients);
  t.set_threshold(a.config.threshold);
  t.set_neighbors(a.config.neighbors);
  t.set_vector_length(a.config.vector_length);
  t.set_clip_range(a.options.clip_range);
  t.set_weight_unit(a.options.weight_unit);
  t.set_strategy_name(a.strategy_name);
  t.set_max_examples_per_update(a.limits.max_examples_per_update);
  t.set_update_norm_bound(a.limits.update_norm_bound);
  t.set_clip_to_norm_bound(a.limits.clip);
  t.set_stage_timeout_ms(a.stage_timeout_ms);
  return t;
}

absl::StatusOr<SecAggAssignment> FromSecAggTask(const v1::SecAggTask& t) {
  SecAggAssignment a;
  a.config.session_id = t.session_id();
  a.config.num_clients = t.num_clients();
  a.config.threshold = t.threshold();
  a.config.neighbors = t.neighbors();
  a.config.vector_length = t.vector_length();
  a.config.max_abs_value = t.clip_range();
  const std::string p = "TrainTask.secure_aggregation.";
  if (absl::Status s = secagg::ValidateConfig(a.config); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(p, s.message()));
  }
  if (t.client_id() < 1 || t.client_id() > t.num_clients()) {
    return Bad(p, "client_id",
               absl::StrCat("must be in [1, ", t.num_clients(), "], got ",
                            t.client_id()));
  }
  a.client_id = t.client_id();
  a.options.enabled = true;
  a.options.threshold = t.threshold();
  a.options.neighbors = t.neighbors();
  a.options.clip_range = t.clip_range();
  RETURN_IF_ERROR(InRange(p, "weight_unit", t.weight_unit(), 0, 1e12, true));
  a.options.weight_unit = t.weight_unit();
  a.strategy_name = t.strategy_name();
  RETURN_IF_ERROR(
      AtLeast(p, "max_examples_per_update", t.max_examples_per_update(), 0));
  RETURN_IF_ERROR(
      InRange(p, "update_norm_bound", t.update_norm_bound(), 0, 1e300, false));
  a.limits.max_examples_per_update = t.max_examples_per_update();
  a.limits.update_norm_bound = t.update_norm_bound();
  a.limits.clip = t.clip_to_norm_bound();
  RETURN_IF_ERROR(AtLeast(p, "stage_timeout_ms", t.stage_timeout_ms(), 0));
  a.stage_timeout_ms = t.stage_timeout_ms();
  return a;
}

StrategyOptions ToStrategyOptions(const v1::StrategyConfig& c,
                                  const v1::TrainPlanConfig& train,
                                  uint64_t seed) {
  StrategyOptions o;
  o.name = c.name();
  o.fraction = c.fraction();
  o.count = c.count();
  o.min_fit_agents = c.min_fit_agents();
  o.seed = seed;
  o.plan = ToTrainPlan(train);
  if (absl::StatusOr<UpdateEncoding> kind =
          ParseUpdateEncoding(c.update_encoding());
      kind.ok()) {
    o.plan.update_encoding.kind = *kind;
  }
  o.plan.update_encoding.topk_fraction = c.topk_fraction();
  o.plan.update_encoding.per_channel = c.int8_per_channel();
  for (const v1::DeviceClassPlanConfig& d : c.device_plans()) {
    DeviceClassPlan plan{d.device_class(), d.epochs(), d.max_steps(),
                         std::nullopt};
    if (!d.update_encoding().empty()) {
      absl::StatusOr<UpdateEncoding> kind =
          ParseUpdateEncoding(d.update_encoding());
      if (kind.ok()) plan.update_encoding = *kind;
    }
    o.device_plans.push_back(plan);
  }
  o.local_time_budget_ms = c.local_time_budget_ms();
  // Unset: the strategy's own default (1, or 0.01 for the adaptive ones).
  o.server_learning_rate =
      c.has_server_learning_rate() ? c.server_learning_rate() : -1;
  o.server_momentum = c.server_momentum();
  o.proximal_mu = c.proximal_mu();
  o.beta1 = c.beta1();
  o.beta2 = c.beta2();
  o.tau = c.tau();
  o.trim_beta = c.trim_beta();
  o.krum_f = c.krum_f();
  o.krum_m = c.krum_m();
  o.max_update_norm = c.max_update_norm();
  o.max_buffered_updates = c.max_buffered_updates();
  o.fraction_evaluate = c.fraction_evaluate();
  o.min_evaluate_agents = c.min_evaluate_agents();
  if (c.dp().mode() == "central" || c.dp().mode() == "local") {
    DpFedAvgOptions dp;
    dp.local = c.dp().mode() == "local";
    dp.clip_norm = c.dp().clip_norm();
    dp.noise_multiplier = c.dp().noise_multiplier();
    dp.delta = c.dp().delta();
    dp.max_epsilon = c.dp().max_epsilon();
    dp.noise_seed = c.dp().noise_seed();
    o.dp = dp;
  }
  return o;
}

}  // namespace fedge
