// The integration-test harness: the counter pattern, sockets with deadlines, the Prometheus text parser,
// and an RAII owner of a real skproxy process. Everything here talks to the kernel through real sockets;
// nothing is mocked, so a test that passes here passed through the binary's data path.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "tests/kernel_support.h"

namespace skproxy::itest {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
using Millis = std::chrono::milliseconds;

inline Deadline DeadlineIn(Millis d) { return Clock::now() + d; }
double SecondsSince(Clock::time_point t);
// Polls `cond` every `interval` until it holds or `timeout` passes; returns the last value of `cond`.
bool WaitFor(const std::function<bool()>& cond, Millis timeout, Millis interval = 10ms);

constexpr uint64_t KiB = 1024;
constexpr uint64_t MiB = 1024 * KiB;
constexpr uint64_t GiB = 1024 * MiB;

// ---------------------------------------------------------------------------------------------------------
// Counter pattern. Byte i of stream `id` is byte (i & 7) of the little-endian 64-bit word (i & ~7) ^ Seed(id),
// so a corrupt, missing or duplicated byte is reported at its exact offset, and the first word (the seed)
// is non-zero and differs per stream: bytes swapped between connections, or a zeroed head, are caught too.
// A reader that does not know the id learns it from the first word, whose upper half checks the lower half.
uint64_t PatternSeed(uint32_t id);
inline uint8_t PatternByte(uint32_t id, uint64_t i) {
  return static_cast<uint8_t>(((i & ~7ull) ^ PatternSeed(id)) >> (8 * (i & 7)));
}
void FillPattern(uint32_t id, uint64_t offset, uint8_t* buf, size_t n);

class PatternChecker {
 public:
  explicit PatternChecker(std::optional<uint32_t> id = std::nullopt) : id_(id) {}
  void Feed(const uint8_t* data, size_t n);
  uint64_t bytes() const { return bytes_; }
  // Offset of the first byte that differs from the pattern, -1 if none.
  int64_t first_bad() const { return first_bad_; }
  uint64_t bad_bytes() const { return bad_bytes_; }
  bool ok() const { return first_bad_ < 0; }
  std::optional<uint32_t> id() const { return id_; }
  // "offset 1234: got 0x.. want 0x.." for the first bad byte, or "ok".
  std::string Describe() const;

 private:
  void FeedSlow(const uint8_t* data, size_t n);
  std::optional<uint32_t> id_;
  uint8_t head_[8] = {};  // first bytes, kept until the id can be learnt
  uint64_t bytes_ = 0;
  int64_t first_bad_ = -1;
  uint8_t first_bad_got_ = 0, first_bad_want_ = 0;
  uint64_t bad_bytes_ = 0;
  // Where the first wrong bytes came from: offset decoded_at_ of the stream holds the bytes of offset
  // decoded_from_ (a duplicate shows as a smaller offset, a gap as a larger one).
  bool have_decoded_ = false;
  uint64_t decoded_at_ = 0, decoded_from_ = 0;
};

// A unique stream id for this process (never 0).
uint32_t NextStreamId();

// ---------------------------------------------------------------------------------------------------------
// SHA-256 through OpenSSL EVP.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(const void* data, size_t n);
  std::string FinalRaw();  // 32 bytes
  std::string FinalHex();

 private:
  void* ctx_;  // EVP_MD_CTX, kept opaque so the header does not pull in OpenSSL
};
std::string HexEncode(std::string_view raw);

// ---------------------------------------------------------------------------------------------------------
// File descriptors and addresses.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// A loopback endpoint: 127.0.0.1:port or [::1]:port.
struct Endpoint {
  int family = AF_INET;
  uint16_t port = 0;
  std::string ToString() const;  // the config syntax: "127.0.0.1:80" / "[::1]:80"
  socklen_t ToSockaddr(sockaddr_storage* ss) const;
};
inline Endpoint Loopback4(uint16_t port) { return Endpoint{AF_INET, port}; }
inline Endpoint Loopback6(uint16_t port) { return Endpoint{AF_INET6, port}; }

// Binds port 0 on the family's loopback address and returns the port the kernel chose (0 on failure).
// The port is released again, so another process may take it; good enough on a test machine.
uint16_t PickFreePort(int family = AF_INET);
// True if a listener could bind the endpoint right now.
bool PortIsFree(const Endpoint& ep);
// A loopback endpoint with no listener: connecting to it is refused.
inline Endpoint RefusedEndpoint(int family = AF_INET) { return Endpoint{family, PickFreePort(family)}; }

struct SocketOptions {
  int rcvbuf = 0;  // SO_RCVBUF if > 0 (disables receive autotuning)
  int sndbuf = 0;  // SO_SNDBUF if > 0
};
absl::StatusOr<Fd> Listen(const Endpoint& ep, int backlog, SocketOptions opts = {});
absl::StatusOr<Fd> Connect(const Endpoint& ep, Millis timeout, SocketOptions opts = {});
uint16_t LocalPort(int fd);
// Sets SO_LINGER {1, 0} and closes: the peer gets a RST.
void CloseWithReset(Fd& fd);

// ---------------------------------------------------------------------------------------------------------
// Stream I/O with deadlines. Every call polls; none blocks past its deadline.
struct IoResult {
  uint64_t bytes = 0;
  bool eof = false;        // read a clean EOF
  int error = 0;           // errno that ended the transfer (ECONNRESET, EPIPE, ...)
  bool timed_out = false;  // the deadline passed first
  std::string Describe() const;
};

// Reading speed. rate == 0 reads as fast as possible. With slow_phase_bytes > 0 the reader alternates:
// fast_phase_bytes unpaced, then slow_phase_bytes at slow_rate, and again, so a proxy sees its peer's
// receive window open and close many times in one stream.
struct ReadPacing {
  double rate = 0;  // bytes/s for the whole stream
  uint64_t fast_phase_bytes = 0;
  uint64_t slow_phase_bytes = 0;
  double slow_rate = 0;  // bytes/s in a slow phase
  size_t chunk = 256 * KiB;
};

// Waits for `events` on fd until the deadline; returns revents, 0 if the deadline passed first.
int PollFd(int fd, short events, Deadline deadline);

// Sends bytes [offset, offset + n) of stream `id`, paced at `rate` bytes/s if > 0. `progress` (optional)
// is advanced by every byte the kernel accepted; `stop` (optional) cuts the pacing short.
IoResult SendPattern(int fd, uint32_t id, uint64_t offset, uint64_t n, Deadline deadline, double rate = 0,
                     std::atomic<uint64_t>* progress = nullptr, const std::atomic<bool>* stop = nullptr);
IoResult SendAll(int fd, const void* data, size_t n, Deadline deadline);
// Reads exactly n bytes (fewer only on EOF, error or deadline).
IoResult RecvExact(int fd, void* data, size_t n, Deadline deadline);
// Reads until EOF, error, deadline or `max_bytes`, feeding every byte to `checker` and `sha` (both optional).
// `stop` (optional) ends the read early when it becomes true.
IoResult ReadStream(int fd, PatternChecker* checker, Deadline deadline, const ReadPacing& pacing = {},
                    std::atomic<uint64_t>* progress = nullptr, Sha256* sha = nullptr,
                    uint64_t max_bytes = UINT64_MAX, const std::atomic<bool>* stop = nullptr);

// Sends n bytes of stream `id` and reads the echo at the same time (one thread, poll), shuts down the write
// side after the last byte and reads until EOF.
struct EchoResult {
  IoResult send, recv;
  int64_t first_bad = -1;
  std::string checker_description;
  std::string sha_sent, sha_received;  // hex, only when asked for
  std::string Describe() const;
};
EchoResult EchoExchange(int fd, uint32_t id, uint64_t n, Deadline deadline, bool compute_sha = false);

// Waits until the peer closes (EOF or reset), discarding data. closed=false means the deadline passed.
struct CloseResult {
  bool closed = false;
  bool reset = false;
  double seconds = 0;
  uint64_t discarded = 0;
};
CloseResult WaitForPeerClose(int fd, Deadline deadline);

// ---------------------------------------------------------------------------------------------------------
// Prometheus text format: "name{labels}" (labels exactly as printed) -> value.
using MetricSamples = std::map<std::string, double>;
MetricSamples ParseMetrics(std::string_view text);
using LabelFilter = std::vector<std::pair<std::string, std::string>>;
// Sum of every sample of `metric` whose labels include all of `filter`; 0 when none exists (prometheus-cpp
// only prints a labelled sample once it has been touched).
double SumMetric(const MetricSamples& samples, std::string_view metric, const LabelFilter& filter = {});
// A minimal HTTP/1.0 GET; returns the body of a 200 response.
absl::StatusOr<std::string> HttpGet(const Endpoint& ep, std::string_view path, Millis timeout);
absl::StatusOr<MetricSamples> ScrapeMetrics(const Endpoint& admin);

// ---------------------------------------------------------------------------------------------------------
// The proxy's configuration, written as YAML in the schema of config/skproxy.yaml.
struct ListenerSpec {
  std::string name;
  Endpoint address;
  std::string cluster;
};
struct ClusterSpec {
  std::string name;
  std::string connect_timeout = "2s";
  std::vector<Endpoint> endpoints;
};
struct ProxyConfig {
  Endpoint admin;                    // port 0: picked at start
  std::string datapath = "userspace";  // passed as --datapath
  int workers = 0;
  std::string gate_limit;      // e.g. "1MiB"; empty: not written
  std::string receive_buffer;  // e.g. "512KiB"; empty: not written
  std::vector<ListenerSpec> listeners;
  std::vector<ClusterSpec> clusters;
  // Run the proxy through this command, e.g. setpriv with capabilities dropped; empty: run it directly.
  std::vector<std::string> command_prefix;
  std::string ToYaml() const;
};
// One listener "web" on a fresh loopback port of `listener_family` -> cluster "backend" -> `endpoints`.
ProxyConfig SimpleProxyConfig(const std::string& datapath, std::vector<Endpoint> endpoints,
                              int listener_family = AF_INET, const std::string& connect_timeout = "2s");

// Path of the binary under test: $SKPROXY_BINARY if set, else the path CMake compiled in.
std::string ProxyBinaryPath();

// A running skproxy. Start() returns once the "skproxy ready:" line is on stderr. The destructor sends
// SIGTERM and reaps it (SIGKILL after a deadline). Start from the test's main thread: the child is tied to
// the starting thread with PR_SET_PDEATHSIG so a crashed test does not leave proxies behind.
class ProxyProcess {
 public:
  // Fails with FailedPrecondition when --datapath sockmap was refused because BPF cannot be loaded
  // (exit status 1 and stderr mentioning BPF or "kernel path unavailable"); see IsBpfUnavailable.
  static absl::StatusOr<std::unique_ptr<ProxyProcess>> Start(ProxyConfig config, Millis ready_timeout = 15s);
  ~ProxyProcess();
  ProxyProcess(const ProxyProcess&) = delete;
  ProxyProcess& operator=(const ProxyProcess&) = delete;

  pid_t pid() const { return pid_; }
  const ProxyConfig& config() const { return config_; }
  Endpoint listener(size_t i = 0) const { return config_.listeners.at(i).address; }
  Endpoint admin() const { return config_.admin; }
  std::string Stderr() const;            // everything the proxy wrote to stderr so far
  std::string StderrTail(size_t max_bytes = 4000) const;
  const std::string& stderr_path() const { return stderr_path_; }
  std::string ReadyLine() const;         // "skproxy ready: datapath=..."
  absl::StatusOr<int> FdCount() const;   // entries in /proc/PID/fd
  absl::StatusOr<MetricSamples> Metrics() const { return ScrapeMetrics(config_.admin); }
  // SumMetric over a fresh scrape; NaN if the scrape failed (comparisons then fail loudly).
  double Metric(std::string_view name, const LabelFilter& filter = {}) const;
  bool Running();
  // SIGTERM, then waits up to `timeout` (SIGKILL after it). Returns the exit status (or 128+signal).
  absl::StatusOr<int> Stop(Millis timeout = 10s);

  static bool IsBpfUnavailable(const absl::Status& status);

 private:
  ProxyProcess() = default;
  void CollectStderr(int fd);

  ProxyConfig config_;
  std::string dir_, config_path_, stderr_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  std::thread stderr_thread_;
  mutable std::mutex mu_;  // guards stderr_text_ and stderr_done_
  std::condition_variable cv_;
  std::string stderr_text_;
  bool stderr_done_ = false;  // the pipe closed: the proxy exited
};

// Starts the proxy into `var` (a std::unique_ptr<ProxyProcess>), skipping the test if the sockmap data path
// was refused because the kernel is too old for it, or because BPF cannot be loaded (only when not root, see
// RequireSockmap), failing it on any other error.
#define SKPROXY_START_OR_SKIP(var, config)                                                         \
  std::unique_ptr<::skproxy::itest::ProxyProcess> var;                                             \
  {                                                                                                \
    auto started_ = ::skproxy::itest::ProxyProcess::Start(config);                                 \
    if (!started_.ok() && ::skproxy::itest::ProxyProcess::IsBpfUnavailable(started_.status())) {   \
      SKPROXY_SKIP_IF_KERNEL_TOO_OLD();                                                            \
      if (!::skproxy::itest::RequireSockmap())                                                     \
        GTEST_SKIP() << "sockmap data path unavailable: " << started_.status().message();          \
    }                                                                                              \
    ASSERT_TRUE(started_.ok()) << started_.status();                                               \
    var = std::move(*started_);                                                                    \
  }
// Whether a sockmap proxy that cannot load BPF fails the test (as root, by default) or skips it.
bool RequireSockmap();

// Waits until the proxy holds no connection: skproxy_connections_active sums to 0, skproxy_sockmap_entries
// is 0 and its fd count is back to `baseline_fds`. Returns a description of what did not return.
absl::Status WaitForProxyIdle(ProxyProcess& proxy, int baseline_fds, Millis timeout = 10s);

// ---------------------------------------------------------------------------------------------------------
// Processes and the system.
struct CommandResult {
  int exit_code = -1;   // -1 if killed by a signal
  int term_signal = 0;
  bool timed_out = false;
  std::string out, err;
  std::string Describe() const;
};
CommandResult RunCommand(const std::vector<std::string>& argv, Millis timeout);
// Finds `name` in $PATH plus /usr/sbin and /sbin; empty if absent.
std::string FindExecutable(const std::string& name);

// MemAvailable from /proc/meminfo, bytes.
uint64_t MemAvailableBytes();
// Samples MemAvailable every 20 ms in a thread; max_drop() is baseline - lowest sample seen.
class MemAvailableSampler {
 public:
  MemAvailableSampler();
  ~MemAvailableSampler();
  int64_t max_drop() const { return static_cast<int64_t>(baseline_) - static_cast<int64_t>(min_.load()); }
  uint64_t baseline() const { return baseline_; }

 private:
  uint64_t baseline_;
  std::atomic<uint64_t> min_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// VmRSS of a process, bytes (0 if unknown).
uint64_t ProcessRssBytes(pid_t pid);

// Readers of this thread's network namespace (/proc/thread-self/net/...).
uint64_t TcpRetransSegs();  // Tcp: RetransSegs from snmp
// True if a socket in SYN-SENT towards `remote_port` on loopback exists.
bool HasSynSentTo(uint16_t remote_port);

}  // namespace skproxy::itest
