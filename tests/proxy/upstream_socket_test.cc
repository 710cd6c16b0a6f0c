// Upstream socket options (proxy/upstream_socket.h) on real sockets and the real io_uring: set through the
// ring or with system calls, they are in place before the SYN of the connect linked after them.
#include "proxy/upstream_socket.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <memory>
#include <string>

#include "config/address.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"
#include "proxy/kernel_version.h"
#include "proxy/unique_fd.h"
#include "tests/proxy/counting_handler.h"

namespace skproxy {
namespace {

constexpr int kReceiveBuffer = 512 << 10;

int IntOption(int fd, int level, int name) {
  int value = -1;
  socklen_t length = sizeof(value);
  EXPECT_EQ(getsockopt(fd, level, name, &value, &length), 0) << name;
  return value;
}

// The window scale this end offered in its SYN.
int WindowScale(int fd) {
  tcp_info info{};
  socklen_t length = sizeof(info);
  EXPECT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length), 0);
  return info.tcpi_rcv_wscale;
}

bool CanForceReceiveBuffer() {
  const UniqueFd fd(socket(AF_INET, SOCK_STREAM, 0));
  return fd.valid() && setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &kReceiveBuffer, sizeof(kReceiveBuffer)) == 0;
}

// A ring, a loopback listener, and a socket to connect to it with the options under test linked ahead.
class UpstreamSocketTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    auto created = Ring::Create(16, 4, 4096);
    ASSERT_TRUE(created.ok()) << created.status();
    ring_ = *std::move(created);
    if (by_ring() && !ring_->socket_commands())
      GTEST_SKIP() << "kernel " << RunningKernelRelease() << " sets no socket option from io_uring (Linux 6.7+)";
    if (!CanForceReceiveBuffer()) GTEST_SKIP() << "SO_RCVBUFFORCE needs CAP_NET_ADMIN";
    listener_.Reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const SocketAddress any_port = LoopbackAddress(AF_INET, 0);
    ASSERT_EQ(bind(listener_.get(), any_port.sockaddr_ptr(), any_port.length), 0);
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    ASSERT_EQ(getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&bound), &length), 0);
    address_ = SocketAddressFrom(reinterpret_cast<sockaddr*>(&bound), length);
    ASSERT_EQ(listen(listener_.get(), 8), 0);
    upstream_.Reset(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(upstream_.valid());
  }

  bool by_ring() const { return GetParam(); }

  // Prepares the connect (the SQE the options link to), submits, and waits for its completion.
  void Connect() {
    io_uring_prep_connect(ring_->Prepare(&handler_, 0), upstream_.get(), address_.sockaddr_ptr(), address_.length);
    for (int round = 0; round < 100 && handler_.completions == 0; ++round) ASSERT_TRUE(ring_->SubmitAndDispatch().ok());
    ASSERT_EQ(handler_.completions, 1) << "only the connect completes";
    ASSERT_EQ(handler_.last, 0) << strerror(-handler_.last);
  }

  // A socket connected to the same listener with no option set, for comparison.
  UniqueFd Unconfigured() {
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(connect(fd.get(), address_.sockaddr_ptr(), address_.length), 0);
    return fd;
  }

  std::unique_ptr<Ring> ring_;
  UniqueFd listener_;
  UniqueFd upstream_;
  SocketAddress address_;  // the listener's
  CountingHandler handler_;
};

// The receive buffer was set before the SYN: the window scale the SYN offered follows it (far below the
// one an unconfigured socket offers, sized for net.ipv4.tcp_rmem's maximum). Set after the handshake, the
// scale would be the unconfigured one, and the window could outgrow what the verdict's trim is sized for.
TEST_P(UpstreamSocketTest, AKernelPathLegConnectsWithNoDelayAndItsReceiveBufferFromTheSyn) {
  const UpstreamOptions options{by_ring(), kReceiveBuffer};
  SetUpstreamOptions(*ring_, options, upstream_.get(), /*kernel_path=*/true);
  Connect();
  EXPECT_EQ(IntOption(upstream_.get(), IPPROTO_TCP, TCP_NODELAY), 1);
  EXPECT_EQ(IntOption(upstream_.get(), SOL_SOCKET, SO_RCVBUF), 2 * kReceiveBuffer);
  EXPECT_LT(WindowScale(upstream_.get()), WindowScale(Unconfigured().get()));
  EXPECT_EQ(ring_->socket_option_failures(), 0u);
}

// A leg that never enters the sockhash (a pooled one) keeps the kernel's autotuned buffer.
TEST_P(UpstreamSocketTest, AnotherLegGetsNoDelayOnly) {
  const UpstreamOptions options{by_ring(), kReceiveBuffer};
  SetUpstreamOptions(*ring_, options, upstream_.get(), /*kernel_path=*/false);
  Connect();
  EXPECT_EQ(IntOption(upstream_.get(), IPPROTO_TCP, TCP_NODELAY), 1);
  EXPECT_NE(IntOption(upstream_.get(), SOL_SOCKET, SO_RCVBUF), 2 * kReceiveBuffer);
  EXPECT_EQ(WindowScale(upstream_.get()), WindowScale(Unconfigured().get()));
}

INSTANTIATE_TEST_SUITE_P(Both, UpstreamSocketTest, ::testing::Values(false, true),
                         [](const auto& info) { return std::string(info.param ? "ThroughTheRing" : "BySyscall"); });

// An option the kernel refuses is counted, posts no completion to anyone, and the connect linked after it
// still runs (a hard link).
TEST(RingSocketOptionTest, AFailureIsCountedAndTheLinkedSqeStillRuns) {
  auto created = Ring::Create(16, 4, 4096);
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<Ring> ring = *std::move(created);
  if (!ring->socket_commands())
    GTEST_SKIP() << "kernel " << RunningKernelRelease() << " sets no socket option from io_uring (Linux 6.7+)";
  const UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(fd.valid());
  prometheus::Registry registry;
  prometheus::Counter& metric =
      prometheus::BuildCounter().Name("skproxy_socket_option_failures_total").Register(registry).Add({});
  ring->CountSocketOptionFailuresIn(&metric);
  static const int kOne = 1;
  ring->SetSocketOption(fd.get(), IPPROTO_TCP, /*no such option*/ 12345, &kOne);
  CountingHandler handler;
  io_uring_prep_nop(ring->Prepare(&handler, 0));
  for (int round = 0; round < 100 && handler.completions == 0; ++round) ASSERT_TRUE(ring->SubmitAndDispatch().ok());
  EXPECT_EQ(handler.completions, 1);
  EXPECT_EQ(handler.last, 0) << "the NOP was cancelled: the link is not a hard link";
  EXPECT_EQ(ring->socket_option_failures(), 1u);
  EXPECT_EQ(metric.Value(), 1);
}

// Socket commands came with Linux 6.7: the probe must find them there, and not before.
TEST(RingSocketOptionTest, ProbesSocketCommands) {
  auto version = ParseKernelRelease(RunningKernelRelease());
  ASSERT_TRUE(version.ok()) << version.status();
  auto ring = Ring::Create(8, 4, 4096);
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ((*ring)->socket_commands(), !(*version < KernelVersion{6, 7, 0})) << RunningKernelRelease();
}

// The worker uses the ring when the kernel can and SO_RCVBUFFORCE is allowed.
TEST(RingSocketOptionTest, DecidesForTheRingWhereItCan) {
  auto ring = Ring::Create(8, 4, 4096);
  ASSERT_TRUE(ring.ok()) << ring.status();
  const UpstreamOptions without = DecideUpstreamOptions(**ring, 0);
  EXPECT_EQ(without.by_ring, (*ring)->socket_commands());
  EXPECT_EQ(without.receive_buffer, 0);
  const UpstreamOptions with = DecideUpstreamOptions(**ring, kReceiveBuffer);
  EXPECT_EQ(with.by_ring, (*ring)->socket_commands() && CanForceReceiveBuffer());
  EXPECT_EQ(with.receive_buffer, kReceiveBuffer);
}

}  // namespace
}  // namespace skproxy
