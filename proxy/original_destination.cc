#include "proxy/original_destination.h"

#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace skproxy {
namespace {

// IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h, whose other declarations clash with glibc's
// netinet headers. Level SOL_IPV6; the kernel answers with a sockaddr_in6.
constexpr int kIp6OriginalDst = 80;

}  // namespace

absl::StatusOr<SocketAddress> OriginalDestination(int fd) {
  sockaddr_storage local{};
  socklen_t local_length = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) != 0)
    return absl::ErrnoToStatus(errno, "getsockname");
  const bool v6 = local.ss_family == AF_INET6;
  sockaddr_storage original{};
  socklen_t length = v6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (getsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? kIp6OriginalDst : SO_ORIGINAL_DST, &original, &length) != 0) {
    const int error = errno;
    // ENOENT: conntrack has no entry for this connection (it reached the listener directly, or the
    // conntrack modules are not loaded because no NAT rule exists).
    if (error == ENOENT) return absl::NotFoundError("no conntrack entry: the connection was not redirected");
    return absl::ErrnoToStatus(error, v6 ? "getsockopt IP6T_SO_ORIGINAL_DST" : "getsockopt SO_ORIGINAL_DST");
  }
  SocketAddress destination = SocketAddressFrom(reinterpret_cast<const sockaddr*>(&original), length);
  if (destination == SocketAddressFrom(reinterpret_cast<const sockaddr*>(&local), local_length)) {
    return absl::NotFoundError(
        absl::StrCat("original destination ", destination.ToString(), " is the listener itself: not redirected"));
  }
  return destination;
}

}  // namespace skproxy
