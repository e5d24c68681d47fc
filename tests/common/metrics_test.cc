#include "common/metrics.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/version.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(MetricsTest, EmptyRegistry_RendersNothing) {
  MetricsRegistry registry;
  EXPECT_EQ(registry.Render(), "");
}

TEST(MetricsTest, Counter_IntegersWithoutExponent) {
  MetricsRegistry registry;
  Counter& c =
      registry.AddCounter("fedge_rounds_total", "Rounds closed.").Get();
  EXPECT_EQ(registry.Render(),
            "# HELP fedge_rounds_total Rounds closed.\n"
            "# TYPE fedge_rounds_total counter\n"
            "fedge_rounds_total 0\n");
  c.Increment();
  c.IncrementBy(size_t{41});
  c.IncrementBy(int64_t{9007199254740993});  // 2^53 + 1: exact.
  EXPECT_EQ(registry.Render(),
            "# HELP fedge_rounds_total Rounds closed.\n"
            "# TYPE fedge_rounds_total counter\n"
            "fedge_rounds_total 9007199254741035\n");
}

TEST(MetricsTest, Counter_Fractions) {
  MetricsRegistry registry;
  Counter& c = registry.AddCounter("busy_seconds_total", "Busy time.").Get();
  c.IncrementBy(0.25);
  c.IncrementBy(2);
  EXPECT_DOUBLE_EQ(c.Value(), 2.25);
  EXPECT_EQ(registry.Render(),
            "# HELP busy_seconds_total Busy time.\n"
            "# TYPE busy_seconds_total counter\n"
            "busy_seconds_total 2.25\n");
}

TEST(MetricsTest, Gauge_SetAddAndSpecialValues) {
  MetricsRegistry registry;
  GaugeFamily& family = registry.AddGauge("g", "A gauge.", {"kind"});
  family.WithLabels({"a"}).Set(3);
  family.WithLabels({"a"}).Add(-5.5);
  family.WithLabels({"b"}).Set(0.1);
  family.WithLabels({"c"}).Set(1e20);
  family.WithLabels({"d"}).Set(std::numeric_limits<double>::infinity());
  family.WithLabels({"e"}).Set(-std::numeric_limits<double>::infinity());
  family.WithLabels({"f"}).Set(std::nan(""));
  family.WithLabels({"g"}).Set(-1234567);
  family.WithLabels({"h"}).Set(1.5e-7);
  family.WithLabels({"i"}).Increment();
  family.WithLabels({"i"}).Increment();
  family.WithLabels({"i"}).Decrement();
  EXPECT_EQ(registry.Render(),
            "# HELP g A gauge.\n"
            "# TYPE g gauge\n"
            "g{kind=\"a\"} -2.5\n"
            "g{kind=\"b\"} 0.1\n"
            "g{kind=\"c\"} 1e+20\n"
            "g{kind=\"d\"} +Inf\n"
            "g{kind=\"e\"} -Inf\n"
            "g{kind=\"f\"} NaN\n"
            "g{kind=\"g\"} -1234567\n"
            "g{kind=\"h\"} 1.5e-07\n"
            "g{kind=\"i\"} 1\n");
}

TEST(MetricsTest, Histogram_CumulativeBucketsSumCount) {
  MetricsRegistry registry;
  Histogram& h =
      registry.AddHistogram("latency_seconds", "Latency.", {0.1, 1, 2.5}).Get();
  for (double v : {0.05, 0.1, 0.7, 3.0, 100.0}) h.Observe(v);
  EXPECT_EQ(h.Count(), 5u);
  EXPECT_EQ(registry.Render(),
            "# HELP latency_seconds Latency.\n"
            "# TYPE latency_seconds histogram\n"
            "latency_seconds_bucket{le=\"0.1\"} 2\n"
            "latency_seconds_bucket{le=\"1\"} 3\n"
            "latency_seconds_bucket{le=\"2.5\"} 3\n"
            "latency_seconds_bucket{le=\"+Inf\"} 5\n"
            "latency_seconds_sum 103.85\n"
            "latency_seconds_count 5\n");
}

TEST(MetricsTest, Histogram_WithLabels) {
  MetricsRegistry registry;
  HistogramFamily& family =
      registry.AddHistogram("upload_bytes", "Upload size.", {1024}, {"agent"});
  EXPECT_EQ(registry.Render(),
            "# HELP upload_bytes Upload size.\n"
            "# TYPE upload_bytes histogram\n");
  family.WithLabels({"agent-2"}).Observe(2048);
  family.WithLabels({"agent-1"}).Observe(10);
  EXPECT_EQ(registry.Render(),
            "# HELP upload_bytes Upload size.\n"
            "# TYPE upload_bytes histogram\n"
            "upload_bytes_bucket{agent=\"agent-1\",le=\"1024\"} 1\n"
            "upload_bytes_bucket{agent=\"agent-1\",le=\"+Inf\"} 1\n"
            "upload_bytes_sum{agent=\"agent-1\"} 10\n"
            "upload_bytes_count{agent=\"agent-1\"} 1\n"
            "upload_bytes_bucket{agent=\"agent-2\",le=\"1024\"} 0\n"
            "upload_bytes_bucket{agent=\"agent-2\",le=\"+Inf\"} 1\n"
            "upload_bytes_sum{agent=\"agent-2\"} 2048\n"
            "upload_bytes_count{agent=\"agent-2\"} 1\n");
}

TEST(MetricsTest, Histogram_NaNGoesToInf) {
  MetricsRegistry registry;
  Histogram& h = registry.AddHistogram("h", "H.", {1}).Get();
  h.Observe(std::nan(""));
  EXPECT_EQ(registry.Render(),
            "# HELP h H.\n"
            "# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 0\n"
            "h_bucket{le=\"+Inf\"} 1\n"
            "h_sum NaN\n"
            "h_count 1\n");
}

TEST(MetricsTest, MultipleLabels_SameChildForSameValues) {
  MetricsRegistry registry;
  CounterFamily& family =
      registry.AddCounter("updates_total", "Updates.", {"outcome", "tier"});
  Counter& a = family.WithLabels({"accepted", "edge"});
  EXPECT_EQ(&a, &family.WithLabels({"accepted", "edge"}));
  a.Increment();
  family.WithLabels({"accepted", "cloud"}).IncrementBy(2);
  EXPECT_EQ(registry.Render(),
            "# HELP updates_total Updates.\n"
            "# TYPE updates_total counter\n"
            "updates_total{outcome=\"accepted\",tier=\"cloud\"} 2\n"
            "updates_total{outcome=\"accepted\",tier=\"edge\"} 1\n");
}

TEST(MetricsTest, Escaping_LabelValuesAndHelp) {
  MetricsRegistry registry;
  registry
      .AddCounter("c", "Help with \\ backslash,\nnewline and \"quotes\".",
                  {"v"})
      .WithLabels({"a\\b\"c\nd\xc3\xa9\xff"})
      .Increment();
  EXPECT_EQ(registry.Render(),
            "# HELP c Help with \\\\ backslash,\\nnewline and \"quotes\".\n"
            "# TYPE c counter\n"
            "c{v=\"a\\\\b\\\"c\\nd\xc3\xa9\xef\xbf\xbd\"} 1\n");
}

TEST(MetricsTest, FamiliesInRegistrationOrder) {
  MetricsRegistry registry;
  registry.AddGauge("zeta", "Last letter.");
  registry.AddCounter("alpha_total", "First letter.");
  RegisterBuildInfo(&registry);
  EXPECT_EQ(registry.Render(),
            absl::StrCat("# HELP zeta Last letter.\n"
                         "# TYPE zeta gauge\n"
                         "zeta 0\n"
                         "# HELP alpha_total First letter.\n"
                         "# TYPE alpha_total counter\n"
                         "alpha_total 0\n"
                         "# HELP fedge_build_info fedge build information; "
                         "the value is always 1.\n"
                         "# TYPE fedge_build_info gauge\n"
                         "fedge_build_info{version=\"",
                         kFedgeVersion, "\"} 1\n"));
}

TEST(MetricsTest, ConcurrentIncrements_AreAllCounted) {
  MetricsRegistry registry;
  CounterFamily& counters = registry.AddCounter("n_total", "N.", {"worker"});
  Gauge& gauge = registry.AddGauge("sum", "Sum.").Get();
  Histogram& histogram = registry.AddHistogram("h", "H.", {0.5}).Get();
  constexpr int kThreads = 8;
  constexpr int kIterations = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Every thread also creates children concurrently.
      Counter& shared = counters.WithLabels({"all"});
      Counter& own = counters.WithLabels({std::to_string(t)});
      for (int i = 0; i < kIterations; ++i) {
        shared.Increment();
        own.IncrementBy(0.5);
        gauge.Add(1);
        histogram.Observe(i % 2 == 0 ? 0.25 : 1.0);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counters.WithLabels({"all"}).Value(), kThreads * kIterations);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(counters.WithLabels({std::to_string(t)}).Value(),
              kIterations / 2);
  }
  EXPECT_EQ(gauge.Value(), kThreads * kIterations);
  EXPECT_EQ(histogram.Count(), uint64_t{kThreads} * kIterations);
  EXPECT_EQ(histogram.Sum(), kThreads * kIterations / 2 * 1.25);
  EXPECT_NE(registry.Render().find("n_total{worker=\"all\"} 160000\n"),
            std::string::npos);
}

using MetricsDeathTest = ::testing::Test;

TEST(MetricsDeathTest, BadNames_Crash) {
  MetricsRegistry registry;
  EXPECT_DEATH(registry.AddCounter("1abc", "x"), "metric name '1abc'");
  EXPECT_DEATH(registry.AddCounter("a-b", "x"), "metric name 'a-b'");
  EXPECT_DEATH(registry.AddCounter("ok", "x", {"bad:label"}), "bad:label");
  EXPECT_DEATH(registry.AddCounter("ok", "x", {"__reserved"}), "__reserved");
  EXPECT_DEATH(registry.AddCounter("ok", "x", {"a", "a"}), "appears twice");
  EXPECT_DEATH(registry.AddHistogram("ok", "x", {1}, {"le"}), "reserved");
  EXPECT_DEATH(registry.AddGauge("ok", ""), "empty help");
}

TEST(MetricsDeathTest, NameCollisions_Crash) {
  MetricsRegistry registry;
  registry.AddHistogram("latency", "x", {1});
  EXPECT_DEATH(registry.AddCounter("latency", "x"), "already registered");
  EXPECT_DEATH(registry.AddGauge("latency_count", "x"), "already registered");
  registry.AddGauge("size_sum", "x");
  EXPECT_DEATH(registry.AddHistogram("size", "x", {1}), "already registered");
}

TEST(MetricsDeathTest, BadBucketsAndLabelCounts_Crash) {
  MetricsRegistry registry;
  EXPECT_DEATH(registry.AddHistogram("h", "x", {}), "no buckets");
  EXPECT_DEATH(registry.AddHistogram("h", "x", {2, 1}), "strictly increasing");
  EXPECT_DEATH(registry.AddHistogram(
                   "h", "x", {1, std::numeric_limits<double>::infinity()}),
               "not finite");
  CounterFamily& family = registry.AddCounter("c", "x", {"a"});
  EXPECT_DEATH(family.WithLabels({}), "got 0 values");
  EXPECT_DEATH(family.WithLabels({"1"}).IncrementBy(-1), "counter increment");
  EXPECT_DEATH(family.WithLabels({"1"}).IncrementBy(-0.5), "counter increment");
}

}  // namespace
}  // namespace fedge
