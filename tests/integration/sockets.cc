#include "tests/integration/sockets.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace skproxy::itest {

int PollFd(int fd, short events, Deadline deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = poll(&p, 1, PollTimeoutMs(deadline));
    if (r > 0) return p.revents;
    if (r < 0 && errno != EINTR) return POLLERR;
    if (r == 0 && Clock::now() >= deadline) return 0;
  }
}

uint16_t LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  return SocketAddressFrom(reinterpret_cast<const sockaddr*>(&ss), len).port();
}

uint16_t PickFreePort(int family) {
  UniqueFd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return 0;
  SocketAddress any_port = LoopbackAddress(family, 0);
  if (bind(fd.get(), any_port.sockaddr_ptr(), any_port.length) != 0) return 0;
  return LocalPort(fd.get());
}

bool PortIsFree(const SocketAddress& address) {
  UniqueFd fd(socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  return bind(fd.get(), address.sockaddr_ptr(), address.length) == 0 && listen(fd.get(), 1) == 0;
}

namespace {
void ApplySocketOptions(int fd, const SocketOptions& opts) {
  if (opts.rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &opts.rcvbuf, sizeof opts.rcvbuf);
  if (opts.sndbuf > 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &opts.sndbuf, sizeof opts.sndbuf);
}
}  // namespace

absl::StatusOr<UniqueFd> Listen(const SocketAddress& address, int backlog, SocketOptions opts) {
  UniqueFd fd(socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket");
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (address.family() == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  ApplySocketOptions(fd.get(), opts);  // before listen(): accepted sockets inherit them
  if (bind(fd.get(), address.sockaddr_ptr(), address.length) != 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("bind ", address.ToString()));
  if (listen(fd.get(), backlog) != 0) return absl::ErrnoToStatus(errno, "listen");
  return fd;
}

absl::StatusOr<UniqueFd> Connect(const SocketAddress& address, Millis timeout, SocketOptions opts) {
  UniqueFd fd(socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket");
  ApplySocketOptions(fd.get(), opts);
  if (connect(fd.get(), address.sockaddr_ptr(), address.length) != 0) {
    if (errno != EINPROGRESS) return absl::ErrnoToStatus(errno, absl::StrCat("connect ", address.ToString()));
    if (PollFd(fd.get(), POLLOUT, DeadlineIn(timeout)) == 0)
      return absl::DeadlineExceededError(absl::StrCat("connect ", address.ToString(), " timed out"));
    int err = 0;
    socklen_t elen = sizeof err;
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) return absl::ErrnoToStatus(err, absl::StrCat("connect ", address.ToString()));
  }
  int flags = fcntl(fd.get(), F_GETFL);
  fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);  // callers use MSG_DONTWAIT and poll
  int one = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void CloseWithReset(UniqueFd& fd) {
  linger l{1, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  fd.Reset();
}

}  // namespace skproxy::itest
