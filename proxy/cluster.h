// A cluster at run time, shared by every worker and the cluster thread (cluster_manager.h): its endpoints
// with their live state (address, health, ejection, connections), its load balancer and its limit.
//
// Workers call Pick / OnConnected / OnConnectFailed / Release; the cluster thread writes health and DNS
// results. Everything a worker reads on a pick is an atomic, except an endpoint's address (a reader lock,
// uncontended but for the moment DNS changes it) and Maglev's table (a shared_ptr copied under one).
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
  EndpointState(const config::Endpoint& config, EndpointMetrics metrics);

  const config::Endpoint& config() const { return config_; }
  const std::string& label() const { return label_; }  // "10.0.0.1:80" or "db.internal:80"

  // Where to connect now; nullopt while a host name has never resolved.
  std::optional<SocketAddress> address() const;
  void SetAddress(const SocketAddress& address);  // DNS (cluster thread)

  // May take new connections: resolved, passing its active checks, not ejected.
  bool usable(int64_t now_ns) const {
    return resolved_.load(std::memory_order_acquire) && healthy_.load(std::memory_order_relaxed) &&
           ejected_until_ns_.load(std::memory_order_relaxed) <= now_ns;
  }
  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }
  bool ejected(int64_t now_ns) const { return ejected_until_ns_.load(std::memory_order_relaxed) > now_ns; }
  void SetHealthy(bool healthy);  // active health check (cluster thread)
  int64_t active() const { return active_.load(std::memory_order_relaxed); }

 private:
  friend class ClusterState;

  const config::Endpoint& config_;
  const std::string label_;
  EndpointMetrics metrics_;
  mutable absl::Mutex mu_;
  SocketAddress address_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> resolved_{false};
  std::atomic<bool> healthy_{true};
  std::atomic<int64_t> ejected_until_ns_{0};     // CLOCK_MONOTONIC
  std::atomic<uint32_t> consecutive_failures_{0};  // connect failures in a row (outlier detection)
  std::atomic<int64_t> active_{0};
};

class ClusterState {
 public:
  ClusterState(const config::Cluster& config, Metrics& metrics);

  const config::Cluster& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  const ClusterMetrics& metrics() const { return metrics_; }
  size_t size() const { return endpoints_.size(); }
  EndpointState& endpoint(size_t i) { return *endpoints_[i]; }
  const EndpointState& endpoint(size_t i) const { return *endpoints_[i]; }

  // Whether some endpoint may take a new connection now (an http listener answers 503 when not).
  bool HasHealthyEndpoint() const;
  // Whether Pick needs the client's address (the consistent hashes).
  bool needs_client_address() const { return balancer_->needs_client_hash(); }

  // max_connections of the cluster: once per client connection before its first Pick; false (counted as
  // an overflow) when the cluster is full. Leave() when that connection ends.
  bool Admit() {
    if (limit_.TryAcquire()) return true;
    metrics_.overflow->Increment();
    return false;
  }
  void Leave() { limit_.Release(); }

  struct Choice {
    uint32_t index;
    SocketAddress address;
  };
  // The endpoint for a new upstream connection: usable, and not one of `tried` (the endpoints this client
  // connection already failed to reach). `client` may be null unless needs_client_address(). The chosen
  // endpoint counts the connection from here until Release(index).
  std::optional<Choice> Pick(const SocketAddress* client, const std::vector<uint32_t>& tried);
  // A connect that succeeded after `connect_time` (observed in the connect latency histogram).
  void OnConnected(uint32_t index, absl::Duration connect_time);
  // A refused, unreachable or timed-out connect: counted, and with outlier_detection it may eject.
  void OnConnectFailed(uint32_t index);
  void Release(uint32_t index);

  // Cluster thread: an active check's result and a resolution's, for the metrics.
  void CountCheck(size_t i, bool passed);
  void CountResolution(size_t i, bool ok);

  // Cluster thread, every tick: tells the balancer when the usable set changed and updates the gauges.
  void Refresh();

  static int64_t NowNs();  // CLOCK_MONOTONIC

 private:
  const config::Cluster& config_;
  ClusterMetrics metrics_;
  std::vector<std::unique_ptr<EndpointState>> endpoints_;
  std::unique_ptr<LoadBalancer> balancer_;
  ConnectionLimit limit_;
  std::vector<bool> last_usable_;  // cluster thread only
};

}  // namespace skproxy
