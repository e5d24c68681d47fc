#include "edge_agent/agent_config.h"

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
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

}  // namespace
}  // namespace fedge
