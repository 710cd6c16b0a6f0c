// Datapath auto, through the built binary: every connection starts on the user-space path; one that
// carries bulk moves into the sockhash mid-stream, one of small messages never does. Every byte is checked
// across the move, in both directions, IPv4 and IPv6.
#include <sys/socket.h>

#include <future>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/integration/connections_page.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"
#include "tests/kernel_support.h"

namespace skproxy::itest {
namespace {

class AdaptiveTest : public ::testing::TestWithParam<int> {
 protected:
  int family() const { return GetParam(); }
};

// `rounds` request/response exchanges of `size` bytes on `fd`; empty string when every echo came back exact.
std::string Exchange(int fd, int rounds, size_t size) {
  std::string request(size, '\0'), reply(size, '\0');
  for (int i = 0; i < rounds; ++i) {
    for (size_t j = 0; j < size; ++j) request[j] = static_cast<char>('a' + (i + j) % 26);
    IoResult sent = SendAll(fd, request.data(), size, DeadlineIn(5s));
    if (sent.bytes != size) return "send: " + sent.Describe();
    IoResult got = RecvExact(fd, reply.data(), size, DeadlineIn(5s));
    if (got.bytes != size) return "recv: " + got.Describe();
    if (reply != request) return "round " + std::to_string(i) + ": the echo differs";
  }
  return "";
}

std::string ChattyExchange(const SocketAddress& listener, int rounds, size_t size) {
  auto fd = Connect(listener, 5s);
  if (!fd.ok()) return std::string(fd.status().message());
  return Exchange(fd->get(), rounds, size);
}

TEST_P(AdaptiveTest, BulkConnectionsMoveToTheKernelPathChattyOnesStay) {
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  if (!RequireSockmap()) GTEST_SKIP() << "not root: the kernel path is not expected to load";
  constexpr int kBulk = 4, kChatty = 8;
  constexpr uint64_t kBulkBytes = 64 * MiB;
  auto echo = StartServer(EchoHandler(), family());
  ASSERT_TRUE(echo);
  ProxyConfig config = SimpleProxyConfig("auto", {echo->endpoint()}, family());
  config.quiet_worker_connections = "0";  // only bulk moves here; the quiet rule has its own test
  SKPROXY_START_OR_SKIP(proxy, config);
  auto baseline = proxy->FdCount();
  ASSERT_TRUE(baseline.ok()) << baseline.status();

  // Chatty connections (32-byte messages, 64 KiB in all each) run while the bulk ones move.
  std::vector<std::future<std::string>> chatty;
  for (int i = 0; i < kChatty; ++i)
    chatty.push_back(std::async(std::launch::async, ChattyExchange, proxy->listener(), 2000, 32));
  std::vector<std::future<EchoResult>> bulk;
  for (int i = 0; i < kBulk; ++i) {
    bulk.push_back(std::async(std::launch::async, [&] {
      auto fd = Connect(proxy->listener(), 5s);
      if (!fd.ok()) return EchoResult{};
      return EchoExchange(fd->get(), NextStreamId(), kBulkBytes, DeadlineIn(120s), /*compute_sha=*/true);
    }));
  }
  for (auto& f : chatty) EXPECT_EQ(f.get(), "");
  for (auto& f : bulk) {
    EchoResult r = f.get();
    EXPECT_EQ(r.send.bytes, kBulkBytes) << r.Describe();
    EXPECT_EQ(r.recv.bytes, kBulkBytes) << r.Describe();
    EXPECT_TRUE(r.recv.eof) << r.Describe();
    EXPECT_EQ(r.first_bad, -1) << r.Describe();
    EXPECT_EQ(r.sha_received, r.sha_sent);
  }
  EXPECT_PROXY_IDLE(proxy, *baseline);
  auto m = proxy->Metrics();
  ASSERT_TRUE(m.ok()) << m.status();
  // Each bulk connection moved exactly once; no chatty one did.
  EXPECT_EQ(SumMetric(*m, "skproxy_datapath_switches_total", {{"to", "kernel"}}), kBulk);
  EXPECT_EQ(SumMetric(*m, "skproxy_connections_total", {{"datapath", "userspace"}}), kBulk + kChatty);
  ByteCounters c = ReadByteCounters(*m);
  EXPECT_GT(c.kernel_d2u, 0) << c.Describe();
  EXPECT_GT(c.kernel_u2d, 0) << c.Describe();
  EXPECT_EQ(c.d2u(), kBulk * kBulkBytes + kChatty * 2000 * 32) << c.Describe();
  EXPECT_EQ(c.u2d(), kBulk * kBulkBytes + kChatty * 2000 * 32) << c.Describe();
  EXPECT_EQ(SumMetric(*m, "skproxy_pipe_errors_total"), 0);
  printf("[auto %s] %s\n", family() == AF_INET ? "IPv4" : "IPv6", c.Describe().c_str());
}

// The kernel path has the lower latency while a worker is quiet, the user-space path the higher
// throughput when many connections are busy. A connection of small messages moves once it has exchanged
// 64 messages, only while its worker has at most quiet_worker_connections (4) on the user-space path.
TEST_P(AdaptiveTest, QuietWorkerMovesAChattyConnectionBusyOneDoesNot) {
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  if (!RequireSockmap()) GTEST_SKIP() << "not root: the kernel path is not expected to load";
  auto echo = StartServer(EchoHandler(), family());
  ASSERT_TRUE(echo);
  ProxyConfig config = SimpleProxyConfig("auto", {echo->endpoint()}, family());
  config.workers = 1;  // every connection counts on the one worker
  SKPROXY_START_OR_SKIP(proxy, config);
  auto baseline = proxy->FdCount();
  ASSERT_TRUE(baseline.ok()) << baseline.status();
  auto switches = [&] { return proxy->Metric("skproxy_datapath_switches_total", {{"to", "kernel"}}); };

  // Busy: 8 connections open at once, each exchanging 200 messages, none moves.
  std::vector<UniqueFd> busy;
  for (int i = 0; i < 8; ++i) {
    auto fd = Connect(proxy->listener(), 5s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    busy.push_back(std::move(*fd));
  }
  for (UniqueFd& fd : busy) EXPECT_EQ(Exchange(fd.get(), 200, 64), "");
  EXPECT_EQ(switches(), 0);
  busy.clear();
  ASSERT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_connections_active") == 0; }, 5s));

  // Quiet: one connection alone moves, and its echoes stay exact across the move.
  EXPECT_EQ(ChattyExchange(proxy->listener(), 500, 64), "");
  EXPECT_EQ(switches(), 1);
  EXPECT_PROXY_IDLE(proxy, *baseline);
}

// A connection's switch count (GET /connections, the access log) is the moves it made: one promotion, then
// many samples of it on the kernel path add nothing.
TEST_P(AdaptiveTest, SwitchCountIsTheMovesMade) {
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  if (!RequireSockmap()) GTEST_SKIP() << "not root: the kernel path is not expected to load";
  auto echo = StartServer(EchoHandler(), family());
  ASSERT_TRUE(echo);
  ProxyConfig config = SimpleProxyConfig("auto", {echo->endpoint()}, family());
  config.workers = 1;            // the one connection makes its worker quiet: it moves, and is never demoted
  config.switch_interval = "20ms";
  SKPROXY_START_OR_SKIP(proxy, config);
  auto fd = Connect(proxy->listener(), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  auto to_kernel = [&] { return proxy->Metric("skproxy_datapath_switches_total", {{"to", "kernel"}}); };
  // Promoted after 64 messages on a quiet worker.
  const Deadline promoted_by = DeadlineIn(5s);
  while (to_kernel() < 1 && Clock::now() < promoted_by) ASSERT_EQ(Exchange(fd->get(), 16, 64), "");
  ASSERT_EQ(to_kernel(), 1);
  // Small messages for 25 sampling intervals on the kernel path.
  const Deadline sampled = DeadlineIn(500ms);
  while (Clock::now() < sampled) ASSERT_EQ(Exchange(fd->get(), 8, 64), "");
  EXPECT_EQ(proxy->Metric("skproxy_datapath_switches_total", {{"to", "user"}}), 0);
  ConnectionsPage page = GetConnections(proxy->admin());
  ASSERT_EQ(page.status, 200) << page.body;
  ASSERT_EQ(page.connections.size(), 1u) << page.body;
  EXPECT_EQ(JsonField(page.connections[0], "datapath"), "sockmap") << page.connections[0];
  EXPECT_EQ(JsonField(page.connections[0], "switches"), "1") << page.connections[0];
}

INSTANTIATE_TEST_SUITE_P(Families, AdaptiveTest, ::testing::Values(AF_INET, AF_INET6),
                         [](const auto& info) { return info.param == AF_INET ? "IPv4" : "IPv6"; });

}  // namespace
}  // namespace skproxy::itest
