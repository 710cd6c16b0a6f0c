// Whether a request head (already validated by HttpInspector) can go over a pooled keep-alive connection,
// how long its body is, and the heads rewritten for the other side: hop-by-hop fields are the proxy's
// business on each leg (RFC 9110 7.6.1), so they are dropped and Connection is set as that leg needs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/inspect/http_inspector.h"

namespace skproxy {

struct RequestFraming {
  // False: spliced as before (HTTP/1.0, CONNECT, Upgrade, Transfer-Encoding, Expect, or a Content-Length
  // that is not one plain number).
  bool poolable = false;
  uint64_t content_length = 0;
  bool client_close = false;  // Connection: close: the client connection ends after this response
};

// `head`: the request head's bytes (head.length of them), as HttpInspector::head() describes.
RequestFraming FrameRequest(std::string_view bytes, const HttpHead& head);

// The request head for the upstream without its hop-by-hop fields (RFC 9110 7.6.1): Connection,
// Keep-Alive, Proxy-Connection, TE (but "TE: trailers" stays), Upgrade, and every field a Connection header
// names except Content-Length, Transfer-Encoding and Host (which frame and route it); HTTP/1.1 keeps the
// upstream connection open without a Connection header. Then `extra` (e.g. "X-Forwarded-For: a\r\n",
// which a Connection header therefore cannot remove) before the blank line.
std::string RewriteRequestHead(std::string_view bytes, const HttpHead& head, std::string_view extra);

// The response head for the client: the same fields dropped (TE entirely), then "Connection: close" when the
// client connection ends after this response, or "Connection: keep-alive" when it stays open after an
// HTTP/1.0 response (which would otherwise mean close).
std::string RewriteResponseHead(std::string_view head, bool close_client, bool http10);

}  // namespace skproxy
