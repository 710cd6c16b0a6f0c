// The options a listening socket hands down to the sockets it accepts: what BindListener sets once so
// that no connection pays a syscall for it.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "config/address.h"
#include "config/config.h"
#include "gtest/gtest.h"
#include "proxy/unique_fd.h"
#include "proxy/worker.h"

namespace skproxy {
namespace {

// Binds a listener as the proxy does, connects to it and returns the accepted socket.
UniqueFd AcceptOne(const char* address_text, UniqueFd* client) {
  config::Listener listener;
  listener.name = "test";
  absl::StatusOr<SocketAddress> address = ParseSocketAddress(address_text, /*allow_port_zero=*/true);
  EXPECT_TRUE(address.ok()) << address.status();
  if (!address.ok()) return UniqueFd();
  listener.address = *address;
  absl::StatusOr<UniqueFd> listening = BindListener(listener, nullptr);
  EXPECT_TRUE(listening.ok()) << listening.status();
  if (!listening.ok()) return UniqueFd();
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  EXPECT_EQ(getsockname(listening->get(), reinterpret_cast<sockaddr*>(&bound), &length), 0);
  *client = UniqueFd(socket(bound.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(connect(client->get(), reinterpret_cast<sockaddr*>(&bound), length), 0) << strerror(errno);
  // The listener is non-blocking: wait until the handshake has put the connection in its queue.
  pollfd ready{listening->get(), POLLIN, 0};
  EXPECT_EQ(poll(&ready, 1, 5000), 1);
  return UniqueFd(accept4(listening->get(), nullptr, nullptr, SOCK_CLOEXEC));
}

int NoDelay(int fd) {
  int value = -1;
  socklen_t length = sizeof(value);
  EXPECT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, &length), 0);
  return value;
}

TEST(BindListenerTest, AcceptedSocketsInheritNoDelayIpv4) {
  UniqueFd client;
  UniqueFd accepted = AcceptOne("127.0.0.1:0", &client);
  ASSERT_TRUE(accepted.valid()) << strerror(errno);
  EXPECT_EQ(NoDelay(accepted.get()), 1) << "the proxy no longer sets TCP_NODELAY per accepted connection";
}

TEST(BindListenerTest, AcceptedSocketsInheritNoDelayIpv6) {
  UniqueFd client;
  UniqueFd accepted = AcceptOne("[::1]:0", &client);
  ASSERT_TRUE(accepted.valid()) << strerror(errno);
  EXPECT_EQ(NoDelay(accepted.get()), 1);
}

}  // namespace
}  // namespace skproxy
