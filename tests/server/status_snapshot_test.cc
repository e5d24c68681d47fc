#include "server/status_snapshot.h"

#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

// The JSON of a one-field-changed string in an otherwise empty snapshot.
std::string StateJson(const std::string& state) {
  FederationSnapshot snapshot;
  snapshot.federation.state = state;
  const std::string json = ToJson(snapshot);
  const std::string prefix = "{\"federation\":{\"state\":";
  const size_t end = json.find(",\"paused\"");
  return json.substr(prefix.size(), end - prefix.size());
}

TEST(StatusSnapshotTest, Empty_AllFieldsPresent) {
  EXPECT_EQ(ToJson(FederationSnapshot()),
            "{\"federation\":{\"state\":\"\",\"paused\":false,"
            "\"current_round\":0,\"completed_rounds\":0,\"total_rounds\":0,"
            "\"model_version\":0,\"model_sha256\":\"\",\"strategy\":\"\","
            "\"started_unix_ms\":0,\"now_unix_ms\":0,\"privacy\":null},"
            "\"current_round\":null,\"agents\":[],\"rounds\":[],"
            "\"refusals\":[]}");
}

TEST(StatusSnapshotTest, Privacy_ObjectWhenPrivate) {
  FederationSnapshot s;
  s.federation.privacy = PrivacyStatus{"central", 2.5, 1e-5, 8, 40, true};
  EXPECT_THAT(
      ToJson(s),
      ::testing::HasSubstr("\"privacy\":{\"mode\":\"central\",\"epsilon\":2.5,"
                           "\"delta\":1e-05,\"max_epsilon\":8,\"rounds\":40,"
                           "\"budget_exhausted\":true}},"));
}

TEST(StatusSnapshotTest, Full_ExactJson) {
  FederationSnapshot s;
  s.federation = {"IN_PROGRESS", true,         3, 2, 10, 2, "ab12", "FedAvg",
                  1700000000000, 1700000012345, std::nullopt};
  s.current_round = CurrentRoundStatus{3, 4, 1, 1, 2500, 7500};
  s.agents.push_back({"agent-1", "phone", "training", 120, 2});
  // Evicted: out of the roster, so never "seen just now".
  s.agents.push_back({"agent-2", "pi", "evicted", std::nullopt, 0});
  RoundStatus r1;
  r1.round = 1;
  r1.completed = true;
  r1.num_agents = 4;
  r1.num_failed = 0;
  r1.num_examples = 2400;
  r1.train_loss = 0.5;
  r1.train_accuracy = 0.875;
  r1.test_loss = 0.25;
  r1.test_accuracy = 0.9;
  r1.bytes_received = 1048576;
  r1.bytes_sent = 2097152;
  r1.round_seconds = 12.5;
  RoundStatus r2;
  r2.round = 2;
  r2.train_loss = std::nan("");
  r2.train_accuracy = std::numeric_limits<double>::infinity();
  r2.fed_eval_loss = 1e-7;
  r2.fed_eval_accuracy = std::nan("");
  s.rounds = {r1, r2};
  s.refusals.push_back({1700000011000, "agent-9", "bad token"});
  EXPECT_EQ(
      ToJson(s),
      "{\"federation\":{\"state\":\"IN_PROGRESS\",\"paused\":true,"
      "\"current_round\":3,\"completed_rounds\":2,\"total_rounds\":10,"
      "\"model_version\":2,\"model_sha256\":\"ab12\",\"strategy\":\"FedAvg\","
      "\"started_unix_ms\":1700000000000,\"now_unix_ms\":1700000012345,"
      "\"privacy\":null},"
      "\"current_round\":{\"round\":3,\"selected\":4,\"reported\":1,"
      "\"failed\":1,\"deadline_remaining_ms\":2500,\"elapsed_ms\":7500},"
      "\"agents\":[{\"id\":\"agent-1\",\"device_class\":\"phone\","
      "\"state\":\"training\",\"last_seen_ms_ago\":120,"
      "\"rounds_contributed\":2},{\"id\":\"agent-2\",\"device_class\":\"pi\","
      "\"state\":\"evicted\",\"last_seen_ms_ago\":null,"
      "\"rounds_contributed\":0}],"
      "\"rounds\":[{\"round\":1,\"completed\":true,\"num_agents\":4,"
      "\"num_failed\":0,\"num_examples\":2400,\"train_loss\":0.5,"
      "\"train_accuracy\":0.875,\"test_loss\":0.25,\"test_accuracy\":0.9,"
      "\"fed_eval_loss\":null,\"fed_eval_accuracy\":null,"
      "\"bytes_received\":1048576,\"bytes_sent\":2097152,"
      "\"round_seconds\":12.5},"
      "{\"round\":2,\"completed\":false,\"num_agents\":0,\"num_failed\":0,"
      "\"num_examples\":0,\"train_loss\":null,\"train_accuracy\":null,"
      "\"test_loss\":null,\"test_accuracy\":null,\"fed_eval_loss\":1e-07,"
      "\"fed_eval_accuracy\":null,\"bytes_received\":0,\"bytes_sent\":0,"
      "\"round_seconds\":0}],"
      "\"refusals\":[{\"unix_ms\":1700000011000,\"agent_id\":\"agent-9\","
      "\"reason\":\"bad token\"}]}");
}

TEST(StatusSnapshotTest, Strings_Escaped) {
  EXPECT_EQ(StateJson("plain"), "\"plain\"");
  EXPECT_EQ(StateJson("q\"b\\s/"), "\"q\\\"b\\\\s/\"");
  EXPECT_EQ(StateJson("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\"");
  EXPECT_EQ(StateJson(std::string("\x01\x1f\x7f", 3)),
            "\"\\u0001\\u001f\\u007f\"");
  EXPECT_EQ(StateJson(std::string("nul\0end", 7)), "\"nul\\u0000end\"");
}

TEST(StatusSnapshotTest, Utf8_PassedThroughInvalidReplaced) {
  // é, €, 😀 pass through unchanged.
  EXPECT_EQ(StateJson("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"),
            "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
  // A stray continuation byte, a truncated sequence, an overlong '/', a
  // surrogate: each invalid byte becomes U+FFFD.
  EXPECT_EQ(StateJson("a\x80z"), "\"a\xef\xbf\xbdz\"");
  EXPECT_EQ(StateJson("\xe2\x82"), "\"\xef\xbf\xbd\xef\xbf\xbd\"");
  EXPECT_EQ(StateJson("\xc0\xaf"), "\"\xef\xbf\xbd\xef\xbf\xbd\"");
  EXPECT_EQ(StateJson("\xed\xa0\x80"),
            "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
}

TEST(StatusSnapshotTest, Doubles_ShortestRoundTrip) {
  FederationSnapshot s;
  RoundStatus r;
  r.completed = true;
  r.train_loss = 0.1;
  r.train_accuracy = 1.0 / 3.0;
  r.round_seconds = -0.0;
  s.rounds.push_back(r);
  const std::string json = ToJson(s);
  EXPECT_NE(json.find("\"train_loss\":0.1,"), std::string::npos) << json;
  EXPECT_NE(json.find("\"train_accuracy\":0.3333333333333333,"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"round_seconds\":-0}"), std::string::npos) << json;
}

// An abandoned round aggregated no update: no training loss or accuracy
// (0 would be drawn on the status page's charts as a real value).
TEST(StatusSnapshotTest, AbandonedRound_TrainingMetricsNull) {
  FederationSnapshot s;
  RoundStatus r;
  r.round = 5;
  r.completed = false;
  r.num_failed = 3;
  s.rounds.push_back(r);
  const std::string json = ToJson(s);
  EXPECT_NE(json.find("\"train_loss\":null,\"train_accuracy\":null,"),
            std::string::npos)
      << json;
}

}  // namespace
}  // namespace fedge
