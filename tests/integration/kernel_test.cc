// Kernel data path only (--datapath sockmap): the bytes really go through the BPF redirect, the gate
// switches between kernel and user mode many times without losing or duplicating a byte, and forced TCP
// retransmissions (which the notes show can duplicate bytes in a verdict-only sockmap) leave every byte exact.
#include <sys/socket.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/netns.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"

namespace skproxy::itest {
namespace {

// One bulk stream through a listener: forward = client -> sink upstream (checked by the sink),
// reverse = source upstream -> client (checked here).
struct TransferSpec {
  SocketAddress listener;
  bool forward = true;
  uint64_t bytes = 0;
  ReadPacing pacing;  // the client's reading pace on reverse transfers
  double send_rate = 0;  // the client's sending pace on forward transfers, bytes/s (0 = as fast as it can)
};
struct TransferResult {
  bool ok = false;
  std::string error;
};

// Runs `specs` on `parallel` threads. Transfers not started before `budget` passes are reported as failed,
// so a slow proxy fails the test instead of running past ctest's timeout.
std::vector<TransferResult> RunTransfers(const std::vector<TransferSpec>& specs, int parallel, Millis budget) {
  std::vector<TransferResult> results(specs.size());
  std::atomic<size_t> next{0};
  const Deadline deadline = DeadlineIn(budget);
  std::vector<std::thread> threads;
  for (int t = 0; t < parallel; t++) {
    threads.emplace_back([&] {
      for (size_t i = next++; i < specs.size(); i = next++) {
        const TransferSpec& spec = specs[i];
        TransferResult& res = results[i];
        if (Clock::now() >= deadline) {
          res.error = "not started: time budget used up";
          continue;
        }
        auto fd = Connect(spec.listener, 5s);
        if (!fd.ok()) {
          res.error = std::string(fd.status().message());
          continue;
        }
        if (spec.forward) {
          IoResult w = SendPattern(fd->get(), NextStreamId(), 0, spec.bytes, deadline, spec.send_rate);
          shutdown(fd->get(), SHUT_WR);
          CloseResult c = WaitForPeerClose(fd->get(), deadline);
          res.ok = w.bytes == spec.bytes && c.closed;
          if (!res.ok) res.error = absl::StrCat("send: ", w.Describe(), c.closed ? "" : "; never closed");
        } else {
          PatternChecker checker;
          IoResult r = ReadStream(fd->get(), &checker, deadline, spec.pacing);
          res.ok = r.bytes == spec.bytes && r.eof && checker.ok();
          if (!res.ok) res.error = absl::StrCat("receive: ", r.Describe(), "; ", checker.Describe());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return results;
}

// Checks every forward transfer at its sink: `count` connections of `bytes` each, exact, ended by EOF.
void ExpectSinkExact(TcpServer& sink, size_t count, uint64_t bytes, const std::string& what) {
  ASSERT_TRUE(sink.WaitForFinished(count, 30s)) << what << ": " << sink.finished() << " of " << count << " finished";
  int bad = 0;
  for (const ConnStats& s : sink.Finished()) {
    bool ok = s.bytes_in == bytes && s.eof && s.first_bad < 0;
    if (!ok && ++bad <= 5) ADD_FAILURE() << what << " " << s.Describe();
  }
  EXPECT_EQ(bad, 0) << what << ": transfers with wrong bytes, of " << count;
}

void ExpectTransfersOk(const std::vector<TransferResult>& results, const std::string& what) {
  int bad = 0;
  for (size_t i = 0; i < results.size(); i++)
    if (!results[i].ok && ++bad <= 5) ADD_FAILURE() << what << " transfer " << i << ": " << results[i].error;
  EXPECT_EQ(bad, 0) << what << ": failed transfers out of " << results.size();
}

void PrintPathStats(const std::string& what, const ProxyProcess& proxy) {
  auto m = proxy.Metrics();
  if (!m.ok()) return;
  ByteCounters c = ReadByteCounters(*m);
  printf("%s: %s; gate switches d2u=%.0f u2d=%.0f; fallbacks=%.0f; trimmed=%.0f bytes\n", what.c_str(),
         c.Describe().c_str(),
         SumMetric(*m, "skproxy_gate_switches_total", {{"direction", "downstream_to_upstream"}}),
         SumMetric(*m, "skproxy_gate_switches_total", {{"direction", "upstream_to_downstream"}}),
         SumMetric(*m, "skproxy_fallbacks_total"), SumMetric(*m, "skproxy_trimmed_bytes_total"));
}

// 12. Nearly every byte must go through the BPF redirect: if the kernel path silently stopped working and
// user space carried everything, the bytes would still arrive, and only this fails. The senders are paced
// below what one psock's backlog worker moves on this 2-core machine (~750 MB/s measured), so the gate has
// no reason to hand over; unpaced bulk is the benchmark's business (bench/run.sh prints the kernel share).
TEST(KernelPathTest, BulkTransferStaysOnKernelPath) {
  constexpr uint64_t kForward = 1 * GiB, kReverse = 512 * MiB;
  constexpr double kRate = 400e6;
  // One gate episode (a reader descheduled for a moment on 2 busy cores) moves about 1% to user space; a
  // kernel path that stopped redirecting moves everything.
  constexpr double kMinKernelShare = 0.97;
  auto sink = StartServer(SinkHandler());
  auto source = StartServer(SourceHandler({kReverse, kRate}));
  ASSERT_TRUE(sink && source);
  ProxyConfig c;
  c.datapath = "sockmap";
  c.listeners = {{"fwd", Loopback4(0), "sink"}, {"rev", Loopback4(0), "source"}};
  c.clusters = {{"sink", "2s", {sink->endpoint()}}, {"source", "2s", {source->endpoint()}}};
  SKPROXY_START(proxy, baseline_fds, c);
  EXPECT_NE(proxy->ReadyLine().find("datapath=sockmap"), std::string::npos) << proxy->ReadyLine();
  auto start = Clock::now();
  auto results = RunTransfers(
      {{proxy->listener(0), true, kForward, {}, kRate}, {proxy->listener(1), false, kReverse, {}}}, 2, 120s);
  printf("[sockmap] 1 GiB + 512 MiB in %.2f s\n", SecondsSince(start));
  ExpectTransfersOk(results, "bulk");
  ExpectSinkExact(*sink, 1, kForward, "bulk forward");
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
  auto m = proxy->Metrics();
  ASSERT_TRUE(m.ok()) << m.status();
  ByteCounters b = ReadByteCounters(*m);
  PrintPathStats("[sockmap] bulk", *proxy);
  ASSERT_GT(b.d2u(), 0);
  ASSERT_GT(b.u2d(), 0);
  EXPECT_GE(b.kernel_d2u / b.d2u(), kMinKernelShare) << b.Describe();
  EXPECT_GE(b.kernel_u2d / b.u2d(), kMinKernelShare) << b.Describe();
  EXPECT_EQ(SumMetric(*m, "skproxy_connections_total", {{"datapath", "sockmap"}}), 2);
}

// 9. Gate soak: 100 transfers of 256 MiB (alternating directions, 3 at a time) whose reader alternates
// 8 MiB fast and 512 KiB at 32 MiB/s; with gate_limit 1 MiB each slow phase pushes the direction into
// user mode and each fast phase lets it return. Every byte is checked.
TEST(KernelSoakTest, GateSwitchingSoak) {
  constexpr int kTransfers = 100, kParallel = 3;
  constexpr uint64_t kBytes = 256 * MiB;
  constexpr double kMinSwitches = 100;
  ReadPacing phased;
  phased.fast_phase_bytes = 8 * MiB;
  phased.slow_phase_bytes = 512 * KiB;
  phased.slow_rate = 32.0 * MiB;
  SinkOptions so;
  so.pacing = phased;
  auto sink = StartServer(SinkHandler(so), AF_INET, SocketOptions{256 * KiB, 0});
  auto source = StartServer(SourceHandler({kBytes, 0}), AF_INET, SocketOptions{0, 256 * KiB});
  ASSERT_TRUE(sink && source);
  ProxyConfig c;
  c.datapath = "sockmap";
  c.gate_limit = "1MiB";
  c.receive_buffer = "512KiB";
  c.listeners = {{"fwd", Loopback4(0), "sink"}, {"rev", Loopback4(0), "source"}};
  c.clusters = {{"sink", "2s", {sink->endpoint()}}, {"source", "2s", {source->endpoint()}}};
  SKPROXY_START(proxy, baseline_fds, c);

  std::vector<TransferSpec> specs;
  for (int i = 0; i < kTransfers; i++) {
    bool forward = i % 2 == 0;
    specs.push_back({proxy->listener(forward ? 0 : 1), forward, kBytes, phased});
  }
  auto start = Clock::now();
  auto results = RunTransfers(specs, kParallel, 150s);
  double secs = SecondsSince(start);
  ExpectTransfersOk(results, "soak");
  ExpectSinkExact(*sink, kTransfers / 2, kBytes, "soak forward");
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
  double switches = proxy->Metric("skproxy_gate_switches_total");
  printf("[sockmap] soak: %d x 256 MiB in %.1f s (%.0f MB/s), %.0f gate switches\n", kTransfers, secs,
         kTransfers * kBytes / secs / 1e6, switches);
  PrintPathStats("[sockmap] soak", *proxy);
  EXPECT_GE(switches, kMinSwitches) << "the soak did not make the gate switch";
  // User space watched no POLLIN while the verdict redirected: every switch to user mode after an idle
  // spell reached it as a notice, none was lost, and no trim fell short.
  EXPECT_GT(proxy->Metric("skproxy_verdict_events_total", {{"event", "notice"}}), 0);
  EXPECT_EQ(proxy->Metric("skproxy_verdict_events_total", {{"event", "notice_lost"}}), 0);
  EXPECT_EQ(proxy->Metric("skproxy_verdict_events_total", {{"event", "trim_short"}}), 0);
  EXPECT_EQ(proxy->Metric("skproxy_pipe_errors_total"), 0);
}

// 10. Forced retransmissions: in a private network namespace, nftables drops 1% of the segments arriving
// at the proxy from the client and from the upstream source, so both legs receive retransmissions that
// can overlap bytes already received. >= 4 GiB in total must arrive exact.
TEST(KernelRetransmitTest, ForcedRetransmissionsByteExact) {
  constexpr uint64_t kForwardBytes = 768 * MiB, kReverseBytes = 512 * MiB;
  constexpr int kForward = 4, kReverse = 2;  // 4 x 768 MiB + 2 x 512 MiB = 4 GiB
  constexpr double kPacedRate = 200e6;
  if (FindExecutable("nft").empty()) GTEST_SKIP() << "nft (package nftables) is not installed";
  auto ns = ScopedNetns::Enter();
  if (!ns.ok()) GTEST_SKIP() << "cannot create a network namespace: " << ns.status();
  {
    ReadPacing phased;
    phased.fast_phase_bytes = 16 * MiB;
    phased.slow_phase_bytes = 1 * MiB;
    phased.slow_rate = 64.0 * MiB;
    SinkOptions so;
    so.pacing = phased;
    auto fast_sink = StartServer(SinkHandler());
    auto phased_sink = StartServer(SinkHandler(so), AF_INET, SocketOptions{512 * KiB, 0});
    auto source = StartServer(SourceHandler({kReverseBytes, 0}));
    ASSERT_TRUE(fast_sink && phased_sink && source);
    ProxyConfig c;
    c.datapath = "sockmap";
    // The setting that duplicated bytes in the experiments (limit 4 MiB, A's receive buffer 2 MiB).
    c.gate_limit = "4MiB";
    c.receive_buffer = "2MiB";
    c.listeners = {{"fast", Loopback4(0), "fast"}, {"phased", Loopback4(0), "phased"}, {"rev", Loopback4(0), "source"}};
    c.clusters = {{"fast", "2s", {fast_sink->endpoint()}},
                  {"phased", "2s", {phased_sink->endpoint()}},
                  {"source", "2s", {source->endpoint()}}};
    SKPROXY_START(proxy, baseline_fds, c);
    absl::Status loss = InstallTcpLoss({absl::StrCat("dport ", proxy->listener(0).port()),
                                        absl::StrCat("dport ", proxy->listener(1).port()),
                                        absl::StrCat("sport ", source->endpoint().port())},
                                       1);
    if (!loss.ok()) GTEST_SKIP() << loss;
    const uint64_t retrans_before = TcpRetransSegs();

    std::vector<TransferSpec> specs;
    // Streams to the fast reader are paced so the gate keeps them on the kernel path: the trim and the
    // redirect must be exact under loss, not only the user-space copy.
    for (int i = 0; i < kForward; i++)
      specs.push_back({proxy->listener(i % 2), true, kForwardBytes, {}, i % 2 == 0 ? kPacedRate : 0});
    for (int i = 0; i < kReverse; i++) specs.push_back({proxy->listener(2), false, kReverseBytes, i ? phased : ReadPacing{}});
    auto start = Clock::now();
    auto results = RunTransfers(specs, kForward + kReverse, 150s);
    double secs = SecondsSince(start);
    ExpectTransfersOk(results, "lossy");
    ExpectSinkExact(*fast_sink, kForward / 2, kForwardBytes, "lossy forward (fast reader)");
    ExpectSinkExact(*phased_sink, kForward / 2, kForwardBytes, "lossy forward (phased reader)");
    const uint64_t retrans = TcpRetransSegs() - retrans_before;
    const uint64_t drops = NftDroppedPackets();
    printf("[sockmap] 4 GiB with 1%% loss in %.1f s: %llu segments dropped, %llu retransmitted\n", secs,
           static_cast<unsigned long long>(drops), static_cast<unsigned long long>(retrans));
    PrintPathStats("[sockmap] lossy", *proxy);
    EXPECT_GT(retrans, 0u) << "no retransmissions: the test proved nothing";
    auto m = proxy->Metrics();
    ASSERT_TRUE(m.ok()) << m.status();
    ByteCounters b = ReadByteCounters(*m);
    // The paced streams are half of the forward bytes. How much of them stays on the redirect depends on the
    // CPU the other four streams leave the psock worker (0.4-1.5 GB measured, the low end with another
    // process spinning on one core); at least 256 MiB of lossy bytes must have taken it, so the trim and the
    // redirect are what is being checked, not only the user-space copy.
    EXPECT_GE(b.kernel_d2u, 256.0 * MiB) << "the lossy bytes went through user space: " << b.Describe();
    EXPECT_PROXY_IDLE(proxy, baseline_fds);
    // The proxy, servers and sockets go before the namespace is left (end of this scope).
  }
}

}  // namespace
}  // namespace skproxy::itest
