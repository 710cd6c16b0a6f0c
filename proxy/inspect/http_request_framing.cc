#include "proxy/inspect/http_request_framing.h"

#include "absl/strings/ascii.h"
#include "proxy/inspect/http_text.h"

namespace skproxy {
namespace {

bool IsHopByHop(std::string_view name) {
  return http_text::EqualsIgnoreCase(name, "connection") || http_text::EqualsIgnoreCase(name, "keep-alive") ||
         http_text::EqualsIgnoreCase(name, "proxy-connection");
}

// Calls f(line_with_terminator, name, value) for each header line of `head` (the start line skipped,
// the blank line not included).
template <typename F>
void ForEachHeader(std::string_view head, F f) {
  size_t start = head.find('\n');
  if (start == std::string_view::npos) return;
  ++start;
  while (start < head.size()) {
    size_t newline = head.find('\n', start);
    if (newline == std::string_view::npos) newline = head.size() - 1;
    const std::string_view full = head.substr(start, newline + 1 - start);
    std::string_view line = full.substr(0, full.size() - 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    start = newline + 1;
    if (line.empty()) return;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    f(full, line.substr(0, colon), http_text::TrimOws(line.substr(colon + 1)));
  }
}

// The head without its blank line, hop-by-hop headers dropped.
std::string WithoutHopByHop(std::string_view head) {
  std::string out;
  out.reserve(head.size() + 32);
  out.append(head.substr(0, head.find('\n') + 1));
  ForEachHeader(head, [&](std::string_view full, std::string_view name, std::string_view) {
    if (!IsHopByHop(name)) out.append(full);
  });
  return out;
}

}  // namespace

RequestFraming FrameRequest(std::string_view bytes, const HttpHead& head) {
  RequestFraming framing;
  if (head.minor_version != 1 || head.method == "CONNECT") return framing;
  bool ok = true;
  bool has_length = false;
  ForEachHeader(bytes.substr(0, head.length), [&](std::string_view, std::string_view name, std::string_view value) {
    if (http_text::EqualsIgnoreCase(name, "content-length")) {
      uint64_t length = 0;
      if (!http_text::ParseLength(value, &length) || (has_length && length != framing.content_length)) ok = false;
      has_length = true;
      framing.content_length = length;
    } else if (http_text::EqualsIgnoreCase(name, "transfer-encoding") || http_text::EqualsIgnoreCase(name, "upgrade") ||
               http_text::EqualsIgnoreCase(name, "expect")) {
      ok = false;
    } else if (http_text::EqualsIgnoreCase(name, "connection")) {
      if (http_text::HasToken(value, "close")) framing.client_close = true;
      if (http_text::HasToken(value, "upgrade")) ok = false;
    }
  });
  framing.poolable = ok;
  return framing;
}

std::string RewriteRequestHead(std::string_view bytes, const HttpHead& head, std::string_view extra) {
  std::string out = WithoutHopByHop(bytes.substr(0, head.length));
  out.append(extra);
  out.append("\r\n");
  return out;
}

std::string RewriteResponseHead(std::string_view head, bool close_client, bool http10) {
  std::string out = WithoutHopByHop(head);
  if (close_client) {
    out.append("Connection: close\r\n");
  } else if (http10) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
  return out;
}

}  // namespace skproxy
