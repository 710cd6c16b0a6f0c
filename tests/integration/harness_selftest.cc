// Checks the harness itself without the proxy: clients talk to the upstream servers directly. If these fail,
// an integration-test failure says nothing about skproxy.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <future>
#include <random>

#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/netns.h"
#include "tests/integration/sanitizer_report.h"
#include "tests/integration/upstreams.h"

namespace skproxy::itest {
namespace {

std::vector<uint8_t> PatternBytes(uint32_t id, uint64_t offset, size_t n) {
  std::vector<uint8_t> v(n);
  FillPattern(id, offset, v.data(), n);
  return v;
}

TEST(PatternTest, FillAndCheckAgreeForAnyChunking) {
  std::mt19937 rng(1);
  const uint64_t kLen = MiB + 13;
  std::vector<uint8_t> stream(kLen);
  // Fill in random pieces at unaligned offsets: must equal a byte-by-byte definition.
  for (uint64_t off = 0; off < kLen;) {
    size_t n = std::min<uint64_t>(kLen - off, 1 + rng() % 5000);
    FillPattern(777, off, stream.data() + off, n);
    off += n;
  }
  for (uint64_t i = 0; i < kLen; i += 997) ASSERT_EQ(stream[i], PatternByte(777, i)) << i;
  for (int known = 0; known < 2; known++) {
    PatternChecker checker = known ? PatternChecker(777) : PatternChecker();
    for (uint64_t off = 0; off < kLen;) {
      size_t n = std::min<uint64_t>(kLen - off, 1 + rng() % 7000);
      checker.Feed(stream.data() + off, n);
      off += n;
    }
    EXPECT_TRUE(checker.ok()) << checker.Describe();
    EXPECT_EQ(checker.bytes(), kLen);
    EXPECT_EQ(checker.id(), 777u);
  }
}

TEST(PatternTest, ReportsTheExactOffsetOfACorruptByte) {
  std::vector<uint8_t> s = PatternBytes(5, 0, 2 * MiB);
  s[777777] ^= 0x40;
  PatternChecker checker(5);
  checker.Feed(s.data(), 1000);
  checker.Feed(s.data() + 1000, s.size() - 1000);
  EXPECT_EQ(checker.first_bad(), 777777);
  EXPECT_EQ(checker.bad_bytes(), 1u);
}

TEST(PatternTest, DetectsDuplicatedAndMissingBytes) {
  std::vector<uint8_t> head = PatternBytes(9, 0, 5100);
  std::vector<uint8_t> tail = PatternBytes(9, 5000, 100000);  // bytes 5000..5099 again
  PatternChecker dup(9);
  dup.Feed(head.data(), head.size());
  dup.Feed(tail.data(), tail.size());
  EXPECT_GE(dup.first_bad(), 5100);
  EXPECT_LT(dup.first_bad(), 5108);
  EXPECT_NE(dup.Describe().find("offset 5108 holds the bytes of offset 5008 (-100)"), std::string::npos)
      << dup.Describe();

  std::vector<uint8_t> after_gap = PatternBytes(9, 6000, 100000);  // bytes 5100..5999 missing
  PatternChecker gap;  // learns the id
  gap.Feed(head.data(), head.size());
  gap.Feed(after_gap.data(), after_gap.size());
  EXPECT_GE(gap.first_bad(), 5100);
  EXPECT_LT(gap.first_bad(), 5108);
  EXPECT_NE(gap.Describe().find("offset 5108 holds the bytes of offset 6008 (+900)"), std::string::npos)
      << gap.Describe();
}

TEST(PatternTest, HeadsDifferPerStreamAndACorruptHeadIsCaught) {
  auto a = PatternBytes(1, 0, 8), b = PatternBytes(2, 0, 8);
  EXPECT_NE(a, b);
  EXPECT_NE(a, std::vector<uint8_t>(8, 0));
  std::vector<uint8_t> s = PatternBytes(42, 0, 4096);
  s[3] ^= 0x5a;  // the "first_bad at byte 3-4" shape seen in the experiments
  PatternChecker learner;
  learner.Feed(s.data(), s.size());
  EXPECT_FALSE(learner.ok());
  EXPECT_EQ(learner.first_bad(), 0);
  PatternChecker knows(42);
  knows.Feed(s.data(), s.size());
  EXPECT_EQ(knows.first_bad(), 3);
  std::vector<uint8_t> zeros(4096, 0);
  PatternChecker zero_learner;
  zero_learner.Feed(zeros.data(), zeros.size());
  EXPECT_FALSE(zero_learner.ok());
}

TEST(MetricsTest, ScrapesOverHttp) {
  const std::string body = "skproxy_connections_active{listener=\"web\",datapath=\"userspace\"} 2\n";
  auto server = StartServer([&](int fd, ConnStats&, TcpServer& srv) {
    std::string req;
    char buf[1024];
    while (req.find("\r\n\r\n") == std::string::npos) {
      IoResult r = RecvExact(fd, buf, 1, srv.handler_deadline());
      if (r.bytes != 1) return;
      req += buf[0];
    }
    std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\n\r\n" + body;
    SendAll(fd, resp.data(), resp.size(), srv.handler_deadline());
  });
  ASSERT_TRUE(server);
  auto m = ScrapeMetrics(server->endpoint());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(SumMetric(*m, "skproxy_connections_active", {{"datapath", "userspace"}}), 2);
}

TEST(UpstreamTest, EchoExchangeIsShaExact) {
  auto server = StartServer(EchoHandler());
  ASSERT_TRUE(server);
  auto fd = Connect(server->endpoint(), 2s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EchoResult r = EchoExchange(fd->get(), NextStreamId(), 64 * MiB, DeadlineIn(30s), true);
  EXPECT_EQ(r.send.bytes, 64 * MiB) << r.Describe();
  EXPECT_EQ(r.recv.bytes, 64 * MiB) << r.Describe();
  EXPECT_TRUE(r.recv.eof) << r.Describe();
  EXPECT_EQ(r.first_bad, -1) << r.Describe();
  EXPECT_EQ(r.sha_sent, r.sha_received);
  EXPECT_EQ(r.sha_sent.size(), 64u);
  ASSERT_TRUE(server->WaitForFinished(1, 5s));
  EXPECT_TRUE(server->Finished()[0].eof);
}

TEST(UpstreamTest, SinkPacesAndVerifies) {
  SinkOptions o;
  o.pacing.rate = 16.0 * MiB;
  auto server = StartServer(SinkHandler(o), AF_INET6, SocketOptions{128 * KiB, 0});
  ASSERT_TRUE(server);
  auto fd = Connect(server->endpoint(), 2s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  auto start = Clock::now();
  IoResult w = SendPattern(fd->get(), NextStreamId(), 0, 8 * MiB, DeadlineIn(10s));
  ASSERT_EQ(w.bytes, 8 * MiB) << w.Describe();
  shutdown(fd->get(), SHUT_WR);
  ASSERT_TRUE(server->WaitForFinished(1, 10s));
  double secs = SecondsSince(start);
  ConnStats s = server->Finished()[0];
  EXPECT_EQ(s.bytes_in, 8 * MiB) << s.Describe();
  EXPECT_TRUE(s.eof && s.first_bad < 0) << s.Describe();
  EXPECT_GE(secs, 0.4);
  EXPECT_LT(secs, 1.5);
}

TEST(UpstreamTest, SinkPhasesAlternate) {
  SinkOptions o;
  o.pacing.fast_phase_bytes = 2 * MiB;
  o.pacing.slow_phase_bytes = 256 * KiB;
  o.pacing.slow_rate = 8.0 * MiB;  // 31 ms per slow phase
  auto server = StartServer(SinkHandler(o), AF_INET, SocketOptions{256 * KiB, 0});
  ASSERT_TRUE(server);
  auto fd = Connect(server->endpoint(), 2s);
  ASSERT_TRUE(fd.ok());
  auto start = Clock::now();
  IoResult w = SendPattern(fd->get(), NextStreamId(), 0, 18 * MiB, DeadlineIn(10s));
  ASSERT_EQ(w.bytes, 18 * MiB);
  shutdown(fd->get(), SHUT_WR);
  ASSERT_TRUE(server->WaitForFinished(1, 10s));
  double secs = SecondsSince(start);
  ConnStats s = server->Finished()[0];
  EXPECT_EQ(s.bytes_in, 18 * MiB);
  EXPECT_TRUE(s.eof && s.first_bad < 0) << s.Describe();
  EXPECT_GE(secs, 0.2);  // 8 slow phases of ~31 ms
}

TEST(UpstreamTest, SourceWithPacedClientReader) {
  auto server = StartServer(SourceHandler({4 * MiB, 0}), AF_INET, SocketOptions{0, 128 * KiB});
  ASSERT_TRUE(server);
  auto fd = Connect(server->endpoint(), 2s, SocketOptions{128 * KiB, 0});
  ASSERT_TRUE(fd.ok());
  PatternChecker checker;
  ReadPacing pacing;
  pacing.rate = 16.0 * MiB;
  auto start = Clock::now();
  IoResult r = ReadStream(fd->get(), &checker, DeadlineIn(10s), pacing);
  double secs = SecondsSince(start);
  EXPECT_EQ(r.bytes, 4 * MiB) << r.Describe();
  EXPECT_TRUE(r.eof);
  EXPECT_TRUE(checker.ok()) << checker.Describe();
  EXPECT_GE(secs, 0.2);
  fd->Reset();
  ASSERT_TRUE(server->WaitForFinished(1, 5s));
  EXPECT_EQ(server->Finished()[0].bytes_out, 4 * MiB);
}

TEST(UpstreamTest, KilledServerResetsTheClient) {
  auto server = StartServer(KillHandler({1 * MiB, 0, true}));
  ASSERT_TRUE(server);
  auto fd = Connect(server->endpoint(), 2s);
  ASSERT_TRUE(fd.ok());
  IoResult w = SendPattern(fd->get(), NextStreamId(), 0, 256 * MiB, DeadlineIn(10s));
  EXPECT_LT(w.bytes, 256 * MiB);
  EXPECT_TRUE(w.error == ECONNRESET || w.error == EPIPE) << w.Describe();
  CloseResult c = WaitForPeerClose(fd->get(), DeadlineIn(2s));
  EXPECT_TRUE(c.closed);
  ASSERT_TRUE(server->WaitForFinished(1, 5s));
  EXPECT_EQ(server->Finished()[0].bytes_in, 1 * MiB);
  EXPECT_EQ(server->Finished()[0].first_bad, -1);
}

TEST(UpstreamTest, ReplyAfterEofAndHalfCloseFirst) {
  ReplyAfterEofOptions ro;
  ro.reply_bytes = 4 * MiB;
  auto reply = StartServer(ReplyAfterEofHandler(ro));
  ASSERT_TRUE(reply);
  auto fd = Connect(reply->endpoint(), 2s);
  ASSERT_TRUE(fd.ok());
  uint32_t id = NextStreamId();
  ASSERT_EQ(SendPattern(fd->get(), id, 0, 3 * MiB, DeadlineIn(10s)).bytes, 3 * MiB);
  shutdown(fd->get(), SHUT_WR);
  char head[40];
  ASSERT_EQ(RecvExact(fd->get(), head, 40, DeadlineIn(10s)).bytes, 40u);
  Sha256 want;
  auto bytes = PatternBytes(id, 0, 3 * MiB);
  want.Update(bytes.data(), bytes.size());
  EXPECT_EQ(std::string(head, 32), want.FinalRaw());
  uint64_t len;
  memcpy(&len, head + 32, 8);
  EXPECT_EQ(le64toh(len), 3 * MiB);
  PatternChecker body;
  IoResult r = ReadStream(fd->get(), &body, DeadlineIn(10s));
  EXPECT_EQ(r.bytes, 4 * MiB);
  EXPECT_TRUE(r.eof && body.ok()) << body.Describe();

  auto first = StartServer(HalfCloseFirstHandler(2 * MiB));
  ASSERT_TRUE(first);
  auto fd2 = Connect(first->endpoint(), 2s);
  ASSERT_TRUE(fd2.ok());
  PatternChecker got;
  r = ReadStream(fd2->get(), &got, DeadlineIn(10s));
  EXPECT_EQ(r.bytes, 2 * MiB);
  EXPECT_TRUE(r.eof && got.ok());
  ASSERT_EQ(SendPattern(fd2->get(), NextStreamId(), 0, 5 * MiB, DeadlineIn(10s)).bytes, 5 * MiB);
  shutdown(fd2->get(), SHUT_WR);
  ASSERT_TRUE(first->WaitForFinished(1, 10s));
  ConnStats s = first->Finished()[0];
  EXPECT_EQ(s.bytes_in, 5 * MiB);
  EXPECT_TRUE(s.eof && s.first_bad < 0) << s.Describe();
}

TEST(UpstreamTest, RefusedEndpointRefuses) {
  SocketAddress ep = RefusedEndpoint(AF_INET6);
  ASSERT_NE(ep.port(), 0);
  EXPECT_TRUE(PortIsFree(ep));
  auto fd = Connect(ep, 2s);
  ASSERT_FALSE(fd.ok());
  EXPECT_NE(std::string(fd.status().message()).find("refused"), std::string::npos) << fd.status();
}

// The mechanism the "slow connect" and "connect timeout" tests rely on: with the accept queue full the
// kernel drops SYNs, so a connect stays in SYN-SENT until the queue has room (SYN retransmitted after ~1 s).
TEST(UpstreamTest, FullAcceptQueueDelaysConnect) {
  auto server = StartServer(EchoHandler(), AF_INET, {}, /*hold_accepts=*/true, /*backlog=*/0);
  ASSERT_TRUE(server);
  auto filler = Connect(server->endpoint(), 2s);
  ASSERT_TRUE(filler.ok()) << filler.status();
  auto refused = Connect(server->endpoint(), 300ms);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDeadlineExceeded) << refused.status();
  auto pending = std::async(std::launch::async, [&] { return Connect(server->endpoint(), 5s); });
  EXPECT_TRUE(WaitFor([&] { return HasSynSentTo(server->endpoint().port()); }, 2s));
  auto start = Clock::now();
  server->ReleaseAccepts();
  filler->Reset();
  auto late = pending.get();
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_LT(SecondsSince(start), 4.0);
  EchoResult r = EchoExchange(late->get(), NextStreamId(), 1 * MiB, DeadlineIn(5s));
  EXPECT_EQ(r.recv.bytes, 1 * MiB) << r.Describe();
}

TEST(HarnessTest, RunCommandReportsOutputAndStatus) {
  CommandResult r = RunCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, 5s);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  CommandResult slow = RunCommand({"/bin/sleep", "10"}, 200ms);
  EXPECT_TRUE(slow.timed_out);
}

TEST(HarnessTest, SanitizerReportsAreFound) {
  EXPECT_EQ(FindSanitizerReport("skproxy ready: datapath=userspace\nskproxy: drained\n"), std::nullopt);
  auto asan = FindSanitizerReport("skproxy ready\n==42==ERROR: AddressSanitizer: heap-use-after-free on address\n");
  ASSERT_TRUE(asan.has_value());
  EXPECT_EQ(asan->rfind("==42==ERROR: AddressSanitizer", 0), 0u) << *asan;
  EXPECT_TRUE(FindSanitizerReport("==7==ERROR: LeakSanitizer: detected memory leaks\n").has_value());
  EXPECT_TRUE(FindSanitizerReport("proxy/ring.cc:12:5: runtime error: signed integer overflow\n").has_value());
  // A command run by a test that reports a finding fails the test even though it exits 0.
  EXPECT_NONFATAL_FAILURE(
      RunCommand({"/bin/sh", "-c", "echo '==1==ERROR: AddressSanitizer: heap-buffer-overflow' >&2"}, 5s),
      "sanitizer report from /bin/sh");
}

class FakeBinary {
 public:
  explicit FakeBinary(const std::string& script) {
    char tmpl[] = "/tmp/skproxy-fake-XXXXXX";
    int fd = mkstemp(tmpl);
    path_ = tmpl;
    std::string text = "#!/bin/sh\n" + script + "\n";
    EXPECT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    close(fd);
    chmod(path_.c_str(), 0755);
    const char* old = getenv("SKPROXY_BINARY");
    if (old) old_ = old;
    setenv("SKPROXY_BINARY", path_.c_str(), 1);
  }
  ~FakeBinary() {
    unlink(path_.c_str());
    if (old_) setenv("SKPROXY_BINARY", old_->c_str(), 1);
    else unsetenv("SKPROXY_BINARY");
  }

 private:
  std::string path_;
  std::optional<std::string> old_;
};

TEST(HarnessTest, ProxyProcessLifecycleWithAFakeBinary) {
  {
    FakeBinary fake("echo \"args: $*\" >&2; echo 'skproxy ready: datapath=userspace' >&2; exec sleep 60");
    auto p = ProxyProcess::Start(SimpleProxyConfig("userspace", {Loopback4(1)}));
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ((*p)->ReadyLine(), "skproxy ready: datapath=userspace");
    EXPECT_NE((*p)->Stderr().find("--config /tmp/skproxy-itest-"), std::string::npos) << (*p)->Stderr();
    EXPECT_NE((*p)->Stderr().find("--datapath userspace"), std::string::npos);
    EXPECT_NE((*p)->listener().port(), 0);
    auto fds = (*p)->FdCount();
    ASSERT_TRUE(fds.ok());
    EXPECT_GE(*fds, 3);
    EXPECT_TRUE((*p)->Running());
    auto st = (*p)->Stop(5s);
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_EQ(*st, 128 + SIGTERM);
  }
  {
    // LeakSanitizer's report when the proxy exits: the test fails whatever it expected of the exit status.
    FakeBinary fake("trap 'kill $!; echo \"==9==ERROR: LeakSanitizer: detected memory leaks\" >&2; exit 0' TERM; "
                    "echo 'skproxy ready: datapath=userspace' >&2; sleep 60 >/dev/null 2>&1 & wait");
    auto p = ProxyProcess::Start(SimpleProxyConfig("userspace", {Loopback4(1)}));
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_NONFATAL_FAILURE(p->reset(), "sanitizer report from skproxy");
  }
  {
    FakeBinary fake("echo 'skproxy: cannot load BPF object: Operation not permitted' >&2; exit 1");
    auto p = ProxyProcess::Start(SimpleProxyConfig("sockmap", {Loopback4(1)}));
    ASSERT_FALSE(p.ok());
    EXPECT_TRUE(ProxyProcess::IsBpfUnavailable(p.status())) << p.status();
  }
  {
    FakeBinary fake("echo 'something else' >&2; exit 1");
    auto p = ProxyProcess::Start(SimpleProxyConfig("sockmap", {Loopback4(1)}));
    ASSERT_FALSE(p.ok());
    EXPECT_FALSE(ProxyProcess::IsBpfUnavailable(p.status())) << p.status();
  }
  {
    FakeBinary fake("exec sleep 60");
    auto p = ProxyProcess::Start(SimpleProxyConfig("userspace", {Loopback4(1)}), 300ms);
    ASSERT_FALSE(p.ok());
    EXPECT_NE(std::string(p.status().message()).find("not ready"), std::string::npos) << p.status();
  }
}

TEST(HarnessTest, ConfigYamlHasTheSchemaShape) {
  ProxyConfig c = SimpleProxyConfig("sockmap", {Loopback4(8080), Loopback6(8081)}, AF_INET6, "1s");
  c.admin = Loopback4(9901);
  c.listeners[0].address.set_port(10000);
  c.gate_limit = "1MiB";
  c.receive_buffer = "512KiB";
  EXPECT_EQ(c.ToYaml(),
            "admin: { address: \"127.0.0.1:9901\" }\n"
            "datapath: sockmap\n"
            "workers: 0\n"
            "sockmap:\n"
            "  gate_limit: 1MiB\n"
            "  receive_buffer: 512KiB\n"
            "listeners:\n"
            "  - name: web\n"
            "    address: \"[::1]:10000\"\n"
            "    cluster: backend\n"
            "clusters:\n"
            "  - name: backend\n"
            "    connect_timeout: 1s\n"
            "    endpoints: [\"127.0.0.1:8080\", \"[::1]:8081\"]\n");
}

TEST(HarnessTest, MemAvailableIsReadable) {
  EXPECT_GT(MemAvailableBytes(), 0u);
  MemAvailableSampler sampler;
  EXPECT_GT(sampler.baseline(), 0u);
}

// Inside the namespace: a direct client -> sink stream with 1% of the sink's incoming segments dropped.
void LossyTransfer() {
  auto server = StartServer(SinkHandler());
  ASSERT_TRUE(server);
  absl::Status loss = InstallTcpLoss({"dport " + std::to_string(server->endpoint().port())}, 1);
  if (!loss.ok()) GTEST_SKIP() << loss;  // returns from this helper; the test is marked skipped
  uint64_t retrans_before = TcpRetransSegs();
  auto fd = Connect(server->endpoint(), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  IoResult w = SendPattern(fd->get(), NextStreamId(), 0, 256 * MiB, DeadlineIn(60s));
  ASSERT_EQ(w.bytes, 256 * MiB) << w.Describe();
  shutdown(fd->get(), SHUT_WR);
  ASSERT_TRUE(server->WaitForFinished(1, 30s));
  ConnStats s = server->Finished()[0];
  EXPECT_EQ(s.bytes_in, 256 * MiB);
  EXPECT_TRUE(s.eof && s.first_bad < 0) << s.Describe();
  uint64_t retrans = TcpRetransSegs() - retrans_before;
  uint64_t drops = NftDroppedPackets();
  EXPECT_GT(drops, 0u);
  EXPECT_GT(retrans, 0u);
  printf("[netns] 256 MiB with 1%% loss: %llu segments dropped, %llu retransmitted\n",
         static_cast<unsigned long long>(drops), static_cast<unsigned long long>(retrans));
}


ino_t OwnNetnsInode() {
  struct stat st {};
  stat("/proc/thread-self/ns/net", &st);
  return st.st_ino;
}

TEST(NetnsTest, NftLossForcesRetransmissionsInAPrivateNamespace) {
  if (FindExecutable("nft").empty()) GTEST_SKIP() << "nft (package nftables) is not installed";
  const ino_t outside = OwnNetnsInode();
  {
    auto ns = ScopedNetns::Enter();
    if (!ns.ok()) GTEST_SKIP() << ns.status();
    EXPECT_NE(OwnNetnsInode(), outside);
    LossyTransfer();
  }
  EXPECT_EQ(OwnNetnsInode(), outside) << "the test thread did not return to its network namespace";
}

}  // namespace
}  // namespace skproxy::itest
