#include "common/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/utf8.h"
#include "common/version.h"

namespace fedge {
namespace {

// Adds `delta` to an atomic double (C++17 has no fetch_add for doubles).
void AtomicAdd(std::atomic<double>* target, double delta) {
  double current = target->load(std::memory_order_relaxed);
  while (!target->compare_exchange_weak(current, current + delta,
                                        std::memory_order_relaxed)) {
  }
}

// A sample value as Prometheus' parser (Go's strconv.ParseFloat) reads it:
// integers without exponent or fraction, otherwise the shortest string that
// reads back as the same double; NaN, +Inf and -Inf spelled out.
std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::trunc(value) && std::fabs(value) < 9.0e15) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

// Appends `text` escaped for a HELP line (backslash, newline) or, with
// `quote`, for a label value (also double quote). Invalid UTF-8 becomes
// U+FFFD so that the scrape stays parseable.
void AppendEscaped(absl::string_view text, bool quote, std::string* out) {
  while (!text.empty()) {
    const size_t length = Utf8SequenceLength(text);
    if (length == 0) {
      out->append("\xef\xbf\xbd");
      text.remove_prefix(1);
      continue;
    }
    const char c = text[0];
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '"' && quote) {
      out->append("\\\"");
    } else {
      out->append(text.data(), length);
    }
    text.remove_prefix(length);
  }
}

bool IsMetricNameChar(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         c == ':' || (!first && c >= '0' && c <= '9');
}

bool IsValidMetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsMetricNameChar(name[i], i == 0)) return false;
  }
  return true;
}

bool IsValidLabelName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == ':' || !IsMetricNameChar(name[i], i == 0)) return false;
  }
  return true;
}

// `{a="x",b="y"` for the label names and values (without the closing brace,
// so that a histogram can add "le"); empty when there are no labels.
std::string OpenLabels(const std::vector<std::string>& names,
                       const std::vector<std::string>& values) {
  if (names.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out.push_back(',');
    absl::StrAppend(&out, names[i], "=\"");
    AppendEscaped(values[i], /*quote=*/true, &out);
    out.push_back('"');
  }
  return out;
}

void AppendSample(absl::string_view name, absl::string_view open_labels,
                  absl::string_view value, std::string* out) {
  absl::StrAppend(out, name, open_labels, open_labels.empty() ? "" : "}", " ",
                  value, "\n");
}

template <typename Metric>
constexpr absl::string_view TypeName() {
  if constexpr (std::is_same_v<Metric, Counter>) return "counter";
  if constexpr (std::is_same_v<Metric, Gauge>) return "gauge";
  return "histogram";
}

}  // namespace

void Counter::AddFraction(double amount) {
  FEDGE_CHECK(amount >= 0) << "counter increment " << amount;
  AtomicAdd(&fraction_, amount);
}

double Counter::Value() const {
  return static_cast<double>(whole_.load(std::memory_order_relaxed)) +
         fraction_.load(std::memory_order_relaxed);
}

void Counter::Render(absl::string_view name, absl::string_view labels,
                     std::string* out) const {
  const uint64_t whole = whole_.load(std::memory_order_relaxed);
  const double fraction = fraction_.load(std::memory_order_relaxed);
  AppendSample(name, labels,
               fraction == 0
                   ? absl::StrCat(whole)
                   : FormatValue(static_cast<double>(whole) + fraction),
               out);
}

void Gauge::Add(double delta) { AtomicAdd(&value_, delta); }

void Gauge::Render(absl::string_view name, absl::string_view labels,
                   std::string* out) const {
  AppendSample(name, labels, FormatValue(Value()), out);
}

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds->size() + 1]) {
  for (size_t i = 0; i <= bounds_->size(); ++i) buckets_[i] = 0;
}

void Histogram::Observe(double value) {
  // First bound >= value; NaN compares false everywhere and lands in +Inf.
  const size_t bucket =
      std::lower_bound(bounds_->begin(), bounds_->end(), value) -
      bounds_->begin();
  buckets_[std::isnan(value) ? bounds_->size() : bucket].fetch_add(
      1, std::memory_order_relaxed);
  AtomicAdd(&sum_, value);
}

uint64_t Histogram::Count() const {
  uint64_t count = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    count += buckets_[i].load(std::memory_order_relaxed);
  }
  return count;
}

void Histogram::Render(absl::string_view name, absl::string_view labels,
                       std::string* out) const {
  const std::string bucket_name = absl::StrCat(name, "_bucket");
  const std::string le_prefix =
      labels.empty() ? std::string("{le=\"") : absl::StrCat(labels, ",le=\"");
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    const std::string le =
        i < bounds_->size() ? FormatValue((*bounds_)[i]) : "+Inf";
    absl::StrAppend(out, bucket_name, le_prefix, le, "\"} ", cumulative, "\n");
  }
  AppendSample(absl::StrCat(name, "_sum"), labels, FormatValue(Sum()), out);
  // The count is the +Inf bucket, so the two always agree.
  AppendSample(absl::StrCat(name, "_count"), labels, absl::StrCat(cumulative),
               out);
}

template <typename Metric>
MetricFamily<Metric>::MetricFamily(std::string name, std::string help,
                                   std::vector<std::string> label_names,
                                   std::vector<double> bucket_bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      bucket_bounds_(std::move(bucket_bounds)) {}

template <typename Metric>
Metric& MetricFamily<Metric>::WithLabels(
    const std::vector<std::string>& label_values) {
  FEDGE_CHECK(label_values.size() == label_names_.size())
      << name_ << " has labels {" << absl::StrJoin(label_names_, ",")
      << "}, got " << label_values.size() << " values";
  {
    absl::ReaderMutexLock lock(&mu_);
    const auto it = children_.find(label_values);
    if (it != children_.end()) return *it->second;
  }
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Metric>& child = children_[label_values];
  if (child == nullptr) {
    if constexpr (std::is_same_v<Metric, Histogram>) {
      child.reset(new Histogram(&bucket_bounds_));
    } else {
      child.reset(new Metric());
    }
  }
  return *child;
}

template <typename Metric>
void MetricFamily<Metric>::Render(std::string* out) const {
  absl::StrAppend(out, "# HELP ", name_, " ");
  AppendEscaped(help_, /*quote=*/false, out);
  absl::StrAppend(out, "\n# TYPE ", name_, " ", TypeName<Metric>(), "\n");
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [values, child] : children_) {
    child->Render(name_, OpenLabels(label_names_, values), out);
  }
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;
template class MetricFamily<Histogram>;

void MetricsRegistry::Reserve(const std::string& name, bool is_histogram,
                              const std::vector<std::string>& label_names) {
  FEDGE_CHECK(IsValidMetricName(name))
      << "metric name '" << name << "' is not [a-zA-Z_:][a-zA-Z0-9_:]*";
  for (size_t i = 0; i < label_names.size(); ++i) {
    const std::string& label = label_names[i];
    FEDGE_CHECK(IsValidLabelName(label) && label.rfind("__", 0) != 0)
        << name << ": label name '" << label
        << "' is not [a-zA-Z_][a-zA-Z0-9_]* or starts with __";
    FEDGE_CHECK(!(is_histogram && label == "le"))
        << name << ": 'le' is reserved for histogram buckets";
    FEDGE_CHECK(std::find(label_names.begin() + i + 1, label_names.end(),
                          label) == label_names.end())
        << name << ": label name '" << label << "' appears twice";
  }
  std::vector<std::string> series = {name};
  if (is_histogram) {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      series.push_back(name + suffix);
    }
  }
  for (const std::string& s : series) {
    FEDGE_CHECK(series_names_.insert(s).second)
        << "metric name '" << s << "' is already registered";
  }
}

CounterFamily& MetricsRegistry::AddCounter(
    const std::string& name, const std::string& help,
    std::vector<std::string> label_names) {
  FEDGE_CHECK(!help.empty()) << name << ": empty help";
  absl::MutexLock lock(&mu_);
  Reserve(name, /*is_histogram=*/false, label_names);
  auto* family = new CounterFamily(name, help, std::move(label_names), {});
  families_.emplace_back(family);
  if (family->label_names_.empty()) family->Get();
  return *family;
}

GaugeFamily& MetricsRegistry::AddGauge(const std::string& name,
                                       const std::string& help,
                                       std::vector<std::string> label_names) {
  FEDGE_CHECK(!help.empty()) << name << ": empty help";
  absl::MutexLock lock(&mu_);
  Reserve(name, /*is_histogram=*/false, label_names);
  auto* family = new GaugeFamily(name, help, std::move(label_names), {});
  families_.emplace_back(family);
  if (family->label_names_.empty()) family->Get();
  return *family;
}

HistogramFamily& MetricsRegistry::AddHistogram(
    const std::string& name, const std::string& help,
    std::vector<double> bucket_bounds, std::vector<std::string> label_names) {
  FEDGE_CHECK(!help.empty()) << name << ": empty help";
  FEDGE_CHECK(!bucket_bounds.empty()) << name << ": no buckets";
  for (size_t i = 0; i < bucket_bounds.size(); ++i) {
    FEDGE_CHECK(std::isfinite(bucket_bounds[i]))
        << name << ": bucket bound " << bucket_bounds[i]
        << " is not finite (+Inf is implied)";
    FEDGE_CHECK(i == 0 || bucket_bounds[i - 1] < bucket_bounds[i])
        << name << ": bucket bounds are not strictly increasing";
  }
  absl::MutexLock lock(&mu_);
  Reserve(name, /*is_histogram=*/true, label_names);
  auto* family = new HistogramFamily(name, help, std::move(label_names),
                                     std::move(bucket_bounds));
  families_.emplace_back(family);
  if (family->label_names_.empty()) family->Get();
  return *family;
}

std::string MetricsRegistry::Render() const {
  std::string out;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& family : families_) family->Render(&out);
  return out;
}

void RegisterBuildInfo(MetricsRegistry* registry) {
  registry
      ->AddGauge("fedge_build_info",
                 "fedge build information; the value is always 1.", {"version"})
      .WithLabels({kFedgeVersion})
      .Set(1);
}

}  // namespace fedge
