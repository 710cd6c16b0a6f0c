#include "bpf/socket_key.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace skproxy::bpf {
namespace {

// Fills ip[4] and port from one end of the socket. Same layout as the skb fields: addresses in network
// order, IPv4 in ip[0].
absl::Status FillEnd(const sockaddr_storage& ss, __u32 ip[4], __u32* port) {
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    ip[0] = sin.sin_addr.s_addr;
    *port = ntohs(sin.sin_port);
    return absl::OkStatus();
  }
  if (ss.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    std::memcpy(ip, &sin6.sin6_addr, 16);
    *port = ntohs(sin6.sin6_port);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("socket family ", ss.ss_family, " is not TCP/IP"));
}

}  // namespace

absl::StatusOr<skp_key> SocketKey(int fd) {
  sockaddr_storage local{}, remote{};
  socklen_t local_len = sizeof(local), remote_len = sizeof(remote);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0)
    return absl::ErrnoToStatus(errno, "getsockname");
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &remote_len) != 0)
    return absl::ErrnoToStatus(errno, "getpeername");
  skp_key key;
  std::memset(&key, 0, sizeof(key));
  key.family = local.ss_family;
  if (absl::Status s = FillEnd(local, key.local_ip, &key.local_port); !s.ok()) return s;
  if (absl::Status s = FillEnd(remote, key.remote_ip, &key.remote_port); !s.ok()) return s;
  return key;
}

bool operator==(const skp_key& a, const skp_key& b) { return std::memcmp(&a, &b, sizeof(a)) == 0; }

}  // namespace skproxy::bpf
