#include "proxy/inspect/proxy_protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace skproxy {
namespace {

constexpr char kV1Prefix[] = "PROXY ";
constexpr size_t kV1Max = 107;  // proxy-protocol.txt 2.1: the longest line, CRLF included
constexpr char kV2Signature[] = "\r\n\r\n\0\r\nQUIT\n";
constexpr size_t kV2SignatureLength = 12;
constexpr size_t kV2Header = 16;
constexpr uint8_t kV2Version = 0x20;
constexpr uint8_t kV2Local = 0x0, kV2Proxy = 0x1;
constexpr uint8_t kV2Tcp4 = 0x11, kV2Tcp6 = 0x21;

bool ParseIp(std::string_view text, int family, uint16_t port, SocketAddress* out) {
  const std::string ip(text);
  *out = SocketAddress{};
  if (family == AF_INET) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    if (inet_pton(AF_INET, ip.c_str(), &sin.sin_addr) != 1) return false;
    *out = SocketAddressFrom(reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
  } else {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    if (inet_pton(AF_INET6, ip.c_str(), &sin6.sin6_addr) != 1) return false;
    *out = SocketAddressFrom(reinterpret_cast<sockaddr*>(&sin6), sizeof(sin6));
  }
  return true;
}

// A port as v1 writes it: decimal, no sign, no leading zero.
bool ParsePort(std::string_view text, uint16_t* port) {
  uint32_t n = 0;
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  if (n > 65535) return false;
  *port = static_cast<uint16_t>(n);
  return true;
}

std::string IpText(const SocketAddress& a) {
  char text[INET6_ADDRSTRLEN] = {};
  if (a.family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a.storage).sin_addr, text, sizeof(text));
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a.storage).sin6_addr, text, sizeof(text));
  }
  return text;
}

void AppendPort(std::string* out, uint16_t port) {
  out->push_back(static_cast<char>(port >> 8));
  out->push_back(static_cast<char>(port & 0xff));
}

}  // namespace

ProxyProtocolReader::Result ProxyProtocolReader::Feed(std::string_view data) {
  return version_ == config::ProxyProtocolVersion::kV1 ? FeedV1(data) : FeedV2(data);
}

ProxyProtocolReader::Result ProxyProtocolReader::FeedV1(std::string_view data) {
  const size_t prefix = std::min(data.size(), sizeof(kV1Prefix) - 1);
  if (data.substr(0, prefix) != std::string_view(kV1Prefix, prefix)) return Result::kMissing;
  const size_t end = data.substr(0, kV1Max).find("\r\n");
  if (end == std::string_view::npos) return data.size() >= kV1Max ? Result::kMalformed : Result::kNeedMore;
  std::vector<std::string_view> f;
  for (std::string_view rest = data.substr(0, end);;) {
    const size_t space = rest.find(' ');
    f.push_back(rest.substr(0, space));
    if (space == std::string_view::npos) break;
    rest.remove_prefix(space + 1);
  }
  header_ = ProxyHeader{};
  header_.length = end + 2;
  if (f.size() >= 2 && f[1] == "UNKNOWN") {  // anything may follow UNKNOWN
    header_.local = true;
    return Result::kDone;
  }
  if (f.size() != 6 || (f[1] != "TCP4" && f[1] != "TCP6")) return Result::kMalformed;
  const int family = f[1] == "TCP4" ? AF_INET : AF_INET6;
  uint16_t sport, dport;
  if (!ParsePort(f[4], &sport) || !ParsePort(f[5], &dport) || !ParseIp(f[2], family, sport, &header_.source) ||
      !ParseIp(f[3], family, dport, &header_.destination)) {
    return Result::kMalformed;
  }
  return Result::kDone;
}

ProxyProtocolReader::Result ProxyProtocolReader::FeedV2(std::string_view data) {
  const size_t prefix = std::min(data.size(), kV2SignatureLength);
  if (std::memcmp(data.data(), kV2Signature, prefix) != 0) return Result::kMissing;
  if (data.size() < kV2Header) return Result::kNeedMore;
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(data[i]); };
  const uint8_t version_command = byte(12), family = byte(13);
  const size_t length = (static_cast<size_t>(byte(14)) << 8) | byte(15);
  if ((version_command & 0xf0) != kV2Version) return Result::kMalformed;
  const uint8_t command = version_command & 0x0f;
  if (command != kV2Local && command != kV2Proxy) return Result::kMalformed;
  if (kV2Header + length > kMaxHeader) return Result::kMalformed;
  if (data.size() < kV2Header + length) return Result::kNeedMore;
  header_ = ProxyHeader{};
  header_.length = kV2Header + length;
  const std::string_view body = data.substr(kV2Header, length);
  if (command == kV2Local) {  // health checks of the load balancer itself: its own addresses count
    header_.local = true;
    return Result::kDone;
  }
  if (family == kV2Tcp4 && body.size() >= 12) {
    sockaddr_in src{}, dst{};
    src.sin_family = dst.sin_family = AF_INET;
    std::memcpy(&src.sin_addr, body.data(), 4);
    std::memcpy(&dst.sin_addr, body.data() + 4, 4);
    std::memcpy(&src.sin_port, body.data() + 8, 2);
    std::memcpy(&dst.sin_port, body.data() + 10, 2);
    header_.source = SocketAddressFrom(reinterpret_cast<sockaddr*>(&src), sizeof(src));
    header_.destination = SocketAddressFrom(reinterpret_cast<sockaddr*>(&dst), sizeof(dst));
    return Result::kDone;
  }
  if (family == kV2Tcp6 && body.size() >= 36) {
    sockaddr_in6 src{}, dst{};
    src.sin6_family = dst.sin6_family = AF_INET6;
    std::memcpy(&src.sin6_addr, body.data(), 16);
    std::memcpy(&dst.sin6_addr, body.data() + 16, 16);
    std::memcpy(&src.sin6_port, body.data() + 32, 2);
    std::memcpy(&dst.sin6_port, body.data() + 34, 2);
    header_.source = SocketAddressFrom(reinterpret_cast<sockaddr*>(&src), sizeof(src));
    header_.destination = SocketAddressFrom(reinterpret_cast<sockaddr*>(&dst), sizeof(dst));
    return Result::kDone;
  }
  if (family == 0x00) {  // AF_UNSPEC: the sender does not know; proxy-protocol.txt says accept it
    header_.local = true;
    return Result::kDone;
  }
  return Result::kMalformed;
}

std::string BuildProxyHeader(config::ProxyProtocolVersion version, const SocketAddress& source,
                             const SocketAddress& destination) {
  const bool known = source.family() == destination.family() &&
                     (source.family() == AF_INET || source.family() == AF_INET6);
  if (version == config::ProxyProtocolVersion::kV1) {
    if (!known) return "PROXY UNKNOWN\r\n";
    return absl::StrCat("PROXY ", source.family() == AF_INET ? "TCP4 " : "TCP6 ", IpText(source), " ",
                        IpText(destination), " ", source.port(), " ", destination.port(), "\r\n");
  }
  std::string out(kV2Signature, kV2SignatureLength);
  if (!known) {
    out.push_back(static_cast<char>(kV2Version | kV2Local));
    out.push_back(0);
    AppendPort(&out, 0);
    return out;
  }
  const bool v4 = source.family() == AF_INET;
  out.push_back(static_cast<char>(kV2Version | kV2Proxy));
  out.push_back(static_cast<char>(v4 ? kV2Tcp4 : kV2Tcp6));
  AppendPort(&out, v4 ? 12 : 36);
  if (v4) {
    const auto& s = reinterpret_cast<const sockaddr_in&>(source.storage);
    const auto& d = reinterpret_cast<const sockaddr_in&>(destination.storage);
    out.append(reinterpret_cast<const char*>(&s.sin_addr), 4);
    out.append(reinterpret_cast<const char*>(&d.sin_addr), 4);
  } else {
    const auto& s = reinterpret_cast<const sockaddr_in6&>(source.storage);
    const auto& d = reinterpret_cast<const sockaddr_in6&>(destination.storage);
    out.append(reinterpret_cast<const char*>(&s.sin6_addr), 16);
    out.append(reinterpret_cast<const char*>(&d.sin6_addr), 16);
  }
  AppendPort(&out, source.port());
  AppendPort(&out, destination.port());
  return out;
}

}  // namespace skproxy
