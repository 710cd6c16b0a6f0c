#include "proxy/inspect/http_request_framing.h"

#include "absl/container/inlined_vector.h"
#include "proxy/inspect/http_text.h"

namespace skproxy {
namespace {

// Hop-by-hop whatever the Connection header says (RFC 9110 7.6.1; TE and Upgrade: 10.1.4, 7.8).
// Transfer-Encoding is hop-by-hop too in principle, but the pool passes the body on with its framing
// unchanged, so it stays.
bool AlwaysHopByHop(std::string_view name) {
  return http_text::EqualsIgnoreCase(name, "connection") || http_text::EqualsIgnoreCase(name, "keep-alive") ||
         http_text::EqualsIgnoreCase(name, "proxy-connection") || http_text::EqualsIgnoreCase(name, "te") ||
         http_text::EqualsIgnoreCase(name, "upgrade");
}

// What frames or routes the message: never dropped because a Connection header names it, or the upstream
// (or the client) would read a different message than skproxy framed (request smuggling).
bool Protected(std::string_view name) {
  return http_text::EqualsIgnoreCase(name, "content-length") ||
         http_text::EqualsIgnoreCase(name, "transfer-encoding") || http_text::EqualsIgnoreCase(name, "host");
}

// The head without its blank line: hop-by-hop fields dropped, and the fields the Connection headers name
// (RFC 9110 7.6.1: "a proxy or gateway MUST parse a received Connection header field before a message is
// forwarded and, for each connection-option in this field, remove any header or trailer field(s) from the
// message with the same name"). `te_trailers`: a request's "TE: trailers" stays, as the one TE value that
// says something about the client rather than the connection (the pool passes trailers on unchanged).
std::string WithoutHopByHop(std::string_view head, bool te_trailers) {
  absl::InlinedVector<std::string_view, 2> connection;  // the Connection headers' values
  http_text::ForEachFieldLine(head, [&](std::string_view line, std::string_view) {
    std::string_view name, value;
    if (http_text::SplitField(line, &name, &value) && http_text::EqualsIgnoreCase(name, "connection"))
      connection.push_back(value);
    return true;
  });
  std::string out;
  out.reserve(head.size() + 32);
  out.append(head.substr(0, head.find('\n') + 1));
  bool trailers = false;
  http_text::ForEachFieldLine(head, [&](std::string_view line, std::string_view full) {
    std::string_view name, value;
    if (!http_text::SplitField(line, &name, &value)) return true;  // validated before: cannot happen
    if (AlwaysHopByHop(name)) {
      if (te_trailers && http_text::EqualsIgnoreCase(name, "te") && http_text::HasToken(value, "trailers"))
        trailers = true;
      return true;
    }
    if (!Protected(name)) {
      for (std::string_view list : connection)
        if (http_text::HasToken(list, name)) return true;
    }
    out.append(full);
    return true;
  });
  if (trailers) out.append("TE: trailers\r\n");
  return out;
}

}  // namespace

RequestFraming FrameRequest(std::string_view bytes, const HttpHead& head) {
  RequestFraming framing;
  if (head.minor_version != 1 || head.method == "CONNECT") return framing;
  bool ok = true;
  bool has_length = false;
  http_text::ForEachFieldLine(bytes.substr(0, head.length), [&](std::string_view line, std::string_view) {
    std::string_view name, value;
    if (!http_text::SplitField(line, &name, &value)) return true;
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
    return true;
  });
  framing.poolable = ok;
  return framing;
}

std::string RewriteRequestHead(std::string_view bytes, const HttpHead& head, std::string_view extra) {
  std::string out = WithoutHopByHop(bytes.substr(0, head.length), /*te_trailers=*/true);
  out.append(extra);
  out.append("\r\n");
  return out;
}

std::string RewriteResponseHead(std::string_view head, bool close_client, bool http10) {
  std::string out = WithoutHopByHop(head, /*te_trailers=*/false);
  if (close_client) {
    out.append("Connection: close\r\n");
  } else if (http10) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
  return out;
}

}  // namespace skproxy
