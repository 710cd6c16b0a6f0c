// Behaviour every data path must have, run against the real binary with --datapath sockmap and userspace:
// exact bytes (large, many, IPv6, before the upstream is connected), half-close in both orders, failure
// handling, close/reset while bytes are queued, and resources returning to idle.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/connections_page.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"

namespace skproxy::itest {
namespace {

class DatapathTest : public ::testing::TestWithParam<std::string> {
 protected:
  const std::string& datapath() const { return GetParam(); }
};

// 1. One 256 MiB stream echoed back: SHA-256 of what came back equals that of what was sent, and the
// proxy's byte counters account for every byte once.
TEST_P(DatapathTest, EchoOf256MiBIsSha256Exact) {
  constexpr uint64_t kBytes = 256 * MiB;
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {echo->endpoint()}));
  auto fd = Connect(proxy->listener(), 2s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  auto start = Clock::now();
  EchoResult r = EchoExchange(fd->get(), NextStreamId(), kBytes, DeadlineIn(120s), /*compute_sha=*/true);
  double secs = SecondsSince(start);
  printf("[%s] 256 MiB echo in %.2f s (%.0f MB/s each way)\n", datapath().c_str(), secs, kBytes / secs / 1e6);
  EXPECT_EQ(r.send.bytes, kBytes) << r.Describe();
  EXPECT_EQ(r.recv.bytes, kBytes) << r.Describe();
  EXPECT_TRUE(r.recv.eof) << r.Describe();
  EXPECT_EQ(r.first_bad, -1) << r.Describe();
  EXPECT_EQ(r.sha_received, r.sha_sent);
  fd->Reset();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
  ByteCounters c;
  bool exact = WaitFor(
      [&] {
        auto m = proxy->Metrics();
        if (!m.ok()) return false;
        c = ReadByteCounters(*m);
        return c.d2u() == kBytes && c.u2d() == kBytes;
      },
      3s, 50ms);
  EXPECT_TRUE(exact) << "skproxy_bytes_total should count each byte once: " << c.Describe();
  printf("[%s] bytes: %s\n", datapath().c_str(), c.Describe().c_str());
}

// 2. 200 connections open at once, 1 MiB each, echoed concurrently, each checked from its first byte.
TEST_P(DatapathTest, TwoHundredConcurrentConnectionsEchoExactly) {
  constexpr int kConns = 200;
  constexpr uint64_t kBytes = 1 * MiB;
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {echo->endpoint()}));
  std::vector<UniqueFd> fds;
  for (int i = 0; i < kConns; i++) {
    auto fd = Connect(proxy->listener(), 5s);
    ASSERT_TRUE(fd.ok()) << "connection " << i << ": " << fd.status();
    fds.push_back(std::move(*fd));
  }
  std::vector<EchoResult> results(kConns);
  std::vector<std::thread> threads;
  Deadline deadline = DeadlineIn(90s);
  auto start = Clock::now();
  for (int i = 0; i < kConns; i++)
    threads.emplace_back([&, i] { results[i] = EchoExchange(fds[i].get(), NextStreamId(), kBytes, deadline); });
  for (auto& t : threads) t.join();
  printf("[%s] %d x 1 MiB echo in %.2f s\n", datapath().c_str(), kConns, SecondsSince(start));
  int bad = 0;
  for (int i = 0; i < kConns; i++) {
    const EchoResult& r = results[i];
    bool ok = r.send.bytes == kBytes && r.recv.bytes == kBytes && r.recv.eof && r.first_bad < 0;
    if (!ok && ++bad <= 5) ADD_FAILURE() << "connection " << i << ": " << r.Describe();
  }
  EXPECT_EQ(bad, 0) << "connections with wrong bytes";
  fds.clear();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
  auto m = proxy->Metrics();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(SumMetric(*m, "skproxy_connections_total", {{"listener", "web"}}), kConns);
  EXPECT_GT(SumMetric(*m, "skproxy_connections_total", {{"datapath", datapath()}}), 0)
      << "no connection labelled datapath=" << datapath();
}

// 3. IPv6 listener and upstreams, and both mixes of families; the gate under IPv6 with a reader that
// alternates fast and slow.
TEST_P(DatapathTest, Ipv6ListenersAndUpstreams) {
  auto echo6 = StartServer(EchoHandler(), AF_INET6);
  auto echo4 = StartServer(EchoHandler(), AF_INET);
  SinkOptions phased;
  phased.pacing.fast_phase_bytes = 4 * MiB;
  phased.pacing.slow_phase_bytes = 512 * KiB;
  phased.pacing.slow_rate = 16.0 * MiB;
  auto sink6 = StartServer(SinkHandler(phased), AF_INET6, SocketOptions{256 * KiB, 0});
  ASSERT_TRUE(echo6 && echo4 && sink6);
  ProxyConfig c;
  c.datapath = datapath();
  c.gate_limit = "1MiB";
  c.receive_buffer = "512KiB";
  c.listeners = {{"v6v6", Loopback6(0), "up6"},
                 {"v4v6", Loopback4(0), "up6"},
                 {"v6v4", Loopback6(0), "up4"},
                 {"v6sink", Loopback6(0), "sink6"}};
  c.clusters = {{"up6", "2s", {echo6->endpoint()}},
                {"up4", "2s", {echo4->endpoint()}},
                {"sink6", "2s", {sink6->endpoint()}}};
  SKPROXY_START(proxy, baseline_fds, c);
  for (size_t i = 0; i < 3; i++) {
    SCOPED_TRACE(c.listeners[i].name);
    auto fd = Connect(proxy->listener(i), 2s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    EchoResult r = EchoExchange(fd->get(), NextStreamId(), 32 * MiB, DeadlineIn(60s));
    EXPECT_EQ(r.recv.bytes, 32 * MiB) << r.Describe();
    EXPECT_TRUE(r.recv.eof && r.first_bad < 0) << r.Describe();
    EXPECT_EQ(ShortEcho(proxy->listener(i), 1000), "");
  }
  auto fd = Connect(proxy->listener(3), 2s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  IoResult w = SendPattern(fd->get(), NextStreamId(), 0, 64 * MiB, DeadlineIn(60s));
  EXPECT_EQ(w.bytes, 64 * MiB) << w.Describe();
  shutdown(fd->get(), SHUT_WR);
  ASSERT_TRUE(sink6->WaitForFinished(1, 60s));
  ConnStats s = sink6->Finished()[0];
  EXPECT_EQ(s.bytes_in, 64 * MiB) << s.Describe();
  EXPECT_TRUE(s.eof && s.first_bad < 0) << s.Describe();
  fd->Reset();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
  printf("[%s] IPv6 gate switches: %.0f\n", datapath().c_str(), proxy->Metric("skproxy_gate_switches_total"));
}

// 4a. Bytes the client sends while the proxy tries a refused endpoint first arrive intact, from byte 0.
TEST_P(DatapathTest, FirstBytesSurviveARefusedFirstEndpoint) {
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  SKPROXY_START(proxy, baseline_fds,
                SimpleProxyConfig(datapath(), {RefusedEndpoint(), echo->endpoint()}, AF_INET, "1s"));
  for (int i = 0; i < 40; i++) {
    uint64_t n = 1 + (i * 7919) % (64 * KiB);
    EXPECT_EQ(ShortEcho(proxy->listener(), n), "") << "connection " << i << " (" << n << " bytes)";
  }
  EXPECT_GE(proxy->Metric("skproxy_upstream_connect_failures_total", {{"cluster", "backend"}}), 1);
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 4b. The upstream's accept queue is full, so the proxy's SYN is dropped and its connect completes only
// after a SYN retransmission (~1 s). The client writes before and during that time.
TEST_P(DatapathTest, ClientBytesSentBeforeTheUpstreamConnectsArriveIntact) {
  constexpr uint64_t kBytes = 8 * MiB;
  auto echo = StartServer(EchoHandler(), AF_INET, {}, /*hold_accepts=*/true, /*backlog=*/0);
  ASSERT_TRUE(echo);
  auto filler = Connect(echo->endpoint(), 2s);  // occupies the only slot of the accept queue
  ASSERT_TRUE(filler.ok()) << filler.status();
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {echo->endpoint()}, AF_INET, "5s"));
  auto fd = Connect(proxy->listener(), 2s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  const uint32_t id = NextStreamId();
  IoResult first = SendPattern(fd->get(), id, 0, 64 * KiB, DeadlineIn(5s));
  ASSERT_EQ(first.bytes, 64 * KiB) << first.Describe();
  ASSERT_TRUE(WaitFor([&] { return HasSynSentTo(echo->endpoint().port()); }, 5s))
      << "the proxy never tried to connect upstream\n" << proxy->StderrTail();
  IoResult second = SendPattern(fd->get(), id, 64 * KiB, 64 * KiB, DeadlineIn(5s));
  ASSERT_EQ(second.bytes, 64 * KiB) << second.Describe();
  echo->ReleaseAccepts();
  filler->Reset();
  std::thread sender([&] {
    SendPattern(fd->get(), id, 128 * KiB, kBytes - 128 * KiB, DeadlineIn(30s));
    shutdown(fd->get(), SHUT_WR);
  });
  PatternChecker checker(id);
  IoResult r = ReadStream(fd->get(), &checker, DeadlineIn(30s));
  sender.join();
  EXPECT_WHOLE_STREAM(r, checker, kBytes);
  fd->Reset();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 4c. Many short connections whose bytes are written right after connect: the first bytes of every
// connection must be exact (the experiments saw a corrupt byte 3-4 of a stream twice in ~200 runs).
TEST_P(DatapathTest, FirstBytesOfManyShortConnectionsAreExact) {
  constexpr int kThreads = 4, kPerThread = 100;
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {echo->endpoint()}));
  std::atomic<int> bad{0};
  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; i++) {
        uint64_t n = 1 + ((t * kPerThread + i) * 37) % 3000;
        std::string err = ShortEcho(proxy->listener(), n);
        if (!err.empty() && bad.fetch_add(1) < 5) failures[t] += err + "\n";
      }
    });
  }
  for (auto& t : threads) t.join();
  std::string all;
  for (auto& f : failures) all += f;
  EXPECT_EQ(bad.load(), 0) << all;
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 5a. The client half-closes after its request; the upstream reads to EOF (slowly, so the request is
// still queued in the proxy when the FIN arrives) and only then replies with the request's SHA-256, its
// length and a 4 MiB body. The FIN must not overtake queued bytes, and the reply must get through after it.
TEST_P(DatapathTest, ClientHalfCloseThenFullReply) {
  constexpr int kConns = 4;
  constexpr uint64_t kRequest = 16 * MiB, kReply = 4 * MiB;
  ReplyAfterEofOptions o;
  o.reply_bytes = kReply;
  o.read_rate = 32.0 * MiB;
  auto server = StartServer(ReplyAfterEofHandler(o), AF_INET, SocketOptions{256 * KiB, 0});
  ASSERT_TRUE(server);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {server->endpoint()}));
  std::vector<std::string> errors(kConns);
  std::vector<std::thread> threads;
  for (int i = 0; i < kConns; i++) {
    threads.emplace_back([&, i] {
      Deadline deadline = DeadlineIn(60s);
      auto fd = Connect(proxy->listener(), 2s);
      if (!fd.ok()) return void(errors[i] = std::string(fd.status().message()));
      uint32_t id = NextStreamId();
      IoResult w = SendPattern(fd->get(), id, 0, kRequest, deadline);
      if (w.bytes != kRequest) return void(errors[i] = "request: " + w.Describe());
      shutdown(fd->get(), SHUT_WR);
      char head[40];
      IoResult h = RecvExact(fd->get(), head, sizeof head, deadline);
      if (h.bytes != sizeof head) return void(errors[i] = "reply head: " + h.Describe());
      Sha256 want;
      std::vector<uint8_t> buf(MiB);
      for (uint64_t off = 0; off < kRequest; off += buf.size()) {
        FillPattern(id, off, buf.data(), buf.size());
        want.Update(buf.data(), buf.size());
      }
      uint64_t len;
      memcpy(&len, head + 32, 8);
      if (std::string(head, 32) != want.FinalRaw() || le64toh(len) != kRequest)
        return void(errors[i] = "the upstream got a different request: length " + std::to_string(le64toh(len)));
      PatternChecker body;
      IoResult r = ReadStream(fd->get(), &body, deadline);
      if (r.bytes != kReply || !r.eof || !body.ok())
        return void(errors[i] = "reply body: " + r.Describe() + "; " + body.Describe());
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kConns; i++) EXPECT_EQ(errors[i], "") << "connection " << i;
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 5b. The upstream half-closes first (sends 4 MiB, SHUT_WR) and keeps reading; the client reads to EOF,
// and only then sends 8 MiB and half-closes. Both streams must arrive whole.
TEST_P(DatapathTest, UpstreamHalfCloseFirstThenClientSends) {
  constexpr int kConns = 4;
  constexpr uint64_t kDown = 4 * MiB, kUp = 8 * MiB;
  auto server = StartServer(HalfCloseFirstHandler(kDown));
  ASSERT_TRUE(server);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {server->endpoint()}));
  std::vector<std::string> errors(kConns);
  std::vector<std::thread> threads;
  for (int i = 0; i < kConns; i++) {
    threads.emplace_back([&, i] {
      Deadline deadline = DeadlineIn(60s);
      auto fd = Connect(proxy->listener(), 2s);
      if (!fd.ok()) return void(errors[i] = std::string(fd.status().message()));
      PatternChecker down;
      IoResult r = ReadStream(fd->get(), &down, deadline);
      if (r.bytes != kDown || !r.eof || !down.ok())
        return void(errors[i] = "downstream: " + r.Describe() + "; " + down.Describe());
      IoResult w = SendPattern(fd->get(), NextStreamId(), 0, kUp, deadline);
      if (w.bytes != kUp) return void(errors[i] = "after the upstream's FIN the client could not send: " + w.Describe());
      shutdown(fd->get(), SHUT_WR);
      CloseResult c = WaitForPeerClose(fd->get(), deadline);
      if (!c.closed) errors[i] = "the proxy never closed the client after both FINs";
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kConns; i++) EXPECT_EQ(errors[i], "") << "connection " << i;
  ASSERT_TRUE(server->WaitForFinished(kConns, 10s));
  for (const ConnStats& s : server->Finished()) {
    EXPECT_EQ(s.bytes_in, kUp) << s.Describe();
    EXPECT_TRUE(s.eof && s.first_bad < 0) << s.Describe();
  }
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 6a. Every endpoint refuses: the client is closed promptly and the failures are counted.
TEST_P(DatapathTest, AllEndpointsRefusedClosesTheClientPromptly) {
  constexpr int kConns = 5;
  SKPROXY_START(proxy, baseline_fds,
                SimpleProxyConfig(datapath(), {RefusedEndpoint(AF_INET), RefusedEndpoint(AF_INET6)}, AF_INET, "1s"));
  double before = proxy->Metric("skproxy_upstream_connect_failures_total", {{"cluster", "backend"}});
  for (int i = 0; i < kConns; i++) {
    auto fd = Connect(proxy->listener(), 2s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    const char req[] = "hello";
    SendAll(fd->get(), req, sizeof req, DeadlineIn(1s));
    CloseResult c = WaitForPeerClose(fd->get(), DeadlineIn(2s));
    EXPECT_TRUE(c.closed) << "connection " << i << " still open after 2 s";
    EXPECT_EQ(c.discarded, 0u) << "the client got bytes from nowhere";
  }
  double failures = 0;
  EXPECT_TRUE(WaitFor(
      [&] {
        failures = proxy->Metric("skproxy_upstream_connect_failures_total", {{"cluster", "backend"}}) - before;
        return failures >= kConns;
      },
      3s))
      << "connect failures counted: " << failures;
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 6b. The upstream never answers the SYN (accept queue full): the connect times out after connect_timeout
// (1 s) and the client is closed, not left hanging.
TEST_P(DatapathTest, ConnectTimeoutClosesTheClient) {
  auto blackhole = StartServer(EchoHandler(), AF_INET, {}, /*hold_accepts=*/true, /*backlog=*/0);
  ASSERT_TRUE(blackhole);
  auto filler = Connect(blackhole->endpoint(), 2s);
  ASSERT_TRUE(filler.ok()) << filler.status();
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {blackhole->endpoint()}, AF_INET, "1s"));
  double before = proxy->Metric("skproxy_upstream_connect_failures_total", {{"cluster", "backend"}});
  for (int i = 0; i < 2; i++) {
    auto fd = Connect(proxy->listener(), 2s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    SendAll(fd->get(), "x", 1, DeadlineIn(1s));
    CloseResult c = WaitForPeerClose(fd->get(), DeadlineIn(4s));
    EXPECT_TRUE(c.closed) << "client still open 4 s after a 1 s connect_timeout";
    EXPECT_GE(c.seconds, 0.8) << "closed before the connect could have timed out";
    EXPECT_LE(c.seconds, 3.0);
  }
  EXPECT_TRUE(WaitFor(
      [&] {
        return proxy->Metric("skproxy_upstream_connect_failures_total", {{"cluster", "backend"}}) - before >= 2;
      },
      3s));
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 6c. The upstream resets after reading 1 MiB while the client keeps sending: the client is closed within
// 2 s of the reset, and the upstream got an exact prefix.
TEST_P(DatapathTest, UpstreamResetWhileClientSendsClosesTheClient) {
  auto killer = StartServer(KillHandler({1 * MiB, 0, true}));
  ASSERT_TRUE(killer);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {killer->endpoint()}));
  auto fd = Connect(proxy->listener(), 2s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  auto sent = std::async(std::launch::async,
                         [&] { return SendPattern(fd->get(), NextStreamId(), 0, 512 * MiB, DeadlineIn(20s)); });
  ASSERT_TRUE(killer->WaitForFinished(1, 10s));
  ConnStats k = killer->Finished()[0];
  CloseResult c = WaitForPeerClose(fd->get(), k.ended + 2s);
  EXPECT_TRUE(c.closed) << "client not closed within 2 s of the upstream's reset\n" << proxy->StderrTail();
  IoResult w = sent.get();  // ends with an error or at its own deadline: bounded either way
  printf("[%s] client sent %s after the upstream reset\n", datapath().c_str(), w.Describe().c_str());
  EXPECT_EQ(k.bytes_in, 1 * MiB) << k.Describe();
  EXPECT_EQ(k.first_bad, -1) << k.Describe();
  fd->Reset();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 6d. The upstream sends 8 MiB and resets: the client reads an exact prefix and is closed promptly.
TEST_P(DatapathTest, UpstreamResetWhileSendingClosesTheClient) {
  auto killer = StartServer(KillHandler({0, 8 * MiB, true}));
  ASSERT_TRUE(killer);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {killer->endpoint()}));
  auto fd = Connect(proxy->listener(), 2s, SocketOptions{256 * KiB, 0});
  ASSERT_TRUE(fd.ok()) << fd.status();
  // Read while the upstream sends (it cannot finish sending into full buffers), until the end of the stream.
  PatternChecker checker;
  IoResult r = ReadStream(fd->get(), &checker, DeadlineIn(30s));
  auto read_ended = Clock::now();
  ASSERT_TRUE(killer->WaitForFinished(1, 5s)) << "the upstream never finished sending 8 MiB";
  ConnStats k = killer->Finished()[0];
  EXPECT_TRUE(r.eof || r.error) << r.Describe();
  EXPECT_LT(std::chrono::duration<double>(read_ended - k.ended).count(), 2.0)
      << "client not closed within 2 s of the upstream's reset: " << r.Describe();
  EXPECT_LE(r.bytes, 8 * MiB);
  EXPECT_TRUE(checker.ok()) << checker.Describe();
  fd->Reset();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 8a/8b: a slow upstream (16 MiB/s) and a client that writes 32 MiB as fast as it can, then closes.
constexpr uint64_t kQueuedBytes = 32 * MiB;
constexpr double kSlowUpstreamRate = 16.0 * MiB;

// 8a. The client sends 32 MiB and closes (FIN) while most of it is still queued towards a slow upstream:
// everything arrives, byte-exact, then EOF.
TEST_P(DatapathTest, ClientFinWhileBytesQueuedTowardsSlowUpstream) {
  SinkOptions o;
  o.pacing.rate = kSlowUpstreamRate;
  auto sink = StartServer(SinkHandler(o), AF_INET, SocketOptions{128 * KiB, 0});
  ASSERT_TRUE(sink);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {sink->endpoint()}));
  auto fd = Connect(proxy->listener(), 2s, SocketOptions{0, 128 * KiB});
  ASSERT_TRUE(fd.ok()) << fd.status();
  IoResult w = SendPattern(fd->get(), NextStreamId(), 0, kQueuedBytes, DeadlineIn(30s));
  ASSERT_EQ(w.bytes, kQueuedBytes) << w.Describe();
  const uint64_t queued_at_close = kQueuedBytes - sink->bytes_in.load();
  fd->Reset();  // close(): FIN, nothing unread
  ASSERT_TRUE(sink->WaitForFinished(1, 20s)) << "the upstream never got EOF\n" << proxy->StderrTail();
  ConnStats s = sink->Finished()[0];
  printf("[%s] %.1f MiB were queued in the proxy when the client closed\n", datapath().c_str(),
         queued_at_close / double(MiB));
  EXPECT_EQ(s.bytes_in, kQueuedBytes) << s.Describe();
  EXPECT_TRUE(s.eof) << s.Describe();
  EXPECT_EQ(s.first_bad, -1) << s.Describe();
  EXPECT_GE(queued_at_close, 1 * MiB) << "too little was queued for this test to mean anything";
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 8b. Same, but the client resets: the upstream gets an exact prefix and then EOF or a reset, promptly;
// the proxy lets go of everything.
TEST_P(DatapathTest, ClientResetWhileBytesQueuedTowardsSlowUpstream) {
  SinkOptions o;
  o.pacing.rate = kSlowUpstreamRate;
  auto sink = StartServer(SinkHandler(o), AF_INET, SocketOptions{128 * KiB, 0});
  ASSERT_TRUE(sink);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {sink->endpoint()}));
  auto fd = Connect(proxy->listener(), 2s, SocketOptions{0, 128 * KiB});
  ASSERT_TRUE(fd.ok()) << fd.status();
  IoResult w = SendPattern(fd->get(), NextStreamId(), 0, kQueuedBytes, DeadlineIn(30s));
  ASSERT_EQ(w.bytes, kQueuedBytes) << w.Describe();
  const uint64_t queued_at_close = kQueuedBytes - sink->bytes_in.load();
  const auto closed_at = Clock::now();
  CloseWithReset(*fd);
  ASSERT_TRUE(sink->WaitForFinished(1, 10s)) << "the upstream never saw the end\n" << proxy->StderrTail();
  ConnStats s = sink->Finished()[0];
  double after = std::chrono::duration<double>(s.ended - closed_at).count();
  printf("[%s] reset with %.1f MiB queued; upstream got %.1f MiB, ended %.2f s later (%s)\n", datapath().c_str(),
         queued_at_close / double(MiB), s.bytes_in / double(MiB), after, s.eof ? "EOF" : "error");
  EXPECT_LE(s.bytes_in, kQueuedBytes);
  EXPECT_EQ(s.first_bad, -1) << s.Describe();
  EXPECT_TRUE(s.eof || s.error) << s.Describe();
  EXPECT_LT(after, 3.0) << "the upstream connection outlived the client's reset";
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 8b'. Neither peer reads: each direction holds bytes for a destination that is full. Then the client
// resets. The upstream must see the reset promptly and the proxy let go: on the kernel path both
// directions then wait on the pipe's timer for their destination to drain, no poll on the client's socket,
// and a reset socket's send queue count (SIOCOUTQ) stays where the reset left it, so a direction that
// only asked whether its destination had drained waited for ever (seen in the reliability soak).
TEST_P(DatapathTest, ClientResetWhileNeitherPeerReads) {
  auto source = StartServer(SourceHandler({1 * GiB, 0}), AF_INET, SocketOptions{128 * KiB, 0});
  ASSERT_TRUE(source);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {source->endpoint()}));
  auto fd = Connect(proxy->listener(), 2s, SocketOptions{128 * KiB, 0});
  ASSERT_TRUE(fd.ok()) << fd.status();
  // Both directions blocked on their destination: the kernel path waits on its timer, the io_uring path
  // has a send in flight each way.
  const char* waits = datapath() == "sockmap" ? " timer" : " send";
  std::vector<uint8_t> bytes(64 * KiB, 'x');
  std::string operations;
  const bool blocked = WaitFor(
      [&] {
        while (send(fd->get(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
        }
        const ConnectionsPage page = GetConnections(proxy->admin());
        if (page.connections.size() != 1) return false;
        operations = JsonField(page.connections[0], "operations");
        const size_t u2d = operations.find("u2d:");
        return u2d != std::string::npos && operations.rfind(waits, u2d) != std::string::npos &&
               operations.find(waits, u2d) != std::string::npos;
      },
      20s, 50ms);
  ASSERT_TRUE(blocked) << "both directions never waited on their destination: " << operations;
  const auto reset_at = Clock::now();
  CloseWithReset(*fd);
  ASSERT_TRUE(source->WaitForFinished(1, 10s)) << "the upstream never learnt of the client's reset: "
                                               << proxy->InFlight();
  ConnStats s = source->Finished()[0];
  EXPECT_NE(s.error, 0) << "not a reset: " << s.Describe();
  EXPECT_LT(SecondsSince(reset_at), 3.0) << "the upstream connection outlived the client's reset";
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 8c. The reverse: the upstream sends 32 MiB and closes while the client reads at 16 MiB/s.
TEST_P(DatapathTest, UpstreamFinWhileBytesQueuedTowardsSlowClient) {
  constexpr uint64_t kBytes = 32 * MiB;
  auto source = StartServer(SourceHandler({kBytes, 0}), AF_INET, SocketOptions{0, 128 * KiB});
  ASSERT_TRUE(source);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {source->endpoint()}));
  auto fd = Connect(proxy->listener(), 2s, SocketOptions{128 * KiB, 0});
  ASSERT_TRUE(fd.ok()) << fd.status();
  PatternChecker checker;
  ReadPacing pacing;
  pacing.rate = 16.0 * MiB;
  IoResult r = ReadStream(fd->get(), &checker, DeadlineIn(30s), pacing);
  EXPECT_WHOLE_STREAM(r, checker, kBytes);
  fd->Reset();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 11. Live gauges follow open connections, and after a mix of clean closes, client resets and closes with
// unread data, the fd count, skproxy_connections_active and skproxy_sockmap_entries return to baseline.
TEST_P(DatapathTest, ResourcesReturnToBaselineAfterMixedCloses) {
  constexpr int kIdle = 10, kEach = 20;
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {echo->endpoint()}));
  std::vector<UniqueFd> idle;
  for (int i = 0; i < kIdle; i++) {
    auto fd = Connect(proxy->listener(), 2s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    ASSERT_EQ(SendAll(fd->get(), "ping", 4, DeadlineIn(2s)).bytes, 4u);
    char buf[4];
    ASSERT_EQ(RecvExact(fd->get(), buf, 4, DeadlineIn(5s)).bytes, 4u) << "no echo through the proxy";
    idle.push_back(std::move(*fd));
  }
  double active = -1, entries = -1;
  const double want_entries = datapath() == "sockmap" ? 2 * kIdle : 0;
  bool live = WaitFor(
      [&] {
        auto m = proxy->Metrics();
        if (!m.ok()) return false;
        active = SumMetric(*m, "skproxy_connections_active");
        entries = SumMetric(*m, "skproxy_sockmap_entries");
        return active == kIdle && entries == want_entries;
      },
      3s, 50ms);
  EXPECT_TRUE(live) << "with " << kIdle << " open connections: connections_active=" << active
                    << " sockmap_entries=" << entries << " (want " << want_entries << ")";
  auto fds_open = proxy->FdCount();
  ASSERT_TRUE(fds_open.ok());
  EXPECT_GE(*fds_open, baseline_fds + 2 * kIdle) << "each connection should hold two sockets";

  std::vector<std::thread> threads;
  for (int i = 0; i < kEach; i++) {
    threads.emplace_back([&] {  // a clean echo
      auto fd = Connect(proxy->listener(), 2s);
      if (fd.ok()) EchoExchange(fd->get(), NextStreamId(), 256 * KiB, DeadlineIn(20s));
    });
    threads.emplace_back([&] {  // reset mid-stream
      auto fd = Connect(proxy->listener(), 2s);
      if (!fd.ok()) return;
      SendPattern(fd->get(), NextStreamId(), 0, 1 * MiB, DeadlineIn(5s));
      CloseWithReset(*fd);
    });
    threads.emplace_back([&] {  // close with the echo unread: the kernel sends a RST
      auto fd = Connect(proxy->listener(), 2s);
      if (!fd.ok()) return;
      SendPattern(fd->get(), NextStreamId(), 0, 1 * MiB, DeadlineIn(5s));
      fd->Reset();
    });
  }
  for (auto& t : threads) t.join();
  idle.clear();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
  EXPECT_TRUE(proxy->Running()) << proxy->StderrTail();
}

INSTANTIATE_TEST_SUITE_P(Datapaths, DatapathTest, ::testing::Values("sockmap", "userspace"), DatapathParamName);

}  // namespace
}  // namespace skproxy::itest
