// Prometheus metrics: a registry of counter, gauge and histogram families
// that renders the Prometheus text exposition format 0.0.4 for a /metrics
// endpoint.
//
//   MetricsRegistry registry;
//   CounterFamily& updates = registry.AddCounter(
//       "fedge_updates_total", "Model updates received, by outcome.",
//       {"outcome"});
//   Counter& accepted = updates.WithLabels({"accepted"});  // cache this
//   accepted.Increment();
//   HistogramFamily& seconds = registry.AddHistogram(
//       "fedge_round_seconds", "Wall time of a round.", {1, 10, 60});
//   seconds.Get().Observe(12.5);
//   std::string text = registry.Render();
//
// Ownership: the registry owns its families and a family owns its children
// (one per tuple of label values); every reference handed out stays valid
// for the registry's lifetime.
//
// Thread-safety: everything is thread-safe. Counter, Gauge and Histogram
// updates are lock-free atomics. WithLabels() takes a shared lock, and an
// exclusive one only to create a new child, so hot paths should look the
// child up once and keep the reference. Render() takes shared locks and may
// run concurrently with updates; each value it prints is one atomic read.
//
// Registration mistakes (a name outside Prometheus' grammar, a name used
// twice, unsorted buckets, a wrong number of label values) are programming
// errors: they crash with a message (FEDGE_CHECK).
#ifndef FEDGE_COMMON_METRICS_H_
#define FEDGE_COMMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"

namespace fedge {

template <typename Metric>
class MetricFamily;

// A monotonically increasing count. Whole increments are kept exactly as
// an unsigned 64-bit integer and rendered without an exponent; fractional
// increments (e.g. seconds) are kept in a separate double.
class Counter {
 public:
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds 1.
  void Increment() { whole_.fetch_add(1, std::memory_order_relaxed); }

  // Adds `amount`, an integer (exact) or a floating-point value. A negative
  // or NaN amount is a programming error (counters only go up) and crashes.
  template <typename T>
  void IncrementBy(T amount) {
    static_assert(std::is_arithmetic_v<T>, "IncrementBy wants a number");
    if constexpr (std::is_integral_v<T>) {
      if constexpr (std::is_signed_v<T>) {
        FEDGE_CHECK(amount >= 0) << "counter increment " << amount;
      }
      whole_.fetch_add(static_cast<uint64_t>(amount),
                       std::memory_order_relaxed);
    } else {
      AddFraction(static_cast<double>(amount));
    }
  }

  // The current value.
  double Value() const;

 private:
  template <typename>
  friend class MetricFamily;
  Counter() = default;
  void AddFraction(double amount);
  void Render(absl::string_view name, absl::string_view labels,
              std::string* out) const;

  std::atomic<uint64_t> whole_{0};
  std::atomic<double> fraction_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  // Adds `delta` (may be negative).
  void Add(double delta);
  void Increment() { Add(1); }
  void Decrement() { Add(-1); }
  // The current value.
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  template <typename>
  friend class MetricFamily;
  Gauge() = default;
  void Render(absl::string_view name, absl::string_view labels,
              std::string* out) const;

  std::atomic<double> value_{0};
};

// Observations counted into fixed buckets (the family's upper bounds plus
// +Inf), with their sum and count.
class Histogram {
 public:
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `value` in the first bucket whose upper bound is >= value (NaN
  // goes to +Inf and makes the sum NaN, as in Prometheus' own clients).
  void Observe(double value);

  // Number of observations (the +Inf bucket's cumulative count).
  uint64_t Count() const;
  // Sum of observations.
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  template <typename>
  friend class MetricFamily;
  explicit Histogram(const std::vector<double>* bounds);
  void Render(absl::string_view name, absl::string_view labels,
              std::string* out) const;

  const std::vector<double>* bounds_;  // Owned by the family; ascending.
  // Per-bucket (not cumulative) counts; the last one is +Inf.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

// Interface of a family for the registry (rendering only).
class MetricFamilyBase {
 public:
  virtual ~MetricFamilyBase() = default;
  // Appends the family's HELP, TYPE and sample lines to `out`.
  virtual void Render(std::string* out) const = 0;
};

// All series of one metric name: one child per tuple of label values.
template <typename Metric>
class MetricFamily final : public MetricFamilyBase {
 public:
  MetricFamily(const MetricFamily&) = delete;
  MetricFamily& operator=(const MetricFamily&) = delete;

  // The child for `label_values` (one per label name, in registration
  // order), created on first use. Any string is a valid label value: it is
  // escaped when rendered (invalid UTF-8 becomes U+FFFD). A wrong number of
  // values crashes.
  Metric& WithLabels(const std::vector<std::string>& label_values);

  // The only child of a family registered without labels.
  Metric& Get() { return WithLabels({}); }

  void Render(std::string* out) const override;

 private:
  friend class MetricsRegistry;
  MetricFamily(std::string name, std::string help,
               std::vector<std::string> label_names,
               std::vector<double> bucket_bounds);

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bucket_bounds_;  // Histograms only.
  mutable absl::Mutex mu_;
  // Sorted by label values, so that rendering is deterministic.
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_
      ABSL_GUARDED_BY(mu_);
};

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;
using HistogramFamily = MetricFamily<Histogram>;

// Owns metric families and renders them in registration order.
class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registers a family. `name` must match [a-zA-Z_:][a-zA-Z0-9_:]* and be
  // unused (also as a histogram's _bucket/_sum/_count series); each label
  // name must match [a-zA-Z_][a-zA-Z0-9_]*, not start with "__" and appear
  // once; `help` must be non-empty. Violations crash. A family without
  // labels has its single series (value 0) from the start.
  CounterFamily& AddCounter(const std::string& name, const std::string& help,
                            std::vector<std::string> label_names = {});
  GaugeFamily& AddGauge(const std::string& name, const std::string& help,
                        std::vector<std::string> label_names = {});
  // `bucket_bounds` are the finite upper bounds, strictly increasing and
  // non-empty; +Inf is implied. "le" is not allowed as a label name.
  HistogramFamily& AddHistogram(const std::string& name,
                                const std::string& help,
                                std::vector<double> bucket_bounds,
                                std::vector<std::string> label_names = {});

  // The text exposition format 0.0.4 of every family
  // (Content-Type: kPrometheusContentType).
  std::string Render() const;

 private:
  // Checks the names and reserves the series names of a new family.
  void Reserve(const std::string& name, bool is_histogram,
               const std::vector<std::string>& label_names)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<MetricFamilyBase>> families_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> series_names_ ABSL_GUARDED_BY(mu_);
};

// The Content-Type of MetricsRegistry::Render()'s output.
inline constexpr absl::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// Registers the gauge fedge_build_info{version="<kFedgeVersion>"} with
// value 1 (common/version.h): the same in every binary.
void RegisterBuildInfo(MetricsRegistry* registry);

}  // namespace fedge

#endif  // FEDGE_COMMON_METRICS_H_
