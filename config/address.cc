#include "config/address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace skproxy {
namespace {

const sockaddr_in& AsV4(const SocketAddress& a) { return reinterpret_cast<const sockaddr_in&>(a.storage); }
const sockaddr_in6& AsV6(const SocketAddress& a) { return reinterpret_cast<const sockaddr_in6&>(a.storage); }

absl::Status Invalid(const absl::FormatSpec<absl::string_view>& format, absl::string_view arg) {
  return absl::InvalidArgumentError(absl::StrFormat(format, arg));
}

absl::StatusOr<uint16_t> ParsePort(absl::string_view text, absl::string_view address, bool allow_zero) {
  if (text.empty()) return Invalid("missing port in '%s'", address);
  if (!std::all_of(text.begin(), text.end(), absl::ascii_isdigit)) return Invalid("invalid port '%s'", text);
  uint32_t port = 0;
  // SimpleAtoi fails on overflow, which is out of range too.
  if (!absl::SimpleAtoi(text, &port) || port > 65535) return Invalid("port %s out of range", text);
  if (port == 0 && !allow_zero) return absl::InvalidArgumentError("port 0 is not allowed");
  return static_cast<uint16_t>(port);
}

}  // namespace

uint16_t SocketAddress::port() const {
  switch (family()) {
    case AF_INET:
      return ntohs(AsV4(*this).sin_port);
    case AF_INET6:
      return ntohs(AsV6(*this).sin6_port);
    default:
      return 0;
  }
}

void SocketAddress::set_port(uint16_t port) {
  switch (family()) {
    case AF_INET:
      reinterpret_cast<sockaddr_in&>(storage).sin_port = htons(port);
      break;
    case AF_INET6:
      reinterpret_cast<sockaddr_in6&>(storage).sin6_port = htons(port);
      break;
    default:
      break;
  }
}

std::string SocketAddress::ToString() const {
  char ip[INET6_ADDRSTRLEN] = {};
  switch (family()) {
    case AF_INET:
      inet_ntop(AF_INET, &AsV4(*this).sin_addr, ip, sizeof(ip));
      return absl::StrFormat("%s:%d", ip, port());
    case AF_INET6:
      inet_ntop(AF_INET6, &AsV6(*this).sin6_addr, ip, sizeof(ip));
      return absl::StrFormat("[%s]:%d", ip, port());
    default:
      return absl::StrFormat("<address family %d>", family());
  }
}

bool operator==(const SocketAddress& a, const SocketAddress& b) {
  if (a.family() != b.family()) return false;
  switch (a.family()) {
    case AF_INET:
      return AsV4(a).sin_port == AsV4(b).sin_port && AsV4(a).sin_addr.s_addr == AsV4(b).sin_addr.s_addr;
    case AF_INET6:
      // Flow info is per-packet metadata, not part of the address; the scope id is.
      return AsV6(a).sin6_port == AsV6(b).sin6_port && AsV6(a).sin6_scope_id == AsV6(b).sin6_scope_id &&
             std::memcmp(&AsV6(a).sin6_addr, &AsV6(b).sin6_addr, sizeof(in6_addr)) == 0;
    default:
      return a.length == b.length && std::memcmp(&a.storage, &b.storage, a.length) == 0;
  }
}

absl::StatusOr<SocketAddress> ParseSocketAddress(std::string_view address, bool allow_port_zero) {
  // Debian's abseil has its own string_view, not std's.
  const absl::string_view text(address.data(), address.size());
  if (text.empty()) return absl::InvalidArgumentError("empty address");
  SocketAddress result;
  absl::string_view host, port;
  if (absl::StartsWith(text, "[")) {
    size_t close = text.find(']');
    if (close == absl::string_view::npos) return Invalid("missing ']' in '%s'", text);
    host = text.substr(1, close - 1);
    port = text.substr(close + 1);
    if (!absl::ConsumePrefix(&port, ":")) return Invalid("missing port in '%s' (expected [IPv6]:PORT)", text);
    auto& v6 = reinterpret_cast<sockaddr_in6&>(result.storage);
    if (inet_pton(AF_INET6, std::string(host).c_str(), &v6.sin6_addr) != 1) {
      return Invalid("'%s' is not an IPv6 address", host);
    }
    v6.sin6_family = AF_INET6;
    result.length = sizeof(sockaddr_in6);
  } else {
    size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) return Invalid("missing port in '%s' (expected IP:PORT)", text);
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.empty()) return Invalid("missing IP address in '%s'", text);
    if (host.find(':') != absl::string_view::npos) {
      return Invalid("IPv6 address in '%s' needs brackets, as in [::1]:80", text);
    }
    auto& v4 = reinterpret_cast<sockaddr_in&>(result.storage);
    if (inet_pton(AF_INET, std::string(host).c_str(), &v4.sin_addr) != 1) {
      return Invalid("'%s' is not an IP address (hostnames are not resolved)", host);
    }
    v4.sin_family = AF_INET;
    result.length = sizeof(sockaddr_in);
  }
  absl::StatusOr<uint16_t> port_number = ParsePort(port, text, allow_port_zero);
  if (!port_number.ok()) return port_number.status();
  result.set_port(*port_number);
  return result;
}

SocketAddress LoopbackAddress(int family, uint16_t port) {
  SocketAddress result;
  if (family == AF_INET6) {
    auto& v6 = reinterpret_cast<sockaddr_in6&>(result.storage);
    v6.sin6_family = AF_INET6;
    v6.sin6_addr = in6addr_loopback;
    result.length = sizeof(sockaddr_in6);
  } else {
    auto& v4 = reinterpret_cast<sockaddr_in&>(result.storage);
    v4.sin_family = AF_INET;
    v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    result.length = sizeof(sockaddr_in);
  }
  result.set_port(port);
  return result;
}

SocketAddress SocketAddressFrom(const sockaddr* sa, socklen_t len) {
  SocketAddress result;
  if (sa == nullptr) return result;
  result.length = std::min<socklen_t>(len, sizeof(result.storage));
  std::memcpy(&result.storage, sa, result.length);
  return result;
}

}  // namespace skproxy
