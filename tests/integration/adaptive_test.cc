// Datapath auto, through the built binary: every connection starts on the user-space path; one that
// carries bulk moves into the sockhash mid-stream, one of small messages never does. Every byte is checked
// across the move, in both directions, IPv4 and IPv6.
#include <sys/socket.h>

#include <future>
#include <string>
#include <vector>

#include "gtest/gtest.h"
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

// `rounds` request/response exchanges of `size` bytes on one connection; empty string when every echo
// came back exact.
std::string ChattyExchange(const SocketAddress& listener, int rounds, size_t size) {
  auto fd = Connect(listener, 5s);
  if (!fd.ok()) return std::string(fd.status().message());
  std::string request(size, '\0'), reply(size, '\0');
  for (int i = 0; i < rounds; ++i) {
    for (size_t j = 0; j < size; ++j) request[j] = static_cast<char>('a' + (i + j) % 26);
    IoResult sent = SendAll(fd->get(), request.data(), size, DeadlineIn(5s));
    if (sent.bytes != size) return "send: " + sent.Describe();
    IoResult got = RecvExact(fd->get(), reply.data(), size, DeadlineIn(5s));
    if (got.bytes != size) return "recv: " + got.Describe();
    if (reply != request) return "round " + std::to_string(i) + ": the echo differs";
  }
  return "";
}

TEST_P(AdaptiveTest, BulkConnectionsMoveToTheKernelPathChattyOnesStay) {
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  if (!RequireSockmap()) GTEST_SKIP() << "not root: the kernel path is not expected to load";
  constexpr int kBulk = 4, kChatty = 8;
  constexpr uint64_t kBulkBytes = 64 * MiB;
  auto echo = StartServer(EchoHandler(), family());
  ASSERT_TRUE(echo);
  SKPROXY_START_OR_SKIP(proxy, SimpleProxyConfig("auto", {echo->endpoint()}, family()));
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

INSTANTIATE_TEST_SUITE_P(Families, AdaptiveTest, ::testing::Values(AF_INET, AF_INET6),
                         [](const auto& info) { return info.param == AF_INET ? "IPv4" : "IPv6"; });

}  // namespace
}  // namespace skproxy::itest
