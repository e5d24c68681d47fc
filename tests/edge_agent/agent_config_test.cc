#include "edge_agent/agent_config.h"

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/fl_config.h"
#include "common/model_signature.h"
#include "common/signing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

v1::AgentConfig ValidConfig() {
  v1::AgentConfig c;
  c.mutable_tls()->set_insecure(true);
  c.mutable_data()->set_source("synthetic");
  return c;
}

void ExpectBadField(const v1::AgentConfig& c, const std::string& field) {
  const absl::Status s = ValidateAgentConfig(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
  EXPECT_THAT(s.message(), HasSubstr("'" + field + "'"));
}

TEST(ValidateAgentConfigTest, Defaults_WithInsecureTls_Valid) {
  EXPECT_TRUE(ValidateAgentConfig(ValidConfig()).ok());
}

TEST(ValidateAgentConfigTest, DefaultTls_NeedsCaPath) {
  v1::AgentConfig c = ValidConfig();
  c.mutable_tls()->set_insecure(false);
  ExpectBadField(c, "tls.ca_path");
  c.mutable_tls()->set_ca_path("ca.pem");
  EXPECT_TRUE(ValidateAgentConfig(c).ok());
}

TEST(ValidateAgentConfigTest, BadFields_NamedInTheError) {
  v1::AgentConfig c = ValidConfig();
  c.set_coordinator("nohost");
  ExpectBadField(c, "coordinator");

  c = ValidConfig();
  c.set_partition_index(3);
  c.set_num_partitions(3);
  ExpectBadField(c, "num_partitions");

  c = ValidConfig();
  c.mutable_profile()->set_dropout_probability(1.5);
  ExpectBadField(c, "profile.dropout_probability");

  c = ValidConfig();
  c.mutable_profile()->set_compute_slowdown(0.5);
  ExpectBadField(c, "profile.compute_slowdown");

  c = ValidConfig();
  c.set_max_backoff_ms(10);
  ExpectBadField(c, "max_backoff_ms");

  c = ValidConfig();
  c.set_num_threads(0);
  ExpectBadField(c, "num_threads");

  c = ValidConfig();
  c.set_num_threads(kMaxNumThreads + 1);  // A typo such as 1000.
  ExpectBadField(c, "num_threads");

  c = ValidConfig();
  c.mutable_data()->set_source("floppy");
  ExpectBadField(c, "data.source");

  c = ValidConfig();
  c.mutable_partition()->set_method("random");
  ExpectBadField(c, "partition.method");
}

TEST(ToAgentOptionsTest, CopiesFields) {
  v1::AgentConfig c = ValidConfig();
  c.set_initial_backoff_ms(100);
  c.set_max_backoff_ms(3000);
  c.set_give_up_after_ms(60000);
  c.mutable_profile()->set_compute_slowdown(2.5);
  c.mutable_profile()->set_dropout_probability(0.25);
  c.mutable_profile()->set_added_latency_ms(40);
  c.mutable_profile()->set_bandwidth_bytes_per_second(125000);
  c.set_exit_when_finished(false);
  const AgentOptions o = ToAgentOptions(c);
  EXPECT_EQ(o.initial_backoff, absl::Milliseconds(100));
  EXPECT_EQ(o.max_backoff, absl::Seconds(3));
  EXPECT_EQ(o.give_up_after, absl::Minutes(1));
  EXPECT_EQ(o.compute_slowdown, 2.5);
  EXPECT_EQ(o.dropout_probability, 0.25);
  EXPECT_FALSE(o.exit_when_finished);
  const LinkProfile link = ToLinkProfile(c.profile());
  EXPECT_EQ(link.added_latency, absl::Milliseconds(40));
  EXPECT_EQ(link.bytes_per_second, 125000);
}

TEST(ValidateAgentConfigTest, EligibilityAndLimits_BadFieldsNamed) {
  v1::AgentConfig c = ValidConfig();
  c.mutable_eligibility()->set_min_battery_percent(101);
  ExpectBadField(c, "eligibility.min_battery_percent");

  c = ValidConfig();
  c.mutable_eligibility()->set_max_load_average(-1);
  ExpectBadField(c, "eligibility.max_load_average");

  c = ValidConfig();
  c.mutable_eligibility()->set_time_window("1am-6am");
  ExpectBadField(c, "eligibility.time_window");

  c = ValidConfig();
  c.mutable_eligibility()->set_check_interval_ms(10);
  ExpectBadField(c, "eligibility.check_interval_ms");

  c = ValidConfig();
  c.mutable_eligibility()->set_status_command_timeout_ms(0);
  ExpectBadField(c, "eligibility.status_command_timeout_ms");

  c = ValidConfig();
  c.mutable_eligibility()->set_require_unmetered(true);
  ExpectBadField(c, "eligibility.require_unmetered");
  c.mutable_eligibility()->set_metered_path("/run/metered");
  EXPECT_TRUE(ValidateAgentConfig(c).ok());

  c = ValidConfig();
  c.set_niceness(20);
  ExpectBadField(c, "niceness");
  c.set_niceness(19);
  EXPECT_TRUE(ValidateAgentConfig(c).ok());

  c = ValidConfig();
  c.set_memory_budget_bytes(-1);
  ExpectBadField(c, "memory_budget_bytes");

  c = ValidConfig();
  c.set_memory_model_factor(0.5);
  ExpectBadField(c, "memory_model_factor");
}

TEST(ToAgentOptionsTest, EligibilityAndLimits) {
  v1::AgentConfig c = ValidConfig();
  EXPECT_FALSE(ToAgentOptions(c).eligibility.any());  // Unset: always.
  v1::EligibilityConfig* e = c.mutable_eligibility();
  e->set_require_external_power(true);
  e->set_min_battery_percent(60);
  e->set_require_unmetered(true);
  e->set_require_idle(true);
  e->set_max_load_average(1.5);
  e->set_time_window("22:00-06:00");
  e->set_check_interval_ms(2500);
  e->set_power_supply_dir("/tmp/ps");
  e->set_loadavg_path("/tmp/loadavg");
  e->set_metered_path("/tmp/metered");
  e->set_status_command("device-status");
  e->set_status_command_timeout_ms(700);
  c.set_num_threads(3);
  c.set_memory_budget_bytes(1 << 30);
  c.set_memory_model_factor(4);
  ASSERT_TRUE(ValidateAgentConfig(c).ok());
  const AgentOptions o = ToAgentOptions(c);
  EXPECT_TRUE(o.eligibility.require_external_power);
  EXPECT_EQ(o.eligibility.min_battery_percent, 60);
  EXPECT_TRUE(o.eligibility.require_unmetered);
  EXPECT_TRUE(o.eligibility.require_idle);
  EXPECT_EQ(o.eligibility.max_load_average, 1.5);
  ASSERT_TRUE(o.eligibility.window.has_value());
  EXPECT_EQ(o.eligibility.window->start_minute, 22 * 60);
  EXPECT_EQ(o.eligibility.window->end_minute, 6 * 60);
  EXPECT_EQ(o.eligibility.check_interval, absl::Milliseconds(2500));
  EXPECT_EQ(o.training_threads, 3);
  EXPECT_EQ(o.memory_budget_bytes, 1 << 30);
  EXPECT_EQ(o.memory_model_factor, 4);
  const LinuxDeviceConditionsOptions d = ToDeviceConditionsOptions(*e);
  EXPECT_EQ(d.power_supply_dir, "/tmp/ps");
  EXPECT_EQ(d.loadavg_path, "/tmp/loadavg");
  EXPECT_EQ(d.metered_path, "/tmp/metered");
  EXPECT_EQ(d.status_command, "device-status");
  EXPECT_EQ(d.status_command_timeout, absl::Milliseconds(700));
}

TEST(ResolveAgentIdTest, ConfigWins_ElseStored_ElseGeneratedAndKept) {
  const std::string dir =
      absl::StrCat(testing::TempDir(), "/fedge_agent_config_test.", getpid());
  std::filesystem::remove_all(dir);
  ModelCacheOptions options;
  options.state_dir = dir;
  std::string generated;
  {
    auto cache = *ModelCache::Open(options);
    v1::AgentConfig c = ValidConfig();
    generated = *ResolveAgentId(c, *cache);
    EXPECT_THAT(generated, HasSubstr(absl::StrCat("-", getpid())));
    c.set_agent_id("phone-1");
    EXPECT_EQ(*ResolveAgentId(c, *cache), "phone-1");
  }
  auto cache = *ModelCache::Open(options);  // A restarted agent.
  EXPECT_EQ(*ResolveAgentId(ValidConfig(), *cache), generated);
  cache.reset();
  std::filesystem::remove_all(dir);
}

TEST(LoadModelVerifierTest, NoneEmptyMissingOrValidKeys) {
  v1::AgentConfig c = ValidConfig();
  absl::StatusOr<std::optional<ModelVerifier>> none = LoadModelVerifier(c);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());

  c.add_model_signing_public_key_paths("");
  ExpectBadField(c, "model_signing_public_key_paths");

  const std::string dir =
      absl::StrCat(testing::TempDir(), "/fedge_agent_config_keys.", getpid());
  std::filesystem::create_directories(dir);
  c.set_model_signing_public_key_paths(0, dir + "/missing.pub.pem");
  absl::StatusOr<std::optional<ModelVerifier>> missing = LoadModelVerifier(c);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(),
              HasSubstr("'model_signing_public_key_paths'"));
  EXPECT_THAT(missing.status().message(), HasSubstr("missing.pub.pem"));

  const Ed25519PrivateKey a = *Ed25519PrivateKey::Generate();
  const Ed25519PrivateKey b = *Ed25519PrivateKey::Generate();
  ASSERT_EQ(SavePublicKeyPem(a.public_key(), dir + "/a.pub.pem"),
            absl::OkStatus());
  ASSERT_EQ(SavePublicKeyPem(b.public_key(), dir + "/b.pub.pem"),
            absl::OkStatus());
  c.set_model_signing_public_key_paths(0, dir + "/a.pub.pem");
  c.add_model_signing_public_key_paths(dir + "/b.pub.pem");
  EXPECT_TRUE(ValidateAgentConfig(c).ok());
  absl::StatusOr<std::optional<ModelVerifier>> both = LoadModelVerifier(c);
  ASSERT_TRUE(both.ok()) << both.status();
  ASSERT_TRUE(both->has_value());
  EXPECT_THAT((*both)->KeyIds(), HasSubstr(ModelSigningKeyId(a.public_key())));
  EXPECT_THAT((*both)->KeyIds(), HasSubstr(ModelSigningKeyId(b.public_key())));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fedge
