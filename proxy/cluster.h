// A cluster at run time, shared by every worker and the cluster thread (cluster_manager.h): its endpoints
// with their live state (health, ejection, connections), its load balancer and its limit.
//
// An endpoint is one address: an IP endpoint of the config is one, a host name is as many as its answer
// has addresses (each with the name's weight, checked and counted on its own). The set of endpoints is an
// immutable HostSet with its balancer, replaced whole by the cluster thread when DNS changes it; a pick
// copies the current one under a reader lock (uncontended but for that moment). An endpoint DNS no
// longer gives leaves the set and drains: the connections that hold it go on, no new one picks it, and
// it is destroyed (its metrics with it) once the last of them is gone.
//
// Workers call Pick / OnConnected / OnConnectFailed / Release; the cluster thread writes health and DNS
// results. Everything a worker reads on a pick is an atomic of the endpoint, besides the HostSet pointer.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/config.h"
#include "proxy/connection_limit.h"
#include "proxy/load_balancer.h"
#include "proxy/metrics.h"

namespace skproxy {

class EndpointState {
 public:
  // `label`: the metric label and the balancer's key, "10.0.0.1:80" for an address as configured,
  // "db.internal:80/10.0.0.7" for one of a name's addresses.
  EndpointState(const config::Endpoint& config, const SocketAddress& address, std::string label,
                const std::string& cluster, Metrics& metrics);
  ~EndpointState();
  EndpointState(const EndpointState&) = delete;
  EndpointState& operator=(const EndpointState&) = delete;

  const config::Endpoint& config() const { return config_; }
  const std::string& label() const { return label_; }
  const SocketAddress& address() const { return address_; }

  // May take new connections: in the cluster's current set, passing its active checks, not ejected.
  bool usable(int64_t now_ns) const {
    return !removed_.load(std::memory_order_relaxed) && healthy_.load(std::memory_order_relaxed) &&
           ejected_until_ns_.load(std::memory_order_relaxed) <= now_ns;
  }
  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }
  bool ejected(int64_t now_ns) const { return ejected_until_ns_.load(std::memory_order_relaxed) > now_ns; }
  bool removed() const { return removed_.load(std::memory_order_relaxed); }
  void SetHealthy(bool healthy);  // active health check (cluster thread)
  void CountCheck(bool passed);   // cluster thread
  int64_t active() const { return active_.load(std::memory_order_relaxed); }

 private:
  friend class ClusterState;

  const config::Endpoint& config_;
  const SocketAddress address_;
  const std::string label_;
  const std::string& cluster_;
  Metrics& metrics_owner_;
  EndpointMetrics metrics_;
  std::atomic<bool> removed_{false};  // DNS no longer gives it: draining
  std::atomic<bool> healthy_{true};
  std::atomic<int64_t> ejected_until_ns_{0};     // CLOCK_MONOTONIC
  std::atomic<uint32_t> consecutive_failures_{0};  // connect failures in a row (outlier detection)
  std::atomic<int64_t> active_{0};
};

// The endpoints of a cluster at one moment, with the balancer built over them (indexes into `endpoints`).
struct HostSet {
  std::vector<std::shared_ptr<EndpointState>> endpoints;
  std::unique_ptr<LoadBalancer> balancer;
};

class ClusterState {
 public:
  ClusterState(const config::Cluster& config, Metrics& metrics);

  const config::Cluster& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  // The current endpoints (a snapshot: DNS may replace the set right after).
  std::shared_ptr<const HostSet> hosts() const;
  const ClusterMetrics& metrics() const { return metrics_; }

  // Whether some endpoint may take a new connection now (an http listener answers 503 when not).
  bool HasHealthyEndpoint() const;
  // Whether Pick needs the client's address (the consistent hashes).
  bool needs_client_address() const { return needs_client_address_; }

  // max_connections of the cluster: once per client connection before its first Pick; false (counted as
  // an overflow) when the cluster is full. Leave() when that connection ends.
  bool Admit() {
    if (limit_.TryAcquire()) return true;
    metrics_.overflow->Increment();
    return false;
  }
  void Leave() { limit_.Release(); }

  // The endpoint for a new upstream connection: usable, and not one of `tried` (the endpoints this client
  // connection already failed to reach; compared, never dereferenced). `client` may be null unless
  // needs_client_address(). The chosen endpoint counts the connection from here until Release().
  std::shared_ptr<EndpointState> Pick(const SocketAddress* client, const std::vector<const EndpointState*>& tried);
  // A connect that succeeded after `connect_time` (observed in the connect latency histogram).
  void OnConnected(EndpointState& endpoint, absl::Duration connect_time);
  // A refused, unreachable or timed-out connect: counted, and with outlier_detection it may eject.
  void OnConnectFailed(EndpointState& endpoint);
  void Release(EndpointState& endpoint);

  // Cluster thread. The addresses host-name endpoint `config_index` resolves to now (port set, no
  // duplicates): addresses that stay keep their state, new ones join (healthy until checked), the others
  // drain. True when the set changed.
  bool SetAddresses(size_t config_index, const std::vector<SocketAddress>& addresses);
  // Cluster thread: a resolution of endpoint `config_index` failed (its addresses are kept).
  void CountResolution(size_t config_index, bool ok);
  // How many addresses the endpoint `config_index` has now (1 for an IP endpoint).
  size_t address_count(size_t config_index) const { return by_config_[config_index].size(); }

  // Cluster thread, every tick: tells the balancer when the usable set changed, updates the gauges and
  // lets go of drained endpoints.
  void Refresh();

  static int64_t NowNs();  // CLOCK_MONOTONIC

 private:
  // Builds and publishes a HostSet of every current endpoint (cluster thread).
  void Rebuild();

  const config::Cluster& config_;
  Metrics& metrics_registry_;
  ClusterMetrics metrics_;
  ConnectionLimit limit_;
  bool needs_client_address_ = false;
  mutable absl::Mutex mu_;
  std::shared_ptr<const HostSet> hosts_ ABSL_GUARDED_BY(mu_);
  // Cluster thread only (and the constructor).
  std::vector<std::vector<std::shared_ptr<EndpointState>>> by_config_;  // current endpoints, per config endpoint
  std::vector<std::optional<NameMetrics>> name_metrics_;                // per config endpoint, names only
  std::vector<std::shared_ptr<EndpointState>> draining_;  // removed, maybe still held by connections
  std::shared_ptr<const HostSet> last_refreshed_;
  std::vector<bool> last_usable_;
};

}  // namespace skproxy
