// Loopback sockets for the tests: listeners, connects with a deadline, free ports, and RST on close. The
// address type is the product's (config/address.h), the descriptor owner too (proxy/unique_fd.h).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "config/address.h"
#include "proxy/unique_fd.h"
#include "tests/integration/deadline.h"

namespace skproxy::itest {

inline SocketAddress Loopback4(uint16_t port) { return LoopbackAddress(AF_INET, port); }
inline SocketAddress Loopback6(uint16_t port) { return LoopbackAddress(AF_INET6, port); }

// Binds port 0 on the family's loopback address and returns the port the kernel chose (0 on failure).
// The port is released again, so another process may take it; good enough on a test machine.
uint16_t PickFreePort(int family = AF_INET);
// True if a listener could bind the address right now.
bool PortIsFree(const SocketAddress& address);
// A loopback address with no listener: connecting to it is refused.
inline SocketAddress RefusedEndpoint(int family = AF_INET) { return LoopbackAddress(family, PickFreePort(family)); }

struct SocketOptions {
  int rcvbuf = 0;  // SO_RCVBUF if > 0 (disables receive autotuning)
  int sndbuf = 0;  // SO_SNDBUF if > 0
};
absl::StatusOr<UniqueFd> Listen(const SocketAddress& address, int backlog, SocketOptions opts = {});
// The returned socket is blocking with TCP_NODELAY; the stream I/O calls use MSG_DONTWAIT and poll.
absl::StatusOr<UniqueFd> Connect(const SocketAddress& address, Millis timeout, SocketOptions opts = {});
uint16_t LocalPort(int fd);
// Sets SO_LINGER {1, 0} and closes: the peer gets a RST.
void CloseWithReset(UniqueFd& fd);

// Waits for `events` on fd until the deadline; returns revents, 0 if the deadline passed first.
int PollFd(int fd, short events, Deadline deadline);

}  // namespace skproxy::itest
