#include "server/status_snapshot.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/json.h"

namespace fedge {
namespace {

// Builds a JSON text. Callers write keys and values in order; commas are
// inserted between members and elements.
class JsonWriter {
 public:
  void BeginObject() { Open('{'); }
  void EndObject() { Close('}'); }
  void BeginArray() { Open('['); }
  void EndArray() { Close(']'); }

  // Starts the member `key` of the current object.
  void Key(absl::string_view key) {
    Separate();
    AppendString(key);
    out_.push_back(':');
    after_key_ = true;
  }

  void String(absl::string_view value) {
    Separate();
    AppendString(value);
  }
  void Bool(bool value) {
    Separate();
    out_.append(value ? "true" : "false");
  }
  void Int(int64_t value) {
    Separate();
    absl::StrAppend(&out_, value);
  }
  // Shortest round-trip form; NaN and infinities (not JSON) become null.
  void Double(double value) {
    Separate();
    if (!std::isfinite(value)) {
      out_.append("null");
      return;
    }
    char buffer[32];
    out_.append(buffer,
                std::to_chars(buffer, buffer + sizeof(buffer), value).ptr);
  }
  void OptionalDouble(const std::optional<double>& value) {
    if (value.has_value()) {
      Double(*value);
    } else {
      Null();
    }
  }
  void Null() {
    Separate();
    out_.append("null");
  }

  std::string Release() && { return std::move(out_); }

 private:
  void Open(char bracket) {
    Separate();
    out_.push_back(bracket);
    first_ = true;
  }
  void Close(char bracket) {
    out_.push_back(bracket);
    first_ = false;
  }
  // A comma before every value but the first of its container; none
  // between a key and its value.
  void Separate() {
    if (after_key_) {
      after_key_ = false;
    } else if (!first_) {
      out_.push_back(',');
    }
    first_ = false;
  }

  void AppendString(absl::string_view s) { AppendJsonString(s, &out_); }

  std::string out_;
  bool first_ = true;
  bool after_key_ = false;
};

void WriteFederation(const FederationStatus& f, JsonWriter* json) {
  json->BeginObject();
  json->Key("state");
  json->String(f.state);
  json->Key("paused");
  json->Bool(f.paused);
  json->Key("current_round");
  json->Int(f.current_round);
  json->Key("completed_rounds");
  json->Int(f.completed_rounds);
  json->Key("total_rounds");
  json->Int(f.total_rounds);
  json->Key("model_version");
  json->Int(f.model_version);
  json->Key("model_sha256");
  json->String(f.model_sha256);
  json->Key("strategy");
  json->String(f.strategy);
  json->Key("started_unix_ms");
  json->Int(f.started_unix_ms);
  json->Key("now_unix_ms");
  json->Int(f.now_unix_ms);
  json->Key("privacy");
  if (f.privacy.has_value()) {
    const PrivacyStatus& p = *f.privacy;
    json->BeginObject();
    json->Key("mode");
    json->String(p.mode);
    json->Key("epsilon");
    json->Double(p.epsilon);
    json->Key("delta");
    json->Double(p.delta);
    json->Key("max_epsilon");
    json->Double(p.max_epsilon);
    json->Key("rounds");
    json->Int(p.rounds);
    json->Key("budget_exhausted");
    json->Bool(p.budget_exhausted);
    json->EndObject();
  } else {
    json->Null();
  }
  json->EndObject();
}

void WriteCurrentRound(const std::optional<CurrentRoundStatus>& r,
                       JsonWriter* json) {
  if (!r.has_value()) {
    json->Null();
    return;
  }
  json->BeginObject();
  json->Key("round");
  json->Int(r->round);
  json->Key("selected");
  json->Int(r->selected);
  json->Key("reported");
  json->Int(r->reported);
  json->Key("failed");
  json->Int(r->failed);
  json->Key("deadline_remaining_ms");
  json->Int(r->deadline_remaining_ms);
  json->Key("elapsed_ms");
  json->Int(r->elapsed_ms);
  json->EndObject();
}

void WriteAgent(const AgentStatus& a, JsonWriter* json) {
  json->BeginObject();
  json->Key("id");
  json->String(a.id);
  json->Key("device_class");
  json->String(a.device_class);
  json->Key("state");
  json->String(a.state);
  json->Key("last_seen_ms_ago");
  if (a.last_seen_ms_ago.has_value()) {
    json->Int(*a.last_seen_ms_ago);
  } else {
    json->Null();
  }
  json->Key("rounds_contributed");
  json->Int(a.rounds_contributed);
  json->EndObject();
}

void WriteRound(const RoundStatus& r, JsonWriter* json) {
  json->BeginObject();
  json->Key("round");
  json->Int(r.round);
  json->Key("completed");
  json->Bool(r.completed);
  json->Key("num_agents");
  json->Int(r.num_agents);
  json->Key("num_failed");
  json->Int(r.num_failed);
  json->Key("num_examples");
  json->Int(r.num_examples);
  // An abandoned round aggregated no update: it has no training metrics.
  json->Key("train_loss");
  json->OptionalDouble(r.completed ? std::optional<double>(r.train_loss)
                                   : std::nullopt);
  json->Key("train_accuracy");
  json->OptionalDouble(r.completed ? std::optional<double>(r.train_accuracy)
                                   : std::nullopt);
  json->Key("test_loss");
  json->OptionalDouble(r.test_loss);
  json->Key("test_accuracy");
  json->OptionalDouble(r.test_accuracy);
  json->Key("fed_eval_loss");
  json->OptionalDouble(r.fed_eval_loss);
  json->Key("fed_eval_accuracy");
  json->OptionalDouble(r.fed_eval_accuracy);
  json->Key("bytes_received");
  json->Int(r.bytes_received);
  json->Key("bytes_sent");
  json->Int(r.bytes_sent);
  json->Key("round_seconds");
  json->Double(r.round_seconds);
  json->EndObject();
}

void WriteRefusal(const RefusalStatus& r, JsonWriter* json) {
  json->BeginObject();
  json->Key("unix_ms");
  json->Int(r.unix_ms);
  json->Key("agent_id");
  json->String(r.agent_id);
  json->Key("reason");
  json->String(r.reason);
  json->EndObject();
}

}  // namespace

std::string ToJson(const FederationSnapshot& snapshot) {
  JsonWriter json;
  json.BeginObject();
  json.Key("federation");
  WriteFederation(snapshot.federation, &json);
  json.Key("current_round");
  WriteCurrentRound(snapshot.current_round, &json);
  json.Key("agents");
  json.BeginArray();
  for (const AgentStatus& a : snapshot.agents) WriteAgent(a, &json);
  json.EndArray();
  json.Key("rounds");
  json.BeginArray();
  for (const RoundStatus& r : snapshot.rounds) WriteRound(r, &json);
  json.EndArray();
  json.Key("refusals");
  json.BeginArray();
  for (const RefusalStatus& r : snapshot.refusals) WriteRefusal(r, &json);
  json.EndArray();
  json.EndObject();
  return std::move(json).Release();
}

}  // namespace fedge
