// What a listener reads before it connects, as Envoy's listener filters do it: the PROXY protocol header
// when the listener requires one, then the HTTP request head or the TLS ClientHello, then the route.
// Socket-free: the Connection reads, this decides, so that tests and the fuzz target drive it directly.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "config/address.h"
#include "config/config.h"
#include "proxy/inspect/http_inspector.h"
#include "proxy/inspect/proxy_protocol.h"
#include "proxy/inspect/tls_inspector.h"
#include "proxy/route_table.h"

namespace skproxy {

class Inspection {
 public:
  struct Outcome {
    enum class Kind { kNeedMore, kRouted, kRejected };
    Kind kind = Kind::kNeedMore;
    int route = RouteTable::kNone;  // kRouted: RouteTable::Match's answer (kNone: nothing matched)
    const char* reason = nullptr;   // kRejected: the inspection failure counted
    int status = 0;                 // kRejected on an http listener: the response to send (0: just close)
  };

  // `client` and `local`: the accepted socket's peer and own address.
  Inspection(const config::Listener& listener, const RouteTable& routes, const SocketAddress& client,
             const SocketAddress& local);

  // `data`: every byte read so far, at most the listener's inspect.max_bytes.
  Outcome Feed(std::string_view data);
  // inspect.timeout passed before Feed decided (docs/l7-routing.md: why this policy).
  Outcome Timeout() const;
  // The client closed (or reset) before Feed decided.
  Outcome ClientClosed() const;

  // After kRouted: the bytes the upstream gets first, in order: the client's bytes after the PROXY header,
  // the request head with X-Forwarded-For appended when the listener adds it.
  std::string Forward(std::string_view data) const;
  // The client as the PROXY header gave it, else the peer of the socket; likewise the address it reached.
  const SocketAddress& client() const { return client_; }
  const SocketAddress& local() const { return local_; }
  // After kRouted on an http listener: the request head (views into the data given to Feed), and where the
  // client's own bytes start in that data (after a PROXY header).
  const HttpHead& http_head() const { return http_.head(); }
  size_t client_offset() const { return offset_; }

 private:
  Outcome Reject(const char* reason, int http_status) const;
  Outcome Route(const RouteInput& input) const;

  const config::Listener& listener_;
  const RouteTable& routes_;
  SocketAddress client_, local_;
  std::optional<ProxyProtocolReader> proxy_;  // set until the PROXY header has been read
  size_t offset_ = 0;                         // bytes of the PROXY header: the client's start after them
  HttpInspector http_;
  TlsInspector tls_;
};

// The address as X-Forwarded-For writes it: "192.0.2.1", "2001:db8::1".
std::string ForwardedFor(const SocketAddress& address);

}  // namespace skproxy
