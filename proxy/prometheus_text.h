// A reader of the Prometheus text exposition format (version 0.0.4), the format of skproxy's /metrics, for
// the code that checks what the proxy exported: the integration tests and any C++ bench tool. It depends on
// nothing but abseil, so a tool can use it without linking the proxy.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace skproxy {

// Sample key "name{labels}", with the labels exactly as the exporter printed them -> value.
using MetricSamples = std::map<std::string, double>;
// (label name, decoded label value) pairs, in printed order.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;
// Labels a sample must all carry to be selected (it may carry others).
using LabelFilter = MetricLabels;

struct SampleKey {
  std::string name;
  MetricLabels labels;
};

// Splits a sample key such as `name{a="x",b="q\"uote"}` into its name and labels, decoding the escapes \\,
// \" and \n. Fails on anything that is not a whole key.
absl::StatusOr<SampleKey> SplitSample(std::string_view key);

// Parses a whole exposition. Ignored: empty lines and lines whose first non-blank character is '#' (HELP,
// TYPE and plain comments). Every other line must be one sample: a metric name, optional {labels} (blanks
// between tokens and a trailing comma allowed), blanks, a value as strtod reads it in full (so +Inf, -Inf
// and NaN too), and optionally blanks and an integer timestamp, which is ignored. A malformed line, or a
// key printed twice, rejects the whole text with InvalidArgument naming the line: a scrape that silently
// lost a sample would let "this counter is 0" pass for the wrong reason.
absl::StatusOr<MetricSamples> ParseMetrics(std::string_view text);

// Sum of every sample of `metric` whose labels include all of `filter`; 0 when there is none (prometheus-cpp
// prints a labelled sample only once it has been touched). Keys that SplitSample rejects are ignored.
double SumMetric(const MetricSamples& samples, std::string_view metric, const LabelFilter& filter = {});

}  // namespace skproxy
