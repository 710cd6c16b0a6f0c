// A real skproxy process owned by a test: its configuration written as YAML, its start, stderr and stop.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/address.h"
#include "gtest/gtest.h"
#include "tests/kernel_support.h"
#include "proxy/prometheus_text.h"
#include "tests/integration/deadline.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/sockets.h"

namespace skproxy::itest {

// The proxy's configuration, written as YAML in the schema of config/skproxy.yaml.
struct ListenerSpec {
  std::string name;
  SocketAddress address;
  std::string cluster;  // empty with transparent
  bool transparent = false;
  std::string extra;  // more keys of the listener, one "key: value" per line ("max_connections: 2\n")
};
struct ClusterSpec {
  std::string name;
  std::string connect_timeout = "2s";
  std::vector<SocketAddress> endpoints;  // empty: `extra` writes the endpoints
  std::string extra;  // more keys of the cluster, YAML lines indented as if at the cluster's top level
};
struct ProxyConfig {
  SocketAddress admin = Loopback4(0);  // port 0: picked at start
  std::string datapath = "userspace";  // passed as --datapath
  int workers = 0;
  std::string gate_limit;      // e.g. "1MiB"; empty: not written
  std::string receive_buffer;  // e.g. "512KiB"; empty: not written
  std::string quiet_worker_connections;  // e.g. "0"; empty: not written
  std::string drain_timeout;   // e.g. "2s"; empty: not written (the default, 30s)
  std::string access_log;      // access_log.path; empty: not written (no access log)
  // Extra environment variables of the proxy, "NAME=value" (e.g. fault injection).
  std::vector<std::string> env;
  std::string promote_after;             // e.g. "256KiB"; empty: not written
  std::string demote_below;              // e.g. "4KiB"; empty: not written
  std::string demote_after_messages;     // e.g. "32"; empty: not written
  std::string switch_interval;           // e.g. "20ms"; empty: not written
  std::string upstream_mark;             // e.g. "0x534b"; empty: not written
  std::string user;                      // top-level `user` (run as it once started); empty: not written
  std::vector<ListenerSpec> listeners;
  std::vector<ClusterSpec> clusters;
  // When set, written instead of `listeners` and `clusters` (after admin, datapath and workers), for
  // schema the specs do not cover (protocols, routes); `listeners` then only gives the addresses: each
  // "$LISTENER<i>" in the text becomes listeners[i].address (its port picked at start when 0).
  std::string listeners_and_clusters_yaml;
  // Run the proxy through this command, e.g. setpriv with capabilities dropped; empty: run it directly.
  std::vector<std::string> command_prefix;
  std::string ToYaml() const;
};
// One listener "web" on a fresh loopback port of `listener_family` -> cluster "backend" -> `endpoints`.
ProxyConfig SimpleProxyConfig(const std::string& datapath, std::vector<SocketAddress> endpoints,
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
  SocketAddress listener(size_t i = 0) const { return config_.listeners.at(i).address; }
  SocketAddress admin() const { return config_.admin; }
  std::string Stderr() const;            // everything the proxy wrote to stderr so far
  std::string StderrTail(size_t max_bytes = 4000) const;
  const std::string& stderr_path() const { return stderr_path_; }
  const std::string& config_path() const { return config_path_; }
  // Replaces the config file the proxy was started with (for a reload to read).
  absl::Status WriteConfigFile(const std::string& yaml) const;
  // Writes `yaml` as the config file and POSTs /reload: the admin listener's answer (200, 400, 409...).
  absl::StatusOr<HttpResponse> PostReload(const std::string& yaml) const;
  std::string ReadyLine() const;         // "skproxy ready: datapath=..."
  absl::StatusOr<int> FdCount() const;   // entries in /proc/PID/fd
  // For a failure's diagnosis: GET /connections (what each connection's pipe waits for) and what the
  // kernel says of each io_uring instance (/proc/PID/fdinfo: the requests armed on a poll).
  std::string InFlight() const;
  absl::StatusOr<MetricSamples> Metrics() const { return ScrapeMetrics(config_.admin); }
  // SumMetric over a fresh scrape; NaN if the scrape failed (comparisons then fail loudly).
  double Metric(std::string_view name, const LabelFilter& filter = {}) const;
  bool Running();
  // SIGTERM, then waits up to `timeout` (SIGKILL after it). Returns the exit status (or 128+signal).
  absl::StatusOr<int> Stop(Millis timeout = 10s);
  // Sends `signal_number` to the proxy.
  void Signal(int signal_number) const;
  // Waits up to `timeout` for the proxy to exit on its own; its exit status (or 128+signal).
  absl::StatusOr<int> WaitForExit(Millis timeout);

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

}  // namespace skproxy::itest
