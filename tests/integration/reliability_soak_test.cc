// The reliability soak, through the built binary, on each data path: 1,000 connections open at once, then
// 1,000 client threads churning connections until more than 10 GiB have crossed the proxy, while an
// upstream process is killed (SIGKILL) with 100 bulk streams open on it, three times, and clients reset
// one connection in six part-way. It checks that
//  - every completed stream is byte-exact both ways: the upstream checks the counter pattern of what it
//    read, the client checks the echo at every offset, and both saw the whole length and a FIN;
//  - every broken stream ends in a reset on the other side, never a FIN after a truncated stream: a client
//    whose upstream was killed gets ECONNRESET (or EPIPE), an upstream whose client reset gets an error,
//    and the bytes either saw before are an exact prefix;
//  - afterwards the proxy's descriptors and sockhash entries are back to their baseline at start, nothing
//    is left open upstream, and its RSS outside the workers' buffer pools is back within kRssTolerance of
//    what it was after the first 1,000 connections (glibc keeps freed heap for reuse, so the start is not
//    the baseline for memory; a leak per connection grows with the thousands that follow). The pools
//    (proxy/buffer_pool_size.h, 64 MiB per worker) are a fixed bound, not a cost per connection, and
//    become resident as traffic cycles through them: the io_uring path's buffer ring hands its buffers
//    out in turn, so a worker's first 64 MiB through it touch every one. On the kernel path that happens
//    during the churn rather than before the warm level (the connections whose client half-closed before
//    the insertion run on the io_uring path, counted as insert_eopnotsupp fallbacks), so the pools' pages
//    are counted apart, exactly, from /proc/PID/pagemap.
// It runs in a network namespace of its own, with socket buffer limits of its own (kTcpRmem, kTcpWmem), so
// that it stays below the kernel's TCP memory pressure: see kTcpRmem.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <array>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proxy/buffer_pool_size.h"
#include "tests/integration/harness.h"
#include "tests/integration/netns.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstream_process.h"
#include "tests/integration/upstreams.h"
#include "tests/kernel_support.h"

namespace skproxy::itest {
namespace {

constexpr int kSlots = 1000;           // client threads; each has one connection open at a time
constexpr int kDoomedSlots = 100;      // of them, the ones whose connections go to the upstream process
constexpr int kKills = 3;              // times that process is killed with every doomed connection open
constexpr uint64_t kSoakBytes = 10 * GiB;  // verified bytes through the proxy, both directions together
constexpr uint64_t kFirstBytes = 2 * MiB;  // each connection of the all-at-once phase
constexpr uint64_t kEchoedBeforeKill = 1 * MiB;  // each doomed connection has echoed this when it is killed
constexpr int kResetEvery = 6;         // one churn connection in six is reset by its client part-way
constexpr uint64_t kRssTolerance = 64 * MiB;
constexpr uint64_t kEndless = 1ull << 40;  // a stream that ends only when it is cut
// The soak's namespace's socket buffer limits (net.ipv4.tcp_rmem and tcp_wmem are per namespace). With
// this machine's own (receive buffers autotuned up to 32 MiB), 1,000 bulk echo streams held 1.5 GB of
// socket memory, the kernel's pressure threshold (net.ipv4.tcp_mem, one for the whole machine). Under
// pressure Linux drops segments it had advertised room for; the echo upstream, which stops reading while
// its write blocks, and the proxy's socket then each stayed shut to the other for good (ss: the proxy's
// receive queue empty, the upstream's full, persist timer at 120 s backoff), as they would on a direct
// connection. That is a kernel condition, not the proxy's behaviour, so the soak keeps below it and
// checks that it did (TCPMemoryPressures below).
constexpr char kTcpRmem[] = "4096 65536 262144";
constexpr char kTcpWmem[] = "4096 16384 262144";

// Holds every slot at one point until all have arrived or the deadline passes.
class Barrier {
 public:
  explicit Barrier(int parties) : parties_(parties) {}
  void ArriveAndWait(Deadline deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    ++arrived_;
    cv_.notify_all();
    cv_.wait_until(lock, deadline, [&] { return released_; });
  }
  bool WaitForAll(Deadline deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, deadline, [&] { return arrived_ >= parties_; });
  }
  int arrived() {
    std::lock_guard<std::mutex> lock(mu_);
    return arrived_;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  const int parties_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  bool released_ = false;
};

// What one client connection did, and what it should have done.
enum class Kind { kComplete, kClientReset, kUpstreamKilled };
struct Stream {
  Kind kind;
  uint32_t id;
  uint64_t length;  // sent in full (complete), or echoed before the client resets (a stream that would
                    // go on for ever, so that the client never sent its FIN)
  std::string connect_error;
  EchoResult result;
};

// Client side of one echo stream, and the checks of what the client saw. Empty when it is right.
std::string CheckClientSide(const Stream& s) {
  const EchoResult& r = s.result;
  const std::string what = absl::StrCat("stream ", s.id, " (", s.length, " bytes): ");
  if (!s.connect_error.empty()) return what + "connect: " + s.connect_error;
  if (r.first_bad >= 0) return what + "echo differs from what was sent: " + r.Describe();
  switch (s.kind) {
    case Kind::kComplete:
      if (r.send.bytes != s.length || r.recv.bytes != s.length || !r.recv.eof || r.send.error || r.recv.error)
        return what + "not echoed whole: " + r.Describe();
      return "";
    case Kind::kClientReset:
      if (r.recv.bytes < s.length || r.send.error || r.recv.error || r.recv.eof)
        return what + "ended before the client reset it: " + r.Describe();
      return "";
    case Kind::kUpstreamKilled:
      // A send that met the reset consumed the error: the next recv reads 0, after the reset.
      if (r.recv.eof && !r.send.error) return what + "a FIN after the upstream was killed: " + r.Describe();
      if (!r.recv.error && !r.send.error) return what + "no reset after the upstream was killed: " + r.Describe();
      if (r.recv.bytes < kEchoedBeforeKill) return what + "ended before the kill: " + r.Describe();
      return "";
  }
  return "";
}

// The upstream's side of a stream the client completed or reset.
std::string CheckUpstreamSide(const Stream& s, const ConnStats* up) {
  const std::string what = absl::StrCat("stream ", s.id, " upstream: ");
  if (up == nullptr) return what + "never reached the upstream, or never ended there";
  if (up->first_bad >= 0) return what + "bytes differ: " + up->Describe();
  if (s.kind == Kind::kComplete) {
    if (up->bytes_in != s.length || !up->eof || up->error) return what + "not received whole: " + up->Describe();
  } else if (up->eof || up->error == 0) {
    return what + "the client reset it, the upstream saw " + (up->eof ? "a FIN: " : "no reset: ") + up->Describe();
  }
  return "";
}

// Connects and runs one echo stream of `s.length` bytes (or, for a doomed connection, until it breaks).
void RunStream(const SocketAddress& listener, Stream& s, Deadline deadline, EchoControl control = {}) {
  auto fd = Connect(listener, 10s);
  if (!fd.ok()) {
    s.connect_error = std::string(fd.status().message());
    return;
  }
  uint64_t length = s.length;
  if (s.kind == Kind::kClientReset) {
    control.stop_after_echoed = s.length;
    length = kEndless;
  }
  s.result = EchoExchange(fd->get(), s.id, length, deadline, false, control);
  if (s.kind == Kind::kClientReset) CloseWithReset(*fd);
}

// Lengths of the churn connections: 16 KiB to 8 MiB, spread evenly over the powers of two in between.
uint64_t ChurnLength(std::mt19937_64& rng) {
  const int shift = std::uniform_int_distribution<int>(14, 22)(rng);
  return std::uniform_int_distribution<uint64_t>(1ull << shift, 2ull << shift)(rng);
}

// Samples the proxy while the soak runs: the most connections it held at once, and its largest RSS.
class ProxySampler {
 public:
  explicit ProxySampler(ProxyProcess& proxy) : proxy_(proxy) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        const double active = proxy_.Metric("skproxy_connections_active");
        if (active > max_active_.load()) max_active_ = active;
        max_rss_ = std::max<uint64_t>(max_rss_.load(), ProcessRssBytes(proxy_.pid()));
        max_tcp_pages_ = std::max<uint64_t>(max_tcp_pages_.load(), TcpMemoryPages());
        PaceUntil(Clock::now() + 200ms, DeadlineIn(1s), &stop_);  // the sampling period
      }
    });
  }
  ~ProxySampler() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  double max_active() const { return max_active_.load(); }
  uint64_t max_rss() const { return max_rss_.load(); }
  uint64_t max_tcp_pages() const { return max_tcp_pages_.load(); }  // the machine's TCP sockets' memory

 private:
  ProxyProcess& proxy_;
  std::atomic<bool> stop_{false};
  std::atomic<double> max_active_{0};
  std::atomic<uint64_t> max_rss_{0};
  std::atomic<uint64_t> max_tcp_pages_{0};
  std::thread thread_;
};

// The doomed slots against the upstream process, kKills rounds: the main thread starts the process (it
// dies with the thread that started it), waits until every doomed connection has echoed
// kEchoedBeforeKill, kills it, waits until every doomed client has seen its connection end, and starts the
// next round on the same address.
class KillRounds {
 public:
  // Blocks a doomed slot until round `round` starts (false: the soak is over).
  bool WaitForRound(int round, Deadline deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, deadline, [&] { return round_ >= round || over_; }) && !over_ && round_ == round;
  }
  void StartRound(int round) {
    std::lock_guard<std::mutex> lock(mu_);
    round_ = round;
    cv_.notify_all();
  }
  void End() {
    std::lock_guard<std::mutex> lock(mu_);
    over_ = true;
    cv_.notify_all();
  }
  std::atomic<uint64_t>& echoed(int slot) { return echoed_[slot]; }
  std::atomic<int> ended{0};  // doomed streams of the current round that have returned

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int round_ = -1;
  bool over_ = false;
  std::atomic<uint64_t> echoed_[kDoomedSlots] = {};
};

class ReliabilitySoakTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ReliabilitySoakTest, ThousandConnectionsWithKilledUpstreamsAndClientResets) {
  const std::string datapath = GetParam();
  if (datapath != "userspace") {
    SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
    if (!RequireSockmap()) GTEST_SKIP() << "not root: the kernel path is not expected to load";
  }
  // Per slot: the client's socket and the in-process upstream's (the proxy holds its own two).
  ASSERT_TRUE(RaiseOpenFileLimit(4 * kSlots + 1024)) << "cannot raise RLIMIT_NOFILE: " << strerror(errno);
  // Pages: net.ipv4.tcp_mem, only readable outside a namespace.
  const absl::StatusOr<std::array<uint64_t, 3>> tcp_mem = ReadSysctlTriple("net/ipv4/tcp_mem");
  ASSERT_TRUE(tcp_mem.ok()) << tcp_mem.status();
  auto ns = ScopedNetns::Enter();
  if (!ns.ok()) GTEST_SKIP() << "cannot create a network namespace: " << ns.status();
  for (const auto& [name, value] : {std::pair{"net/ipv4/tcp_rmem", kTcpRmem}, std::pair{"net/ipv4/tcp_wmem", kTcpWmem}}) {
    absl::Status set = WriteSysctl(name, value);
    ASSERT_TRUE(set.ok()) << set;
  }
  // The namespace is new: its counters count the soak's sockets only.
  auto kernel_counters = [] {
    std::string out;
    for (const char* name : {"TCPMemoryPressures", "TCPAbortOnMemory", "TCPRcvQDrop", "TCPZeroWindowDrop"})
      absl::StrAppend(&out, out.empty() ? "" : ", ", name, " ", NetstatCounter("TcpExt", name));
    return out;
  };

  TcpServer::Options echo_options;
  echo_options.backlog = 4096;
  echo_options.handler_timeout = 240s;
  EchoOptions checked;
  checked.check_pattern = true;
  auto echo = TcpServer::Start(echo_options, EchoHandler(checked));
  ASSERT_TRUE(echo.ok()) << echo.status();
  auto doomed = UpstreamProcess::Start(Loopback4(0));
  ASSERT_TRUE(doomed.ok()) << doomed.status();
  const SocketAddress doomed_address = (*doomed)->endpoint();

  ProxyConfig config;
  config.datapath = datapath;
  // The kernel path sized for 1,000 busy connections (docs/kernel-datapath.md, the memory bound): each
  // direction may hold gate_limit + receive_buffer in the kernel, so with the defaults (8 MiB + 1 MiB) the
  // soak alone would pass the machine's TCP memory pressure point many times over.
  config.gate_limit = "1MiB";
  config.receive_buffer = "512KiB";
  config.listeners = {{"echo", Loopback4(0), "echo"}, {"doomed", Loopback4(0), "doomed"}};
  config.clusters = {{"echo", "2s", {(*echo)->endpoint()}}, {"doomed", "2s", {doomed_address}}};
  SKPROXY_START_ANY_PATH(proxy, baseline_fds, config);
  const uint64_t rss_start = ProcessRssBytes(proxy->pid());
  // Found now, before anything else is mapped next to them.
  const std::vector<AddressRange> pools = AnonymousMappingsInUnitsOf(proxy->pid(), kBufferPoolMappingBytes);
  uint64_t pools_bytes = 0;
  for (const AddressRange& r : pools) pools_bytes += r.end - r.start;
  EXPECT_GT(pools_bytes, 0u) << "no mapping the size of the workers' buffer pools in the proxy";
  ProxySampler sampler(*proxy);
  const auto started = Clock::now();

  // 1. Every slot opens a connection and holds it, once 256 KiB have been echoed and nothing is in flight,
  // until all 1,000 are open.
  std::vector<Stream> first(kSlots);
  {
    Barrier barrier(kSlots);
    const Deadline deadline = DeadlineIn(120s);
    std::vector<std::thread> threads;
    for (int i = 0; i < kSlots; ++i) {
      first[i] = {Kind::kComplete, NextStreamId(), kFirstBytes};
      threads.emplace_back([&, i] {
        EchoControl control;
        control.pause_at = 256 * KiB;
        control.pause = [&] { barrier.ArriveAndWait(deadline); };
        RunStream(proxy->listener(0), first[i], deadline, control);
        if (!first[i].connect_error.empty() || first[i].result.recv.bytes < 256 * KiB) barrier.ArriveAndWait(deadline);
      });
    }
    const bool all = barrier.WaitForAll(DeadlineIn(90s));
    EXPECT_TRUE(all) << "only " << barrier.arrived() << " of " << kSlots << " connections opened";
    const double active = proxy->Metric("skproxy_connections_active");
    EXPECT_GE(active, kSlots) << "the proxy did not hold every connection at once";
    if (datapath == "sockmap") {
      EXPECT_GE(proxy->Metric("skproxy_sockmap_entries"), 2 * kSlots) << "not every connection in the sockhash";
    }
    barrier.Release();
    for (auto& t : threads) t.join();
    printf("[%s] %d connections open at once (connections_active %.0f)\n", datapath.c_str(), kSlots, active);
  }
  {
    absl::Status idle = WaitForProxyIdle(*proxy, baseline_fds, 30s);
    EXPECT_TRUE(idle.ok()) << idle << "\nproxy stderr:\n" << proxy->StderrTail();
  }
  const uint64_t rss_warm = ProcessRssBytes(proxy->pid());
  const uint64_t pools_warm = ResidentBytes(proxy->pid(), pools);

  // 2. Churn until kSoakBytes have crossed the proxy verified, with client resets, while the doomed slots
  // are killed kKills times.
  std::atomic<uint64_t> verified{0};  // echoed bytes checked by the clients, counted twice (both ways)
  for (const Stream& s : first)
    if (s.kind == Kind::kComplete) verified += 2 * s.result.recv.bytes;
  // Bytes the churn has taken on: a slot starts a connection only while they are short of kSoakBytes,
  // so the soak ends near it instead of finishing 900 connections of up to 8 MiB past it.
  std::atomic<uint64_t> planned{verified.load()};
  const Deadline deadline = DeadlineIn(180s);
  std::vector<std::vector<Stream>> churned(kSlots);
  KillRounds rounds;
  std::vector<std::thread> threads;
  for (int slot = 0; slot < kSlots; ++slot) {
    threads.emplace_back([&, slot] {
      std::vector<Stream>& mine = churned[slot];
      if (slot < kDoomedSlots) {
        for (int round = 0; rounds.WaitForRound(round, deadline); ++round) {
          // An endless stream: it ends when its upstream dies (or at the deadline, which fails the test).
          mine.push_back({Kind::kUpstreamKilled, NextStreamId(), kEndless});
          EchoControl control;
          control.echoed = &rounds.echoed(slot);
          RunStream(proxy->listener(1), mine.back(), deadline, control);
          verified += 2 * mine.back().result.recv.bytes;
          ++rounds.ended;
        }
        return;
      }
      std::mt19937_64 rng(slot);
      for (int n = 0; Clock::now() < deadline; ++n) {
        const Kind kind = (n + slot) % kResetEvery == 0 ? Kind::kClientReset : Kind::kComplete;
        const uint64_t length = ChurnLength(rng);
        if (planned.fetch_add(2 * length) >= kSoakBytes) break;
        mine.push_back({kind, NextStreamId(), length});
        RunStream(proxy->listener(0), mine.back(), deadline);
        verified += 2 * mine.back().result.recv.bytes;
      }
    });
  }
  std::vector<double> kill_latencies;  // from SIGKILL to the last doomed client seeing its reset
  // No ASSERT until the threads are joined: a failed round ends the rounds instead.
  for (int round = 0; round < kKills; ++round) {
    if (round > 0) {
      doomed = UpstreamProcess::Start(doomed_address);
      if (!doomed.ok()) {
        ADD_FAILURE() << "round " << round << ": " << doomed.status();
        break;
      }
    }
    for (int slot = 0; slot < kDoomedSlots; ++slot) rounds.echoed(slot) = 0;
    rounds.ended = 0;
    rounds.StartRound(round);
    const bool mid_stream = WaitFor(
        [&] {
          for (int slot = 0; slot < kDoomedSlots; ++slot)
            if (rounds.echoed(slot).load() < kEchoedBeforeKill) return false;
          return true;
        },
        60s, 20ms);
    EXPECT_TRUE(mid_stream) << "round " << round << ": not every doomed connection got going";
    const auto killed = Clock::now();
    absl::Status kill = (*doomed)->Kill();
    EXPECT_TRUE(kill.ok()) << kill;
    const bool all_ended = WaitFor([&] { return rounds.ended.load() >= kDoomedSlots; }, 30s, 5ms);
    EXPECT_TRUE(all_ended) << "round " << round << ": " << kDoomedSlots - rounds.ended.load()
                           << " clients never learnt that their upstream died";
    kill_latencies.push_back(SecondsSince(killed));
    if (!mid_stream || !kill.ok() || !all_ended) break;
  }
  rounds.End();
  for (auto& t : threads) t.join();
  const double soak_seconds = SecondsSince(started);

  // Every upstream connection has ended; index them by the stream they carried.
  EXPECT_TRUE((*echo)->WaitForFinished((*echo)->accepted(), 30s))
      << (*echo)->accepted() - (*echo)->finished() << " upstream connections never ended";
  std::map<uint32_t, ConnStats> upstream;
  for (ConnStats& s : (*echo)->Finished()) upstream[s.received_stream_id] = std::move(s);

  int counts[3] = {0, 0, 0}, bad = 0;
  auto check = [&](const Stream& s) {
    ++counts[static_cast<int>(s.kind)];
    std::string error = CheckClientSide(s);
    auto it = upstream.find(s.id);
    const ConnStats* up = it == upstream.end() ? nullptr : &it->second;
    if (error.empty() && s.kind != Kind::kUpstreamKilled) {
      error = CheckUpstreamSide(s, up);
    } else if (!error.empty() && up != nullptr) {
      error += "; its upstream connection: " + up->Describe();  // which side ended it first
    }
    if (!error.empty() && ++bad <= 10) ADD_FAILURE() << "[" << datapath << "] " << error;
  };
  for (const Stream& s : first) check(s);
  for (const auto& slot : churned)
    for (const Stream& s : slot) check(s);
  EXPECT_EQ(bad, 0) << "streams that were not exact, or ended in a FIN where a reset was due";
  EXPECT_EQ(counts[static_cast<int>(Kind::kUpstreamKilled)], kKills * kDoomedSlots);
  EXPECT_GE(verified.load(), kSoakBytes) << "the soak ran out of time before it moved its bytes";

  // Back to the baseline: descriptors, sockhash entries, connections, memory.
  sampler.Stop();
  {
    absl::Status idle = WaitForProxyIdle(*proxy, baseline_fds, 30s);
    EXPECT_TRUE(idle.ok()) << idle << "\nproxy stderr:\n" << proxy->StderrTail() << "\n" << proxy->InFlight();
  }
  const uint64_t rss_end = ProcessRssBytes(proxy->pid());
  const uint64_t pools_end = ResidentBytes(proxy->pid(), pools);
  // Both RSS and the pools' pages are read at idle, the pools' part of RSS is at most their size.
  EXPECT_LE(rss_end - std::min(pools_end, rss_end), rss_warm - std::min(pools_warm, rss_warm) + kRssTolerance)
      << "RSS outside the buffer pools " << (rss_end - pools_end) / MiB << " MiB after the soak, "
      << (rss_warm - pools_warm) / MiB << " MiB after the first " << kSlots << " connections (RSS "
      << rss_end / MiB << " and " << rss_warm / MiB << " MiB, of which the pools " << pools_end / MiB << " and "
      << pools_warm / MiB << " MiB of their " << pools_bytes / MiB << ")";
  // Below the kernel's TCP memory pressure all along (kTcpRmem), or the results above are the kernel's.
  EXPECT_EQ(NetstatCounter("TcpExt", "TCPMemoryPressures"), 0u)
      << "the soak's sockets pushed the kernel into TCP memory pressure (peak " << sampler.max_tcp_pages()
      << " pages, pressure from " << (*tcp_mem)[1] << "): " << kernel_counters();
  auto m = proxy->Metrics();
  ASSERT_TRUE(m.ok()) << m.status();
  ByteCounters bytes = ReadByteCounters(*m);
  if (HasFailure()) {  // what the proxy counted about the way connections ended, for the diagnosis
    for (const auto& [sample, value] : *m) {
      if (value != 0 && (absl::StartsWith(sample, "skproxy_pipe_errors") || absl::StartsWith(sample, "skproxy_fallbacks") ||
                         absl::StartsWith(sample, "skproxy_verdict_events") || absl::StartsWith(sample, "skproxy_resets")))
        printf("[%s] %s %.0f\n", datapath.c_str(), sample.c_str(), value);
    }
  }
  EXPECT_GE(bytes.d2u() + bytes.u2d(), static_cast<double>(kSoakBytes)) << bytes.Describe();
  EXPECT_TRUE(proxy->Running()) << proxy->StderrTail();

  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));  // the unit of tcp_mem
  int connections = 0;
  for (const auto& slot : churned) connections += static_cast<int>(slot.size());
  printf("[%s] %.1f GiB verified through the proxy in %.1f s; %d connections after the first %d "
         "(%d complete, %d reset by the client, %d on a killed upstream); peak %.0f connections open; "
         "last reset seen %.2f/%.2f/%.2f s after each kill; RSS %.0f MiB at start, %.0f after the first %d, "
         "%.0f at most, %.0f after, of which the buffer pools %.0f and %.0f MiB of their %.0f; TCP memory of "
         "the machine at most %.0f MiB (pressure from %.0f MiB); %s; %s\n",
         datapath.c_str(), verified.load() / double(GiB), soak_seconds, connections, kSlots,
         counts[0] - kSlots, counts[1], counts[2], sampler.max_active(), kill_latencies.size() > 0 ? kill_latencies[0] : -1,
         kill_latencies.size() > 1 ? kill_latencies[1] : -1, kill_latencies.size() > 2 ? kill_latencies[2] : -1,
         rss_start / double(MiB), rss_warm / double(MiB), kSlots, sampler.max_rss() / double(MiB),
         rss_end / double(MiB), pools_warm / double(MiB), pools_end / double(MiB), pools_bytes / double(MiB),
         sampler.max_tcp_pages() * page / MiB, (*tcp_mem)[1] * page / MiB, kernel_counters().c_str(),
         bytes.Describe().c_str());
}

INSTANTIATE_TEST_SUITE_P(Datapaths, ReliabilitySoakTest, ::testing::Values("sockmap", "userspace"),
                         DatapathParamName);

}  // namespace
}  // namespace skproxy::itest
