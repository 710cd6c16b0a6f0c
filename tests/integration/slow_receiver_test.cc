// A slow receiver in each direction: 64 MiB read at 5 MiB/s must complete byte-exact in under twice the
// ideal time, while the bytes held between the sender and the receiver, and the memory the system loses,
// stay bounded. On the kernel path an ungated sockmap redirect fails this: the sender writes everything
// into the psock backlog at once (measured: 512 MiB queued, MemAvailable -460 MiB).
#include <stdlib.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
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

constexpr uint64_t kBytes = 64 * MiB;
constexpr double kRate = 5.0 * MiB;                    // bytes/s
constexpr double kIdealSeconds = kBytes / kRate;        // 12.8 s
constexpr double kMaxSeconds = 2 * kIdealSeconds;
// Bytes accepted from the sender but not yet read by the receiver, at most: the exact measure of what the
// proxy lets pile up, immune to other processes on the machine.
// The kernel path: the product's bound per direction (README): gate_limit (8 MiB: the upstream leg's write
// queue plus the psock backlog) + the receive buffer passed bytes wait in (1 MiB) + the copy buffer
// (1 MiB), ~10 MiB; add the test's own send and receive buffers (128 KiB asked each) and one 64 KiB skb past
// the limit: measured 9.2-9.7 MiB.
constexpr uint64_t kMaxHeldBytesKernelPath = 12 * MiB;
// The user-space path sets no socket buffer (as HAProxy and nginx by default), so what piles up is what the
// kernel's autotuning allows its two sockets: the slow direction's source stops being read and its receive
// buffer may grow to tcp_rmem's maximum, and the destination's send buffer to tcp_wmem's. Measured 5.1 to
// 8.2 MiB, and once 12.6 MiB (a fresh-clone CI run: the client leg's receive buffer had grown to 8 MiB,
// 7.8 MB of it unread). Plus a few 64 KiB pool buffers and the test's own buffers: 1 MiB.
// An unreadable setting counts as 0, which leaves only the 1 MiB and fails the test loudly.
uint64_t SysctlMaximum(const std::string& name) {
  const absl::StatusOr<std::array<uint64_t, 3>> values = ReadSysctlTriple("net/ipv4/" + name);
  return values.ok() ? (*values)[2] : 0;
}
uint64_t MaxHeldBytes(const std::string& datapath) {
  if (datapath == "sockmap") return kMaxHeldBytesKernelPath;
  return SysctlMaximum("tcp_rmem") + SysctlMaximum("tcp_wmem") + 1 * MiB;
}
// The proxy's resident memory may not grow by more than this during a transfer. Measured: the user-space
// path touches a 64 MiB buffer pool of the worker that takes the connection (+63.8 MiB here, and no more
// over further connections on that worker); the kernel path +0.3 MiB.
constexpr uint64_t kMaxProxyRssGrowth = 96 * MiB;
// MemAvailable may not fall further than this during a transfer. Skbs queued in a psock backlog are charged
// to no socket and no cgroup, so MemAvailable is the only outside view of them; but it is system-wide, and on
// a shared machine other processes move it by gigabytes (seen: -1.6 to -3.0 GB during transfers holding
// 6-10 MiB). So it is asserted only with SKPROXY_STRICT_MEMORY=1 (a quiet machine) and printed otherwise;
// the held-bytes bound above catches the same fault exactly, through the sender running ahead.
constexpr int64_t kMaxMemAvailableDrop = 64 * MiB;

class SlowReceiverTest : public ::testing::TestWithParam<std::string> {
 protected:
  const std::string& datapath() const { return GetParam(); }
};

// Samples, every 5 ms: sender progress minus receiver progress (held bytes), and the proxy's RSS. The first
// time the held bytes pass `limit` it takes the proxy's InFlight (where the bytes are), for the failure.
class TransferMonitor {
 public:
  TransferMonitor(const std::atomic<uint64_t>& sent, const std::atomic<uint64_t>& received, const ProxyProcess& proxy,
                  uint64_t limit)
      : sent_(sent), received_(received), proxy_(proxy.pid()), limit_(limit), rss_base_(ProcessRssBytes(proxy_)),
        rss_max_(rss_base_), thread_([this, &proxy] {
          while (!stop_) {
            uint64_t r = received_.load(), s = sent_.load();
            if (s > r) held_max_ = std::max<uint64_t>(held_max_, s - r);
            if (s > r && s - r >= limit_ && over_limit_.empty())
              over_limit_ = absl::StrCat("held ", s - r, " bytes: ", proxy.InFlight());
            rss_max_ = std::max<uint64_t>(rss_max_, ProcessRssBytes(proxy_));
            std::this_thread::sleep_for(5ms);  // sampling period
          }
        }) {}
  ~TransferMonitor() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t held_max() const { return held_max_; }
  uint64_t limit() const { return limit_; }
  // Call after Stop().
  const std::string& over_limit() const { return over_limit_; }
  uint64_t rss_growth() const { return rss_max_ - rss_base_; }

 private:
  const std::atomic<uint64_t>& sent_;
  const std::atomic<uint64_t>& received_;
  const pid_t proxy_;
  const uint64_t limit_;
  const uint64_t rss_base_;
  std::atomic<uint64_t> rss_max_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> held_max_{0};
  std::string over_limit_;  // the monitor thread's until Stop()
  std::thread thread_;
};

bool StrictMemory() {
  const char* strict = getenv("SKPROXY_STRICT_MEMORY");
  return strict && std::string(strict) == "1";
}

void CheckBounds(const std::string& what, double secs, const TransferMonitor& mon, const MemAvailableSampler& mem) {
  printf("%s: %.2f s (ideal %.1f, limit %.1f), max held %.1f MiB (limit %.0f), proxy RSS +%.1f MiB (limit %.0f), "
         "MemAvailable drop %.1f MiB (limit %.0f%s)\n",
         what.c_str(), secs, kIdealSeconds, kMaxSeconds, mon.held_max() / double(MiB), mon.limit() / double(MiB),
         mon.rss_growth() / double(MiB), kMaxProxyRssGrowth / double(MiB), mem.max_drop() / double(MiB),
         kMaxMemAvailableDrop / double(MiB), StrictMemory() ? "" : ", not asserted: set SKPROXY_STRICT_MEMORY=1");
  EXPECT_LT(secs, kMaxSeconds);
  EXPECT_LT(mon.held_max(), mon.limit()) << "the proxy let the sender run ahead of the slow reader\n"
                                           << mon.over_limit();
  EXPECT_LT(mon.rss_growth(), kMaxProxyRssGrowth);
  if (StrictMemory()) {
    EXPECT_LT(mem.max_drop(), kMaxMemAvailableDrop);
  }
}

// 7a. The upstream reads at 5 MiB/s.
TEST_P(SlowReceiverTest, SlowUpstreamReaderBoundsMemoryAndCompletes) {
  SinkOptions o;
  o.pacing.rate = kRate;
  auto sink = StartServer(SinkHandler(o), AF_INET, SocketOptions{128 * KiB, 0});
  ASSERT_TRUE(sink);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {sink->endpoint()}));
  auto fd = Connect(proxy->listener(), 2s, SocketOptions{0, 128 * KiB});
  ASSERT_TRUE(fd.ok()) << fd.status();
  std::atomic<uint64_t> sent{0};
  MemAvailableSampler mem;
  TransferMonitor mon(sent, sink->bytes_in, *proxy, MaxHeldBytes(datapath()));
  auto start = Clock::now();
  IoResult w = SendPattern(fd->get(), NextStreamId(), 0, kBytes, DeadlineIn(60s), 0, &sent);
  ASSERT_EQ(w.bytes, kBytes) << w.Describe();
  shutdown(fd->get(), SHUT_WR);
  bool done = sink->WaitForFinished(1, Millis(static_cast<int64_t>((kMaxSeconds + 5) * 1000)));
  double secs = SecondsSince(start);
  mon.Stop();
  ASSERT_TRUE(done) << "the upstream did not finish\n" << proxy->StderrTail();
  ConnStats s = sink->Finished()[0];
  EXPECT_EQ(s.bytes_in, kBytes) << s.Describe();
  EXPECT_TRUE(s.eof && s.first_bad < 0) << s.Describe();
  CheckBounds("[" + datapath() + "] slow upstream", secs, mon, mem);
  fd->Reset();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// 7b. The upstream sends as fast as it can; the client reads at 5 MiB/s.
TEST_P(SlowReceiverTest, SlowClientReaderBoundsMemoryAndCompletes) {
  auto source = StartServer(SourceHandler({kBytes, 0}), AF_INET, SocketOptions{0, 128 * KiB});
  ASSERT_TRUE(source);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig(datapath(), {source->endpoint()}));
  // The source starts sending on accept: measure from before the connect.
  std::atomic<uint64_t> received{0};
  MemAvailableSampler mem;
  TransferMonitor mon(source->bytes_out, received, *proxy, MaxHeldBytes(datapath()));
  auto start = Clock::now();
  auto fd = Connect(proxy->listener(), 2s, SocketOptions{128 * KiB, 0});
  ASSERT_TRUE(fd.ok()) << fd.status();
  PatternChecker checker;
  ReadPacing pacing;
  pacing.rate = kRate;
  IoResult r = ReadStream(fd->get(), &checker, DeadlineIn(Millis(static_cast<int64_t>((kMaxSeconds + 5) * 1000))),
                          pacing, &received);
  double secs = SecondsSince(start);
  mon.Stop();
  EXPECT_WHOLE_STREAM(r, checker, kBytes);
  CheckBounds("[" + datapath() + "] slow client", secs, mon, mem);
  fd->Reset();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

INSTANTIATE_TEST_SUITE_P(Datapaths, SlowReceiverTest, ::testing::Values("sockmap", "userspace"), DatapathParamName);

}  // namespace
}  // namespace skproxy::itest
