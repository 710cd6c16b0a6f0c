#include "proxy/inspect/inspection.h"

#include <arpa/inet.h>

#include "absl/strings/str_cat.h"

namespace skproxy {

Inspection::Inspection(const config::Listener& listener, const RouteTable& routes, const SocketAddress& client,
                       const SocketAddress& local)
    : listener_(listener), routes_(routes), client_(client), local_(local), tls_(listener.inspect.max_bytes) {
  if (listener.proxy_protocol != config::ProxyProtocolVersion::kNone) proxy_.emplace(listener.proxy_protocol);
}

Inspection::Outcome Inspection::Reject(const char* reason, int http_status) const {
  Outcome o;
  o.kind = Outcome::Kind::kRejected;
  o.reason = reason;
  o.status = listener_.protocol == config::ListenerProtocol::kHttp ? http_status : 0;
  return o;
}

Inspection::Outcome Inspection::Route(const RouteInput& input) const {
  Outcome o;
  o.kind = Outcome::Kind::kRouted;
  o.route = routes_.Match(input);
  return o;
}

Inspection::Outcome Inspection::Feed(std::string_view data) {
  const bool full = data.size() >= listener_.inspect.max_bytes;
  if (proxy_) {
    switch (proxy_->Feed(data)) {
      case ProxyProtocolReader::Result::kNeedMore:
        return full ? Reject("proxy_protocol_malformed", 0) : Outcome{};
      case ProxyProtocolReader::Result::kMissing:
        return Reject("proxy_protocol_missing", 0);
      case ProxyProtocolReader::Result::kMalformed:
        return Reject("proxy_protocol_malformed", 0);
      case ProxyProtocolReader::Result::kDone:
        break;
    }
    const ProxyHeader& header = proxy_->header();
    offset_ = header.length;
    if (!header.local) {
      client_ = header.source;
      local_ = header.destination;
    }
    proxy_.reset();
  }
  const std::string_view client = data.substr(offset_);
  switch (listener_.protocol) {
    case config::ListenerProtocol::kTcp:
      return Route({});
    case config::ListenerProtocol::kHttp:
      if (client.empty()) return Outcome{};
      switch (http_.Feed(client)) {
        case HttpInspector::Result::kNeedMore:
          return full ? Reject("http_head_too_large", 431) : Outcome{};
        case HttpInspector::Result::kMalformed:
          return Reject("http_malformed", 400);
        case HttpInspector::Result::kDone:
          return Route({http_.head().host, http_.head().path, {}});
      }
      break;
    case config::ListenerProtocol::kTls:
      if (client.empty()) return Outcome{};
      switch (tls_.Feed(client)) {
        case TlsInspector::Result::kNeedMore:
          return full ? Reject("tls_hello_too_large", 0) : Outcome{};
        case TlsInspector::Result::kNotTls:
          return Route({});  // no SNI: the default route, or a close when there is none
        case TlsInspector::Result::kMalformed:
          return Reject("tls_malformed", 0);
        case TlsInspector::Result::kTooLarge:
          return Reject("tls_hello_too_large", 0);
        case TlsInspector::Result::kDone:
          return Route({{}, {}, tls_.sni()});
      }
      break;
  }
  return Reject("internal", 0);
}

Inspection::Outcome Inspection::Timeout() const {
  return Reject(proxy_ ? "proxy_protocol_timeout" : "timeout", 408);
}

Inspection::Outcome Inspection::ClientClosed() const {
  Outcome o = Reject("client_closed", 0);
  o.status = 0;  // nobody to answer
  return o;
}

std::string Inspection::Forward(std::string_view data) const {
  const std::string_view client = data.substr(offset_);
  if (!listener_.x_forwarded_for || listener_.protocol != config::ListenerProtocol::kHttp) return std::string(client);
  const HttpHead& head = http_.head();
  std::string out(client.substr(0, head.blank_line));
  absl::StrAppend(&out, "X-Forwarded-For: ", ForwardedFor(client_), "\r\n");
  out.append(client.substr(head.blank_line));
  return out;
}

std::string ForwardedFor(const SocketAddress& address) {
  char text[INET6_ADDRSTRLEN] = "unknown";
  if (address.family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(address.storage).sin_addr, text, sizeof(text));
  } else if (address.family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(address.storage).sin6_addr, text, sizeof(text));
  }
  return text;
}

}  // namespace skproxy
