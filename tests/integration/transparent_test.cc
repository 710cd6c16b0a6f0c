// Transparent (sidecar) mode, for real: a client namespace and a server namespace joined by a veth pair,
// the shipped redirect rules (deploy/sidecar/skproxy-redirect.sh) installed in the client's namespace,
// skproxy there with transparent listeners, and an unmodified client that connects to the server's own
// address. Every byte is checked end to end; the metrics show that skproxy carried the connections, that
// bulk moved into the kernel path, and that skproxy's own (marked) upstream connections were not redirected
// back into it.
#include <sys/socket.h>

#include <future>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/netns.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"
#include "tests/integration/veth_pair.h"
#include "tests/kernel_support.h"

namespace skproxy::itest {
namespace {

constexpr uint16_t kOutboundPort = 15001;
constexpr char kMark[] = "0x534b";

std::string RedirectScript() { return std::string(SKPROXY_SOURCE_DIR) + "/deploy/sidecar/skproxy-redirect.sh"; }

class TransparentTest : public ::testing::TestWithParam<int> {
 protected:
  int family() const { return GetParam(); }

  // The namespaces, an echo server at the server's address, skproxy with transparent listeners for both
  // families, and the shipped outbound rules in the client's namespace. Skips where any of it is missing.
  void SetUp() override {
    SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
    if (!RequireSockmap()) GTEST_SKIP() << "not root: namespaces and the kernel path need root";
    if (FindExecutable("nft").empty()) GTEST_SKIP() << "nft (package nftables) is not installed";
    absl::StatusOr<std::unique_ptr<VethPair>> pair = VethPair::Create();
    if (!pair.ok()) GTEST_SKIP() << "cannot build the namespaces: " << pair.status();
    pair_ = *std::move(pair);

    ASSERT_TRUE(pair_->InServer([&] {
                  TcpServer::Options options;
                  options.family = family();
                  options.address = VethPair::ServerIp(family());
                  absl::StatusOr<std::unique_ptr<TcpServer>> echo = TcpServer::Start(options, EchoHandler());
                  if (echo.ok()) echo_ = *std::move(echo);
                }).ok());
    ASSERT_TRUE(echo_) << "echo server in the server namespace";
    // The port right after the echo's is closed: a destination that refuses.
    refused_ = echo_->endpoint();
    refused_.set_port(echo_->endpoint().port() == 65535 ? 1 : echo_->endpoint().port() + 1);

    ProxyConfig config;
    config.datapath = "auto";
    config.upstream_mark = kMark;
    config.listeners = {{"outbound", *ParseSocketAddress(absl::StrCat("0.0.0.0:", kOutboundPort)), "", true},
                        {"outbound-v6", *ParseSocketAddress(absl::StrCat("[::]:", kOutboundPort)), "", true}};
    absl::StatusOr<std::unique_ptr<ProxyProcess>> proxy = ProxyProcess::Start(config);
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = *std::move(proxy);
    auto fds = proxy_->FdCount();
    ASSERT_TRUE(fds.ok()) << fds.status();
    baseline_fds_ = *fds;

    CommandResult installed = RunCommand(
        {"/usr/bin/env", absl::StrCat("SKPROXY_MARK=", kMark), absl::StrCat("SKPROXY_OUTBOUND_PORT=", kOutboundPort),
         absl::StrCat("SKPROXY_ADMIN_PORT=", proxy_->admin().port()), "SKPROXY_INTERCEPT=outbound",
         RedirectScript(), "install"},
        30s);
    ASSERT_EQ(installed.exit_code, 0) << installed.Describe();
  }

  void TearDown() override {
    // In this order: the proxy and the server hold sockets of the namespaces; the pair goes last and
    // takes the namespaces, the veth pair and the rules with it.
    proxy_.reset();
    echo_.reset();
    pair_.reset();
  }

  std::string Listener() const { return family() == AF_INET ? "outbound" : "outbound-v6"; }

  std::unique_ptr<VethPair> pair_;
  std::unique_ptr<TcpServer> echo_;
  SocketAddress refused_;
  std::unique_ptr<ProxyProcess> proxy_;
  int baseline_fds_ = 0;
};

TEST_P(TransparentTest, UnmodifiedClientReachesItsDestinationAndBulkTakesTheKernelPath) {
  constexpr int kBulk = 2, kShort = 4;
  constexpr uint64_t kBulkBytes = 64 * MiB;
  const SocketAddress destination = echo_->endpoint();  // what the client asks for: the server's own address
  // Short connections stay on the user-space path (less than promote_after), and still arrive exact.
  for (int i = 0; i < kShort; ++i) EXPECT_EQ(ShortEcho(destination, 4096), "");
  std::vector<std::future<EchoResult>> bulk;
  for (int i = 0; i < kBulk; ++i) {
    bulk.push_back(std::async(std::launch::async, [&] {
      auto fd = Connect(destination, 5s);
      if (!fd.ok()) return EchoResult{};
      return EchoExchange(fd->get(), NextStreamId(), kBulkBytes, DeadlineIn(120s), /*compute_sha=*/true);
    }));
  }
  for (auto& f : bulk) {
    EchoResult r = f.get();
    EXPECT_EQ(r.send.bytes, kBulkBytes) << r.Describe();
    EXPECT_EQ(r.recv.bytes, kBulkBytes) << r.Describe();
    EXPECT_TRUE(r.recv.eof) << r.Describe();
    EXPECT_EQ(r.first_bad, -1) << r.Describe();
    EXPECT_EQ(r.sha_received, r.sha_sent);
  }
  EXPECT_PROXY_IDLE(proxy_, baseline_fds_);

  auto m = proxy_->Metrics();
  ASSERT_TRUE(m.ok()) << m.status();
  // Every connection went through skproxy's transparent listener, once: had the upstream connections not
  // carried the mark, the rules would have sent them back into skproxy, and each would count again.
  EXPECT_EQ(SumMetric(*m, "skproxy_connections_total", {{"listener", Listener()}}), kBulk + kShort);
  EXPECT_EQ(SumMetric(*m, "skproxy_connections_total"), kBulk + kShort);
  EXPECT_EQ(echo_->accepted(), static_cast<size_t>(kBulk + kShort));
  // Bulk moved into the sockhash, and the kernel carried bytes in both directions.
  EXPECT_EQ(SumMetric(*m, "skproxy_datapath_switches_total", {{"to", "kernel"}}), kBulk);
  ByteCounters c = ReadByteCounters(*m);
  EXPECT_GT(c.kernel_d2u, 0) << c.Describe();
  EXPECT_GT(c.kernel_u2d, 0) << c.Describe();
  EXPECT_EQ(c.d2u(), kBulk * kBulkBytes + kShort * 4096) << c.Describe();
  EXPECT_EQ(c.u2d(), kBulk * kBulkBytes + kShort * 4096) << c.Describe();
  EXPECT_EQ(SumMetric(*m, "skproxy_pipe_errors_total"), 0);
  EXPECT_EQ(SumMetric(*m, "skproxy_upstream_connect_failures_total"), 0);
  printf("[transparent %s] %s\n", family() == AF_INET ? "IPv4" : "IPv6", c.Describe().c_str());
}

TEST_P(TransparentTest, RefusedDestinationClosesTheClientAndCounts) {
  auto fd = Connect(refused_, 5s);
  // The client's connect succeeds: it reached skproxy. skproxy's connect is refused; the client is closed.
  ASSERT_TRUE(fd.ok()) << fd.status();
  CloseResult closed = WaitForPeerClose(fd->get(), DeadlineIn(10s));
  EXPECT_TRUE(closed.closed);
  EXPECT_TRUE(WaitFor(
      [&] {
        return proxy_->Metric("skproxy_upstream_connect_failures_total", {{"cluster", "original_destination"}}) == 1;
      },
      5s));
  EXPECT_PROXY_IDLE(proxy_, baseline_fds_);
}

TEST_P(TransparentTest, ConnectionThatWasNotRedirectedIsClosedNotLooped) {
  // Straight to the listener over loopback, which the rules leave alone: its original destination is the
  // listener itself, and connecting there would loop back into skproxy.
  auto fd = Connect(LoopbackAddress(family(), kOutboundPort), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  CloseResult closed = WaitForPeerClose(fd->get(), DeadlineIn(10s));
  EXPECT_TRUE(closed.closed);
  EXPECT_TRUE(WaitFor(
      [&] { return proxy_->Metric("skproxy_pipe_errors_total", {{"op", "original_destination"}}) == 1; }, 5s));
  EXPECT_EQ(proxy_->Metric("skproxy_connections_total"), 0);
  EXPECT_EQ(echo_->accepted(), 0u);
  EXPECT_PROXY_IDLE(proxy_, baseline_fds_);
}

// Both sides intercepted, as two pods with the sidecar: the client's namespace sends its connections
// out through its skproxy (outbound), the server's namespace takes them in through a second skproxy
// (the shipped inbound rules), which connects on to the server's port.
TEST_P(TransparentTest, InboundRulesOnTheServerSideToo) {
  constexpr uint16_t kInboundPort = 15006;
  std::unique_ptr<ProxyProcess> inbound;
  absl::Status started;
  CommandResult installed;
  ASSERT_TRUE(pair_->InServer([&] {
                ProxyConfig config;
                config.datapath = "auto";
                config.upstream_mark = kMark;
                config.listeners = {
                    {"inbound", *ParseSocketAddress(absl::StrCat("0.0.0.0:", kInboundPort)), "", true},
                    {"inbound-v6", *ParseSocketAddress(absl::StrCat("[::]:", kInboundPort)), "", true}};
                absl::StatusOr<std::unique_ptr<ProxyProcess>> proxy = ProxyProcess::Start(config);
                started = proxy.status();
                if (!proxy.ok()) return;
                inbound = *std::move(proxy);
                installed = RunCommand({"/usr/bin/env", absl::StrCat("SKPROXY_MARK=", kMark),
                                        absl::StrCat("SKPROXY_INBOUND_PORT=", kInboundPort),
                                        absl::StrCat("SKPROXY_ADMIN_PORT=", inbound->admin().port()),
                                        "SKPROXY_INTERCEPT=inbound", RedirectScript(), "install"},
                                       30s);
              }).ok());
  ASSERT_TRUE(started.ok()) << started;
  ASSERT_EQ(installed.exit_code, 0) << installed.Describe();

  constexpr uint64_t kBytes = 32 * MiB;
  auto fd = Connect(echo_->endpoint(), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EchoResult r = EchoExchange(fd->get(), NextStreamId(), kBytes, DeadlineIn(120s), /*compute_sha=*/true);
  EXPECT_EQ(r.recv.bytes, kBytes) << r.Describe();
  EXPECT_TRUE(r.recv.eof) << r.Describe();
  EXPECT_EQ(r.sha_received, r.sha_sent);
  fd->Reset();
  EXPECT_PROXY_IDLE(proxy_, baseline_fds_);

  EXPECT_EQ(proxy_->Metric("skproxy_connections_total", {{"listener", Listener()}}), 1);
  absl::StatusOr<MetricSamples> m;
  ASSERT_TRUE(pair_->InServer([&] { m = inbound->Metrics(); }).ok());
  ASSERT_TRUE(m.ok()) << m.status();
  const std::string listener = family() == AF_INET ? "inbound" : "inbound-v6";
  EXPECT_EQ(SumMetric(*m, "skproxy_connections_total", {{"listener", listener}}), 1);
  EXPECT_EQ(SumMetric(*m, "skproxy_connections_total"), 1);
  EXPECT_EQ(echo_->accepted(), 1u);
  ASSERT_TRUE(pair_->InServer([&] { inbound.reset(); }).ok());
}

INSTANTIATE_TEST_SUITE_P(Families, TransparentTest, ::testing::Values(AF_INET, AF_INET6),
                         [](const auto& info) { return info.param == AF_INET ? "IPv4" : "IPv6"; });

}  // namespace
}  // namespace skproxy::itest
