// Small HTTP/1.x text helpers shared by the request inspector, the response parser and the keep-alive
// pool's head rewriting (std::string_view throughout: the Debian abseil's string functions take its own
// string_view type).
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/strings/ascii.h"

namespace skproxy::http_text {

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (absl::ascii_tolower(static_cast<unsigned char>(a[i])) != absl::ascii_tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// Without the optional whitespace around a field value or list item (RFC 9110 5.6.3).
inline std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether the comma-separated `list` (Connection's value) holds `token`, in any case.
inline bool HasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (EqualsIgnoreCase(TrimOws(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// A line without its terminator ("\r\n", or a bare "\n" as RFC 9112 2.2 lets a recipient accept).
inline std::string_view LineAt(std::string_view data, size_t start, size_t newline) {
  std::string_view line = data.substr(start, newline - start);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// The one walk over a complete head's field lines (the head's end already found, blank line included):
// calls f(line, full) for each line after the start line and before the blank line, `line` without its
// terminator and `full` with it. f returns false to stop the walk; so does this function then.
template <typename F>
bool ForEachFieldLine(std::string_view head, F f) {
  size_t start = head.find('\n');
  if (start == std::string_view::npos) return true;
  ++start;
  while (start < head.size()) {
    size_t newline = head.find('\n', start);
    if (newline == std::string_view::npos) newline = head.size() - 1;
    const std::string_view line = LineAt(head, start, newline);
    if (line.empty()) return true;
    if (!f(line, head.substr(start, newline + 1 - start))) return false;
    start = newline + 1;
  }
  return true;
}

// A field line's name (as sent: not checked here) and value without the whitespace around it; false when
// it has no colon.
inline bool SplitField(std::string_view line, std::string_view* name, std::string_view* value) {
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  *name = line.substr(0, colon);
  *value = TrimOws(line.substr(colon + 1));
  return true;
}

// A Content-Length: digits only, at most 18 of them (no sign, no list, no overflow). False otherwise.
inline bool ParseLength(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

}  // namespace skproxy::http_text
