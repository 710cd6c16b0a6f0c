// The Prometheus text reader against a table of well-formed and malformed lines, and against what the
// proxy's own exporter library prints.
#include "proxy/prometheus_text.h"

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace skproxy {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Accepted {
  const char* what;
  std::string text;
  std::string key;  // the one sample the text holds
  double value;
};

TEST(ParseMetrics, AcceptsWellFormedSamples) {
  const Accepted kCases[] = {
      {"bare name", "a 1", "a", 1},
      {"colon in name", "a:b_c 2", "a:b_c", 2},
      {"labels", "a{x=\"1\",y=\"2\"} 3", "a{x=\"1\",y=\"2\"}", 3},
      {"empty label set", "a{} 4", "a{}", 4},
      {"trailing comma", "a{x=\"1\",} 5", "a{x=\"1\",}", 5},
      {"blanks inside the label set", "a{ x = \"1\" , y=\"2\" } 6", "a{ x = \"1\" , y=\"2\" }", 6},
      {"brace and comma inside a value", "a{x=\"},{\"} 7", "a{x=\"},{\"}", 7},
      {"escapes in a value", "a{x=\"q\\\"\\\\\\n\"} 8", "a{x=\"q\\\"\\\\\\n\"}", 8},
      {"exponent", "a 1.5e+09", "a", 1.5e9},
      {"negative", "a -2.5", "a", -2.5},
      {"+Inf value", "a +Inf", "a", kInf},
      {"-Inf value", "a -Inf", "a", -kInf},
      {"+Inf label", "a_bucket{le=\"+Inf\"} 12", "a_bucket{le=\"+Inf\"}", 12},
      {"timestamp", "a 9 1700000000000", "a", 9},
      {"negative timestamp", "a 9 -5", "a", 9},
      {"tabs and CRLF", "a\t10\t\r", "a", 10},
      {"leading and trailing blanks", "  a 11  ", "a", 11},
      {"comments, HELP and TYPE around it",
       "# HELP a Help text with \"quotes\" and {braces}\n# TYPE a counter\n#plain comment\n\na 12\n\n", "a", 12},
  };
  for (const Accepted& c : kCases) {
    absl::StatusOr<MetricSamples> m = ParseMetrics(c.text);
    ASSERT_TRUE(m.ok()) << c.what << ": " << m.status();
    ASSERT_EQ(m->size(), 1u) << c.what;
    EXPECT_EQ(m->begin()->first, c.key) << c.what;
    EXPECT_EQ(m->begin()->second, c.value) << c.what;
  }
}

TEST(ParseMetrics, NaNIsAValue) {
  absl::StatusOr<MetricSamples> m = ParseMetrics("a NaN\n");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(std::isnan(m->at("a")));
}

struct Rejected {
  const char* what;
  std::string text;
  std::string error;  // part of the message
};

TEST(ParseMetrics, RejectsMalformedLinesNamingTheLine) {
  const Rejected kCases[] = {
      {"no value", "a", "line 1: missing value"},
      {"value not a number", "a abc", "value is not a number"},
      {"junk after the value", "a 1x", "value is not a number"},
      {"no blank before the value", "a{x=\"1\"}1", "expected a blank"},
      {"fractional timestamp", "a 1 1.5", "timestamp is not an integer"},
      {"text after the timestamp", "a 1 2 3", "unexpected text after the timestamp"},
      {"name starts with a digit", "1a 1", "expected a metric name"},
      {"label name starts with a digit", "a{1x=\"1\"} 1", "expected a label name"},
      {"unquoted label value", "a{x=1} 1", "expected '\"' before a label value"},
      {"missing '='", "a{x\"1\"} 1", "expected '=' after a label name"},
      {"unterminated label set", "a{x=\"1\" 1", "expected ',' or '}'"},
      {"label set cut at the end", "a{x=\"1\"", "unterminated label set"},
      {"unterminated label value", "a{x=\"1} 1", "unterminated label value"},
      {"unknown escape", "a{x=\"\\t\"} 1", "unknown escape"},
      {"sample printed twice", "a 1\na 2", "line 2: sample printed twice"},
      {"bad line after good ones", "# TYPE a gauge\na 1\nb{ 2\n", "line 3:"},
  };
  for (const Rejected& c : kCases) {
    absl::StatusOr<MetricSamples> m = ParseMetrics(c.text);
    ASSERT_FALSE(m.ok()) << c.what << " parsed";
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_NE(m.status().message().find(c.error), absl::string_view::npos) << c.what << ": " << m.status();
  }
}

TEST(SplitSample, DecodesEscapes) {
  absl::StatusOr<SampleKey> k = SplitSample("skproxy_fallbacks_total{reason=\"a \\\"quoted\\\" } \\\\ \\n\",x=\"\"}");
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->name, "skproxy_fallbacks_total");
  EXPECT_EQ(k->labels, (MetricLabels{{"reason", "a \"quoted\" } \\ \n"}, {"x", ""}}));
  EXPECT_FALSE(SplitSample("a{x=\"1\"} 3").ok());
  EXPECT_FALSE(SplitSample("").ok());
}

TEST(SumMetric, SumsTheSamplesCarryingEveryFilterLabel) {
  absl::StatusOr<MetricSamples> m = ParseMetrics(
      "skproxy_bytes_total{direction=\"downstream_to_upstream\",path=\"kernel\"} 1.5e+09\n"
      "skproxy_bytes_total{direction=\"upstream_to_downstream\",path=\"kernel\"} 500\n"
      "skproxy_bytes_total{direction=\"downstream_to_upstream\",path=\"user\"} 7 1700000000000\n"
      "skproxy_bytes_total_other 1000\n"
      "skproxy_sockmap_entries 0\n"
      "skproxy_fallbacks_total{reason=\"a \\\"quoted\\\" } reason\"} 3\n");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(SumMetric(*m, "skproxy_bytes_total"), 1.5e9 + 507);
  EXPECT_EQ(SumMetric(*m, "skproxy_bytes_total", {{"path", "kernel"}}), 1.5e9 + 500);
  EXPECT_EQ(SumMetric(*m, "skproxy_bytes_total", {{"path", "user"}, {"direction", "downstream_to_upstream"}}), 7);
  EXPECT_EQ(SumMetric(*m, "skproxy_bytes_total", {{"path", "nope"}}), 0);
  EXPECT_EQ(SumMetric(*m, "skproxy_sockmap_entries"), 0);
  EXPECT_EQ(m->count("skproxy_sockmap_entries"), 1u);
  EXPECT_EQ(SumMetric(*m, "skproxy_fallbacks_total", {{"reason", "a \"quoted\" } reason"}}), 3);
  EXPECT_EQ(SumMetric(*m, "skproxy_missing_total"), 0);
}

// What prometheus-cpp (the proxy's exporter) prints must read back, escapes and +Inf buckets included.
TEST(ParseMetrics, ReadsWhatTheExporterPrints) {
  prometheus::Registry registry;
  // Help text only on one line: this prometheus-cpp prints a newline in HELP raw, which ends the comment.
  auto& counters =
      prometheus::BuildCounter().Name("skproxy_test_total").Help("Help with a \\ backslash").Register(registry);
  counters.Add({{"reason", "a \"quoted\" } \\ reason\nline"}}).Increment(3);
  counters.Add({{"reason", "plain"}}).Increment(4);
  auto& histograms = prometheus::BuildHistogram().Name("skproxy_test_seconds").Help("h").Register(registry);
  histograms.Add({}, prometheus::Histogram::BucketBoundaries{0.5, 1}).Observe(0.75);

  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry.Collect());
  absl::StatusOr<MetricSamples> m = ParseMetrics(out.str());
  ASSERT_TRUE(m.ok()) << m.status() << "\n" << out.str();
  EXPECT_EQ(SumMetric(*m, "skproxy_test_total"), 7) << out.str();
  EXPECT_EQ(SumMetric(*m, "skproxy_test_total", {{"reason", "a \"quoted\" } \\ reason\nline"}}), 3) << out.str();
  EXPECT_EQ(SumMetric(*m, "skproxy_test_seconds_bucket", {{"le", "+Inf"}}), 1) << out.str();
  EXPECT_EQ(SumMetric(*m, "skproxy_test_seconds_bucket", {{"le", "0.5"}}), 0) << out.str();
  EXPECT_EQ(SumMetric(*m, "skproxy_test_seconds_count"), 1) << out.str();
}

}  // namespace
}  // namespace skproxy
