// Datapath auto moving connections both ways between the two paths, through the built binary: promoted
// into the sockhash on bulk, demoted (held in user mode) on small messages, promoted again on bulk, while
// bytes are in flight in both directions. Every connection's bytes are one pattern stream and its echo is
// checked at every offset, so a byte lost, repeated or reordered by any switch fails the test.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/netns.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"
#include "tests/kernel_support.h"

namespace skproxy::itest {
namespace {

// How a flow sends: writes of `chunk` bytes, at most `window` bytes sent and not yet echoed.
struct Shape {
  size_t chunk;
  uint64_t window;
};
constexpr Shape kBulk{256 * KiB, 8 * MiB};
constexpr Shape kRequestResponse{32, 32};  // one 32-byte message, then its echo, then the next
constexpr Shape kSmallPipelined{64, 2 * KiB};

// One connection to an echo upstream. Everything it sends is one pattern stream, whatever the shape, and
// every echoed byte is checked at its offset.
class EchoFlow {
 public:
  explicit EchoFlow(UniqueFd fd) : fd_(std::move(fd)), id_(NextStreamId()), checker_(id_) {
    fcntl(fd_.get(), F_SETFL, fcntl(fd_.get(), F_GETFL) | O_NONBLOCK);
  }

  // Sends until `done(sent)` and every byte sent has come back; `shape()` is asked before every write.
  // Empty string on success.
  std::string Move(const std::function<Shape()>& shape, const std::function<bool(uint64_t)>& done,
                   Deadline deadline) {
    std::vector<uint8_t> in(256 * KiB);
    while (true) {
      if (Clock::now() >= deadline) return Describe("deadline");
      const Shape s = shape();
      if (out_.size() < s.chunk) out_.resize(s.chunk);
      const bool finished = done(sent_);
      if (finished && received_ == sent_) return "";
      const bool want_send = !finished && sent_ - received_ + s.chunk <= s.window;
      bool progress = false;
      if (want_send) {
        FillPattern(id_, sent_, out_.data(), s.chunk);
        const ssize_t n = send(fd_.get(), out_.data(), s.chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
          sent_ += static_cast<uint64_t>(n);
          progress = true;
        } else if (errno != EAGAIN && errno != EINTR) {
          return Describe(absl::StrCat("send: ", strerror(errno)));
        }
      }
      const ssize_t n = recv(fd_.get(), in.data(), in.size(), MSG_DONTWAIT);
      if (n > 0) {
        checker_.Feed(in.data(), static_cast<size_t>(n));
        received_ += static_cast<uint64_t>(n);
        echoed_.store(received_, std::memory_order_relaxed);
        if (!checker_.ok()) return Describe(checker_.Describe());
        if (received_ > sent_) return Describe("more echoed than sent");
        progress = true;
      } else if (n == 0) {
        return Describe("EOF before the echo was complete");
      } else if (errno != EAGAIN && errno != EINTR) {
        return Describe(absl::StrCat("recv: ", strerror(errno)));
      }
      if (!progress) PollFd(fd_.get(), static_cast<short>(POLLIN | (want_send ? POLLOUT : 0)), DeadlineIn(50ms));
    }
  }

  std::string MoveBytes(uint64_t bytes, Shape shape, Deadline deadline) {
    const uint64_t until = sent_ + bytes;
    return Move([shape] { return shape; }, [until](uint64_t sent) { return sent >= until; }, deadline);
  }

  // Half-closes, reads the rest of the echo to EOF and checks that every byte came back once, in order.
  std::string Finish(Deadline deadline) {
    if (shutdown(fd_.get(), SHUT_WR) != 0) return Describe(absl::StrCat("shutdown: ", strerror(errno)));
    IoResult rest = ReadStream(fd_.get(), &checker_, deadline);
    received_ += rest.bytes;
    if (!rest.eof) return Describe("no EOF: " + rest.Describe());
    if (!checker_.ok()) return Describe(checker_.Describe());
    if (received_ != sent_ || checker_.bytes() != sent_) return Describe("echo length differs");
    return "";
  }

  uint64_t sent() const { return sent_; }
  uint64_t echoed() const { return echoed_.load(std::memory_order_relaxed); }

 private:
  std::string Describe(const std::string& what) const {
    return absl::StrCat("stream ", id_, ": ", what, " (sent ", sent_, ", echoed ", received_, ")");
  }

  UniqueFd fd_;
  uint32_t id_;
  PatternChecker checker_;
  std::vector<uint8_t> out_;
  uint64_t sent_ = 0, received_ = 0;
  std::atomic<uint64_t> echoed_{0};
};

struct SoakPlan {
  int connections_per_family;
  int cycles;
  uint64_t bulk_bytes;
  int messages;  // request/response exchanges per small phase
};

// A connection that alternates bulk and request/response phases, then ends. Returns the bytes sent (each
// came back exact) or an error.
struct SoakResult {
  std::string error;
  uint64_t bytes = 0;
};
SoakResult SoakConnection(const SocketAddress& listener, const SoakPlan& plan, Deadline deadline) {
  auto fd = Connect(listener, 10s);
  if (!fd.ok()) return {std::string(fd.status().message())};
  EchoFlow flow(std::move(*fd));
  for (int c = 0; c < plan.cycles; ++c) {
    std::string error = flow.MoveBytes(plan.bulk_bytes, kBulk, deadline);
    if (error.empty()) error = flow.MoveBytes(plan.messages * kRequestResponse.chunk, kRequestResponse, deadline);
    if (!error.empty()) return {absl::StrCat("cycle ", c, ": ", error)};
  }
  std::string error = flow.Finish(deadline);
  return {error, flow.sent()};
}

// Proxy settings that let a test see many switches in a short run: samples every 25 ms, a held connection
// moves back after 256 KiB of bulk in one of them.
ProxyConfig SwitchingConfig(const std::vector<SocketAddress>& echo_v4_v6) {
  ProxyConfig c;
  c.datapath = "auto";
  c.promote_after = "256KiB";
  c.switch_interval = "25ms";
  c.demote_after_messages = "16";
  c.listeners = {{"v4", Loopback4(0), "echo4"}, {"v6", Loopback6(0), "echo6"}};
  c.clusters = {{"echo4", "2s", {echo_v4_v6[0]}}, {"echo6", "2s", {echo_v4_v6[1]}}};
  return c;
}

void RunSoak(ProxyProcess& proxy, const SoakPlan& plan, Millis timeout, const char* name) {
  const Deadline deadline = DeadlineIn(timeout);
  std::vector<std::future<SoakResult>> results;
  for (int i = 0; i < 2 * plan.connections_per_family; ++i) {
    results.push_back(std::async(std::launch::async, SoakConnection, proxy.listener(i % 2), plan, deadline));
  }
  uint64_t total = 0;
  int failed = 0;
  for (auto& f : results) {
    SoakResult r = f.get();
    if (!r.error.empty() && ++failed <= 5) ADD_FAILURE() << name << ": " << r.error;
    total += r.bytes;
  }
  EXPECT_EQ(failed, 0) << name << ": connections that lost, repeated or reordered bytes, or failed";
  const uint64_t expected =
      2ull * plan.connections_per_family * plan.cycles * (plan.bulk_bytes + plan.messages * kRequestResponse.chunk);
  EXPECT_EQ(total, expected);

  auto m = proxy.Metrics();
  ASSERT_TRUE(m.ok()) << m.status();
  const double to_kernel = SumMetric(*m, "skproxy_datapath_switches_total", {{"to", "kernel"}});
  const double to_user = SumMetric(*m, "skproxy_datapath_switches_total", {{"to", "user"}});
  const double left = SumMetric(*m, "skproxy_sockmap_leaves_total", {{"result", "left"}});
  const double stayed = SumMetric(*m, "skproxy_sockmap_leaves_total", {{"result", "stayed"}});
  ByteCounters c = ReadByteCounters(*m);
  printf("[%s] %d connections: %.0f switches to the kernel, %.0f to user space, %.0f left the sockhash "
         "(%.0f attempts stayed); %s\n",
         name, 2 * plan.connections_per_family, to_kernel, to_user, left, stayed, c.Describe().c_str());
  EXPECT_GT(to_kernel, 0) << "no promotion: the test proved nothing";
  EXPECT_GT(to_user, 0) << "no demotion: the test proved nothing";
  EXPECT_GT(left, 0) << "no held connection left the sockhash: the test proved nothing about the leave";
  // The proxy's own count of the bytes it moved, by path, adds up to what the clients sent.
  EXPECT_EQ(c.d2u(), static_cast<double>(total)) << c.Describe();
  EXPECT_EQ(c.u2d(), static_cast<double>(total)) << c.Describe();
  EXPECT_GT(c.kernel_d2u + c.kernel_u2d, 0) << c.Describe();
  EXPECT_GT(c.user_d2u + c.user_u2d, 0) << c.Describe();
  EXPECT_EQ(SumMetric(*m, "skproxy_pipe_errors_total"), 0);
  EXPECT_EQ(SumMetric(*m, "skproxy_verdict_events_total", {{"event", "trim_short"}}), 0);
}

// 200 connections, IPv4 and IPv6, each alternating 2 MiB bulk phases with 200 request/response exchanges.
TEST(SwitchSoakTest, HundredsOfConnectionsAlternatingBulkAndRequestResponse) {
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  if (!RequireSockmap()) GTEST_SKIP() << "not root: the kernel path is not expected to load";
  auto echo4 = StartServer(EchoHandler(), AF_INET);
  auto echo6 = StartServer(EchoHandler(), AF_INET6);
  ASSERT_TRUE(echo4 && echo6);
  SKPROXY_START_ANY_PATH(proxy, baseline_fds, SwitchingConfig({echo4->endpoint(), echo6->endpoint()}));
  RunSoak(*proxy, {100, 4, 2 * MiB, 200}, 200s, "switch soak");
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// The same inside a network namespace that drops 1% of the segments reaching the proxy from the clients
// and from the upstreams: the switches must stay exact across retransmissions.
TEST(SwitchSoakTest, AlternatingUnderOnePercentLoss) {
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  if (!RequireSockmap()) GTEST_SKIP() << "not root: the kernel path is not expected to load";
  if (FindExecutable("nft").empty()) GTEST_SKIP() << "nft (package nftables) is not installed";
  auto ns = ScopedNetns::Enter();
  if (!ns.ok()) GTEST_SKIP() << "cannot create a network namespace: " << ns.status();
  {
    auto echo4 = StartServer(EchoHandler(), AF_INET);
    auto echo6 = StartServer(EchoHandler(), AF_INET6);
    ASSERT_TRUE(echo4 && echo6);
    SKPROXY_START_ANY_PATH(proxy, baseline_fds, SwitchingConfig({echo4->endpoint(), echo6->endpoint()}));
    absl::Status loss = InstallTcpLoss({absl::StrCat("dport ", proxy->listener(0).port()),
                                        absl::StrCat("dport ", proxy->listener(1).port()),
                                        absl::StrCat("sport ", echo4->endpoint().port()),
                                        absl::StrCat("sport ", echo6->endpoint().port())},
                                       1);
    if (!loss.ok()) GTEST_SKIP() << loss;
    RunSoak(*proxy, {32, 3, 2 * MiB, 200}, 200s, "switch soak, 1% loss");
    EXPECT_GT(NftDroppedPackets(), 0u) << "no segment was dropped: the test proved nothing";
    EXPECT_PROXY_IDLE(proxy, baseline_fds);
  }
}

class SwitchTest : public ::testing::TestWithParam<int> {};

// One connection switched back and forth while it streams in both directions: pipelined small messages
// (up to 2 KiB unanswered) until it is demoted, bulk (up to 8 MiB unanswered) until it is promoted, three
// times each. The flow never stops for a switch, so each one happens with bytes in flight both ways.
TEST_P(SwitchTest, DemotionAndPromotionWithBytesInFlightBothWays) {
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  if (!RequireSockmap()) GTEST_SKIP() << "not root: the kernel path is not expected to load";
  auto echo = StartServer(EchoHandler(), GetParam());
  ASSERT_TRUE(echo);
  ProxyConfig config = SimpleProxyConfig("auto", {echo->endpoint()}, GetParam());
  config.workers = 1;
  config.quiet_worker_connections = "0";  // the busy-worker rule alone: demote whatever turns small
  config.promote_after = "256KiB";
  config.switch_interval = "20ms";
  config.demote_after_messages = "16";
  SKPROXY_START_ANY_PATH(proxy, baseline_fds, config);
  auto switches = [&](const char* to) { return proxy->Metric("skproxy_datapath_switches_total", {{"to", to}}); };

  auto fd = Connect(proxy->listener(), 10s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EchoFlow flow(std::move(*fd));
  std::atomic<bool> small{false}, stop{false};
  std::future<std::string> mover = std::async(std::launch::async, [&] {
    return flow.Move([&] { return small.load() ? kSmallPipelined : kBulk; }, [&](uint64_t) { return stop.load(); },
                     DeadlineIn(120s));
  });
  auto kernel_bytes = [&] { return proxy->Metric("skproxy_bytes_total", {{"path", "kernel"}}); };
  // Waits for the switch counter to pass `count` while the flow keeps echoing, then checks that the flow
  // goes on (64 KiB more echoed) and which path it takes: the verdict redirects nothing while the connection
  // is held, and redirects again once it is back in the kernel.
  auto wait_switch = [&](const char* to, double count) {
    const bool switched = WaitFor([&] { return switches(to) > count; }, 30s, 5ms);
    EXPECT_TRUE(switched) << "no switch to " << to << " after " << count;
    if (!switched) return false;
    const double kernel_before = kernel_bytes();
    const uint64_t echoed = flow.echoed();
    EXPECT_TRUE(WaitFor([&] { return flow.echoed() > echoed + 64 * KiB; }, 30s))
        << "the flow stalled after the switch to " << to;
    if (std::string(to) == "user") {
      EXPECT_EQ(kernel_bytes(), kernel_before) << "the verdict redirected bytes of a held connection";
    } else {
      // The verdict redirects again once user space has written every byte it was passed and the peer has
      // room (the gate's exit rule): with a continuous sender that can take a few rounds of copies.
      EXPECT_TRUE(WaitFor([&] { return kernel_bytes() > kernel_before; }, 30s))
          << "no byte took the kernel path after the promotion";
    }
    return true;
  };
  auto left = [&] { return proxy->Metric("skproxy_sockmap_leaves_total", {{"result", "left"}}); };
  for (int i = 0; i < 3; ++i) {
    small = false;
    if (!wait_switch("kernel", i)) break;
    small = true;
    if (!wait_switch("user", i)) break;
    // Held for a whole interval, the connection leaves the sockhash (both legs out) and goes on as a plain
    // user-space connection, every byte still in order; the next bulk run puts it back in.
    EXPECT_TRUE(WaitFor([&] { return left() > i; }, 30s)) << "the held connection did not leave the sockhash";
    EXPECT_EQ(proxy->Metric("skproxy_sockmap_entries"), 0);
    const uint64_t echoed = flow.echoed();
    EXPECT_TRUE(WaitFor([&] { return flow.echoed() > echoed + 64 * KiB; }, 30s)) << "the flow stalled after leaving";
  }
  small = false;
  stop = true;
  EXPECT_EQ(mover.get(), "");
  EXPECT_EQ(flow.Finish(DeadlineIn(30s)), "");
  EXPECT_GE(switches("kernel"), 3);
  EXPECT_GE(switches("user"), 3);
  EXPECT_GE(left(), 3);
  auto m = proxy->Metrics();
  ASSERT_TRUE(m.ok()) << m.status();
  ByteCounters c = ReadByteCounters(*m);
  EXPECT_EQ(c.d2u(), static_cast<double>(flow.sent())) << c.Describe();
  EXPECT_EQ(c.u2d(), static_cast<double>(flow.sent())) << c.Describe();
  EXPECT_EQ(SumMetric(*m, "skproxy_pipe_errors_total"), 0);
  printf("[%s] %llu bytes each way, %.0f promotions, %.0f demotions; %s\n", GetParam() == AF_INET ? "IPv4" : "IPv6",
         static_cast<unsigned long long>(flow.sent()), switches("kernel"), switches("user"), c.Describe().c_str());
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// A kernel-path connection that turns chatty on a quiet worker is not demoted: there the kernel path has the
// lower latency, and the quiet-worker rule would only move it back.
TEST_P(SwitchTest, QuietWorkerKeepsAChattyConnectionOnTheKernelPath) {
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  if (!RequireSockmap()) GTEST_SKIP() << "not root: the kernel path is not expected to load";
  auto echo = StartServer(EchoHandler(), GetParam());
  ASSERT_TRUE(echo);
  ProxyConfig config = SimpleProxyConfig("auto", {echo->endpoint()}, GetParam());
  config.workers = 1;  // quiet_worker_connections 4 (default): one connection is a quiet worker
  config.promote_after = "256KiB";
  config.switch_interval = "20ms";
  config.demote_after_messages = "16";
  SKPROXY_START_ANY_PATH(proxy, baseline_fds, config);
  auto fd = Connect(proxy->listener(), 10s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EchoFlow flow(std::move(*fd));
  EXPECT_EQ(flow.MoveBytes(4 * MiB, kBulk, DeadlineIn(30s)), "");
  EXPECT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_datapath_switches_total", {{"to", "kernel"}}) >= 1; }, 10s));
  // 2000 exchanges: at least 20 sampling intervals of small messages.
  EXPECT_EQ(flow.MoveBytes(2000 * kRequestResponse.chunk, kRequestResponse, DeadlineIn(60s)), "");
  EXPECT_EQ(proxy->Metric("skproxy_datapath_switches_total", {{"to", "user"}}), 0);
  EXPECT_EQ(flow.Finish(DeadlineIn(30s)), "");
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

INSTANTIATE_TEST_SUITE_P(Families, SwitchTest, ::testing::Values(AF_INET, AF_INET6),
                         [](const auto& info) { return info.param == AF_INET ? "IPv4" : "IPv6"; });

}  // namespace
}  // namespace skproxy::itest
