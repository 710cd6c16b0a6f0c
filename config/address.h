// A listen or endpoint address as written in the config: "1.2.3.4:80", "[::1]:80"; "localhost:80" is not
// an address (a cluster endpoint may be a host name: config.h Endpoint, resolved by the cluster thread).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace skproxy {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  uint16_t port() const;
  // Changes the port of an IPv4 or IPv6 address (no-op for other families), e.g. to fill in the port the
  // kernel picked for a listener bound to port 0.
  void set_port(uint16_t port);
  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage); }
  // "127.0.0.1:8080" or "[::1]:8080": the inverse of ParseSocketAddress.
  std::string ToString() const;

  friend bool operator==(const SocketAddress& a, const SocketAddress& b);
};

// Parses "IPv4:port" or "[IPv6]:port" with a port in 1..65535 (port 0 is allowed only when allow_port_zero,
// which tests use to let the kernel pick a free port).
absl::StatusOr<SocketAddress> ParseSocketAddress(std::string_view text, bool allow_port_zero = false);

// 127.0.0.1:port for AF_INET, [::1]:port for AF_INET6 (any other family is treated as AF_INET).
SocketAddress LoopbackAddress(int family, uint16_t port);

// Builds a SocketAddress from what getsockname/getpeername/accept returned.
SocketAddress SocketAddressFrom(const sockaddr* sa, socklen_t len);

}  // namespace skproxy
