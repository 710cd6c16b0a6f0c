#include "proxy/prometheus_text.h"

#include <algorithm>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace skproxy {
namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t'; }
bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A position in one line; every Parse* step advances it or returns an error text.
struct Cursor {
  std::string_view text;
  size_t at = 0;

  bool done() const { return at >= text.size(); }
  char peek() const { return done() ? '\0' : text[at]; }
  void SkipBlanks() {
    while (!done() && IsBlank(text[at])) at++;
  }
};

// Metric names may contain ':', label names may not.
std::string ParseName(Cursor* c, bool colon_allowed, std::string* error) {
  auto first = [&](char ch) { return IsLetter(ch) || (colon_allowed && ch == ':'); };
  if (!first(c->peek())) {
    *error = colon_allowed ? "expected a metric name" : "expected a label name";
    return "";
  }
  size_t start = c->at;
  while (!c->done() && (first(c->peek()) || IsDigit(c->peek()))) c->at++;
  return std::string(c->text.substr(start, c->at - start));
}

std::string ParseLabelValue(Cursor* c, std::string* error) {
  std::string value;
  for (;;) {
    if (c->done()) {
      *error = "unterminated label value";
      return "";
    }
    char ch = c->text[c->at++];
    if (ch == '"') return value;
    if (ch != '\\') {
      value.push_back(ch);
      continue;
    }
    char escaped = c->peek();
    c->at++;
    if (escaped == 'n') {
      value.push_back('\n');
    } else if (escaped == '\\' || escaped == '"') {
      value.push_back(escaped);
    } else {
      *error = "unknown escape in label value";
      return "";
    }
  }
}

// From just after '{' to just after the matching '}'.
void ParseLabels(Cursor* c, MetricLabels* labels, std::string* error) {
  for (;;) {
    c->SkipBlanks();
    if (c->peek() == '}') {
      c->at++;
      return;
    }
    std::string name = ParseName(c, /*colon_allowed=*/false, error);
    if (!error->empty()) return;
    c->SkipBlanks();
    if (c->peek() != '=') {
      *error = "expected '=' after a label name";
      return;
    }
    c->at++;
    c->SkipBlanks();
    if (c->peek() != '"') {
      *error = "expected '\"' before a label value";
      return;
    }
    c->at++;
    std::string value = ParseLabelValue(c, error);
    if (!error->empty()) return;
    labels->emplace_back(std::move(name), std::move(value));
    c->SkipBlanks();
    if (c->peek() == ',') {
      c->at++;
    } else if (c->peek() != '}') {
      *error = c->done() ? "unterminated label set" : "expected ',' or '}' after a label";
      return;
    }
  }
}

// The key at the cursor: a name and, if a '{' follows, its labels.
SampleKey ParseKey(Cursor* c, std::string* error) {
  SampleKey key;
  key.name = ParseName(c, /*colon_allowed=*/true, error);
  if (!error->empty()) return key;
  if (c->peek() == '{') {
    c->at++;
    ParseLabels(c, &key.labels, error);
  }
  return key;
}

std::string_view Token(Cursor* c) {
  size_t start = c->at;
  while (!c->done() && !IsBlank(c->peek())) c->at++;
  return c->text.substr(start, c->at - start);
}

bool ParseValue(std::string_view token, double* value) {
  if (token.empty()) return false;
  std::string copy(token);  // strtod needs a terminated string
  char* end = nullptr;
  *value = strtod(copy.c_str(), &end);
  return end == copy.c_str() + copy.size();
}

bool IsTimestamp(std::string_view token) {
  if (!token.empty() && token.front() == '-') token.remove_prefix(1);
  return !token.empty() && std::all_of(token.begin(), token.end(), IsDigit);
}

// One sample line (not blank, not a comment): stores its key and value, or returns why it is malformed.
std::string ParseSampleLine(std::string_view line, std::string* key, double* value) {
  Cursor c{line};
  std::string error;
  ParseKey(&c, &error);
  if (!error.empty()) return error;
  *key = std::string(line.substr(0, c.at));
  if (!IsBlank(c.peek())) return c.done() ? "missing value" : "expected a blank after the sample name";
  c.SkipBlanks();
  if (!ParseValue(Token(&c), value)) return "value is not a number";
  c.SkipBlanks();
  if (c.done()) return "";
  if (!IsTimestamp(Token(&c))) return "timestamp is not an integer";
  c.SkipBlanks();
  if (!c.done()) return "unexpected text after the timestamp";
  return "";
}

}  // namespace

absl::StatusOr<SampleKey> SplitSample(std::string_view key) {
  Cursor c{key};
  std::string error;
  SampleKey parsed = ParseKey(&c, &error);
  if (error.empty() && !c.done()) error = "unexpected text after the sample name";
  if (!error.empty()) return absl::InvalidArgumentError(absl::StrCat(error, ": ", std::string(key)));
  return parsed;
}

absl::StatusOr<MetricSamples> ParseMetrics(std::string_view text) {
  MetricSamples samples;
  size_t line_number = 0;
  while (!text.empty()) {
    line_number++;
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    while (!line.empty() && (IsBlank(line.back()) || line.back() == '\r')) line.remove_suffix(1);
    while (!line.empty() && IsBlank(line.front())) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    std::string key;
    double value = 0;
    std::string error = ParseSampleLine(line, &key, &value);
    if (error.empty() && !samples.emplace(key, value).second) error = "sample printed twice";
    if (!error.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": ", error, ": ", std::string(line)));
    }
  }
  return samples;
}

double SumMetric(const MetricSamples& samples, std::string_view metric, const LabelFilter& filter) {
  double sum = 0;
  for (const auto& [key, value] : samples) {
    // Cheap prefix test first: most keys belong to other metrics.
    if (key.compare(0, metric.size(), metric.data(), metric.size()) != 0) continue;
    absl::StatusOr<SampleKey> parsed = SplitSample(key);
    if (!parsed.ok() || parsed->name != metric) continue;
    const MetricLabels& labels = parsed->labels;
    bool match = std::all_of(filter.begin(), filter.end(), [&](const auto& wanted) {
      return std::find(labels.begin(), labels.end(), wanted) != labels.end();
    });
    if (match) sum += value;
  }
  return sum;
}

}  // namespace skproxy
