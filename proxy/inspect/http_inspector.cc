#include "proxy/inspect/http_inspector.h"

#include <array>
#include <cstdint>
#include <cstring>

#include "absl/strings/ascii.h"
#include "proxy/inspect/http_text.h"

namespace skproxy {
namespace {

// Byte classes, one table lookup per byte: RFC 9110 5.6.2 tchar, and field-value / request-target bytes
// (visible ASCII and obs-text; SP and HTAB only inside a value).
enum : uint8_t { kToken = 1, kVisible = 2, kBlank = 4 };

constexpr std::array<uint8_t, 256> MakeClasses() {
  std::array<uint8_t, 256> t{};
  for (int c = 0x21; c < 0x100; ++c) t[c] = c == 0x7f ? 0 : kVisible;
  for (int c = '0'; c <= '9'; ++c) t[c] |= kToken;
  for (int c = 'a'; c <= 'z'; ++c) t[c] |= kToken;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] |= kToken;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<uint8_t>(c)] |= kToken;
  t[' '] = t['\t'] = kBlank;
  return t;
}
constexpr std::array<uint8_t, 256> kClasses = MakeClasses();

bool IsTokenChar(char c) { return kClasses[static_cast<uint8_t>(c)] & kToken; }

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!IsTokenChar(c)) return false;
  return true;
}

bool IsValueChar(char c, bool spaces) {
  return kClasses[static_cast<uint8_t>(c)] & (spaces ? (kVisible | kBlank) : kVisible);
}

bool ParseRequestLine(std::string_view line, HttpHead* head) {
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return false;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return false;
  head->method = line.substr(0, sp1);
  head->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(head->method) || head->target.empty()) return false;
  for (char c : head->target)
    if (!IsValueChar(c, false)) return false;
  if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || !absl::ascii_isdigit(version[7])) return false;
  head->minor_version = version[7] - '0';
  return true;
}

// Host and path from the request-target: origin-form "/p?q", absolute-form "http://h:1/p", authority-form
// "h:1" (CONNECT) and asterisk-form "*".
bool ParseTarget(HttpHead* head, std::string_view* authority) {
  std::string_view t = head->target;
  if (t.front() == '/' || t == "*") {
    head->path = t.substr(0, t.find('?'));
    return true;
  }
  const size_t scheme_end = t.find("://");
  if (scheme_end != std::string_view::npos) {
    if (!IsToken(t.substr(0, scheme_end))) return false;
    t.remove_prefix(scheme_end + 3);
    const size_t path_start = t.find_first_of("/?");
    *authority = t.substr(0, path_start);
    if (authority->empty()) return false;
    head->path = path_start == std::string_view::npos ? "/" : t.substr(path_start, t.find('?') - path_start);
    if (head->path.empty()) head->path = "/";
    return true;
  }
  if (head->method != "CONNECT") return false;
  *authority = t;
  return true;
}

constexpr size_t kMethodPrefix = 16;

}  // namespace

HttpInspector::Result HttpInspector::Feed(std::string_view data) {
  for (size_t i = scanned_; i < data.size(); ++i) {
    const void* newline = std::memchr(data.data() + i, '\n', data.size() - i);
    if (newline == nullptr) break;
    i = static_cast<size_t>(static_cast<const char*>(newline) - data.data());
    const std::string_view line = http_text::LineAt(data, line_start_, i);
    if (line_start_ == 0) {
      // The request line alone tells a client that does not speak HTTP: answer now, not at the timeout.
      if (!ParseRequestLine(line, &head_)) return Result::kMalformed;
    } else if (line.empty()) {
      head_.blank_line = line_start_;
      head_.length = i + 1;
      scanned_ = i + 1;
      return Parse(data.substr(0, head_.length));
    }
    line_start_ = i + 1;
  }
  scanned_ = data.size();
  // Before the first line ends: a byte no method can hold is not HTTP.
  // (Only its first bytes, so that a request line sent byte by byte is not rescanned at every byte.)
  if (line_start_ == 0) {
    for (char c : data.substr(0, kMethodPrefix)) {
      if (c == ' ') break;
      if (!IsTokenChar(c) && c != '\r') return Result::kMalformed;
    }
  }
  return Result::kNeedMore;
}

HttpInspector::Result HttpInspector::Parse(std::string_view head) {
  // Views into `head` from here on.
  if (!ParseRequestLine(http_text::LineAt(head, 0, head.find('\n')), &head_)) return Result::kMalformed;
  bool have_host = false;
  std::string_view host_header;
  const bool valid = http_text::ForEachFieldLine(head, [&](std::string_view line, std::string_view) {
    if (line.front() == ' ' || line.front() == '\t') return false;  // obs-fold
    std::string_view name, value;
    if (!http_text::SplitField(line, &name, &value) || !IsToken(name)) return false;
    for (char c : value)
      if (!IsValueChar(c, true)) return false;
    if (http_text::EqualsIgnoreCase(name, "host")) {
      if (have_host) return false;  // RFC 9112 3.2: more than one Host is a 400
      have_host = true;
      host_header = value;
    }
    return true;
  });
  if (!valid) return Result::kMalformed;
  if (head_.minor_version >= 1 && !have_host) return Result::kMalformed;  // RFC 9112 3.2
  std::string_view authority;
  if (!ParseTarget(&head_, &authority)) return Result::kMalformed;
  head_.host = authority.empty() ? host_header : authority;
  for (char c : head_.host)
    if (c == ' ' || c == '\t' || c == '/' || c == '@') return Result::kMalformed;
  return Result::kDone;
}

}  // namespace skproxy
