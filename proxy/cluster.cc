#include "proxy/cluster.h"

#include <time.h>

#include <algorithm>

namespace skproxy {

EndpointState::EndpointState(const config::Endpoint& config, EndpointMetrics metrics)
    : config_(config), label_(config.ToString()), metrics_(metrics) {
  if (!config.is_name) {
    address_ = config.address;
    resolved_.store(true, std::memory_order_release);
  }
}

std::optional<SocketAddress> EndpointState::address() const {
  if (!resolved_.load(std::memory_order_acquire)) return std::nullopt;
  absl::ReaderMutexLock lock(&mu_);
  return address_;
}

void EndpointState::SetAddress(const SocketAddress& address) {
  {
    absl::MutexLock lock(&mu_);
    address_ = address;
  }
  resolved_.store(true, std::memory_order_release);
}

void EndpointState::SetHealthy(bool healthy) { healthy_.store(healthy, std::memory_order_relaxed); }

int64_t ClusterState::NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

ClusterState::ClusterState(const config::Cluster& config, Metrics& metrics)
    : config_(config), metrics_(metrics.ForCluster(config.name)), limit_(config.max_connections) {
  std::vector<std::string> keys;
  std::vector<uint32_t> weights;
  for (const config::Endpoint& endpoint : config.endpoints) {
    endpoints_.push_back(
        std::make_unique<EndpointState>(endpoint, metrics.ForEndpoint(config.name, endpoint.ToString())));
    keys.push_back(endpoint.ToString());
    weights.push_back(endpoint.weight);
  }
  balancer_ = LoadBalancer::Create(config.lb_policy, keys, weights);
  last_usable_.assign(endpoints_.size(), true);
  Refresh();
}

bool ClusterState::HasHealthyEndpoint() const {
  const int64_t now = NowNs();
  return std::any_of(endpoints_.begin(), endpoints_.end(), [&](const auto& e) { return e->usable(now); });
}

std::optional<ClusterState::Choice> ClusterState::Pick(const SocketAddress* client,
                                                       const std::vector<uint32_t>& tried) {
  const int64_t now = NowNs();
  auto eligible = [&](uint32_t i) {
    return endpoints_[i]->usable(now) && std::find(tried.begin(), tried.end(), i) == tried.end();
  };
  auto active = [&](uint32_t i) { return endpoints_[i]->active(); };
  LbRequest request{client != nullptr ? ClientAddressHash(*client) : 0, eligible, active};
  std::optional<uint32_t> index = balancer_->Choose(request);
  if (!index) {
    if (tried.empty()) metrics_.no_healthy_endpoint->Increment();
    return std::nullopt;
  }
  std::optional<SocketAddress> address = endpoints_[*index]->address();
  if (!address) return std::nullopt;  // usable() says resolved: cannot happen, but never connect nowhere
  EndpointState& endpoint = *endpoints_[*index];
  endpoint.active_.fetch_add(1, std::memory_order_relaxed);
  endpoint.metrics_.connections_active->Increment();
  metrics_.connections_active->Increment();
  return Choice{*index, *address};
}

void ClusterState::OnConnected(uint32_t index, absl::Duration connect_time) {
  metrics_.connect_duration->Observe(absl::ToDoubleSeconds(connect_time));
  EndpointState& endpoint = *endpoints_[index];
  endpoint.consecutive_failures_.store(0, std::memory_order_relaxed);
  endpoint.metrics_.connections_total->Increment();
}

void ClusterState::OnConnectFailed(uint32_t index) {
  EndpointState& endpoint = *endpoints_[index];
  metrics_.connect_failures->Increment();
  endpoint.metrics_.connect_failures->Increment();
  const uint32_t threshold = config_.outlier_detection.consecutive_failures;
  if (threshold == 0) return;
  const uint32_t failures = endpoint.consecutive_failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  // Exactly the failure that reaches the threshold ejects; the count starts again from 0, so an endpoint
  // still failing when it comes back is ejected again after as many failures.
  if (failures == threshold) {
    endpoint.consecutive_failures_.store(0, std::memory_order_relaxed);
    endpoint.ejected_until_ns_.store(NowNs() + absl::ToInt64Nanoseconds(config_.outlier_detection.ejection_time),
                                     std::memory_order_relaxed);
    endpoint.metrics_.ejections->Increment();
    endpoint.metrics_.ejected->Set(1);
    endpoint.metrics_.healthy->Set(0);
  }
}

void ClusterState::Release(uint32_t index) {
  EndpointState& endpoint = *endpoints_[index];
  endpoint.active_.fetch_sub(1, std::memory_order_relaxed);
  endpoint.metrics_.connections_active->Decrement();
  metrics_.connections_active->Decrement();
}

void ClusterState::CountCheck(size_t i, bool passed) {
  EndpointMetrics& m = endpoints_[i]->metrics_;
  (passed ? m.checks_passed : m.checks_failed)->Increment();
}

void ClusterState::CountResolution(size_t i, bool ok) {
  EndpointMetrics& m = endpoints_[i]->metrics_;
  (ok ? m.resolved : m.resolve_failed)->Increment();
}

void ClusterState::Refresh() {
  const int64_t now = NowNs();
  std::vector<bool> usable(endpoints_.size());
  size_t usable_count = 0;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    EndpointState& endpoint = *endpoints_[i];
    usable[i] = endpoint.usable(now);
    usable_count += usable[i];
    endpoint.metrics_.healthy->Set(usable[i] ? 1 : 0);
    endpoint.metrics_.ejected->Set(endpoint.ejected(now) ? 1 : 0);
  }
  metrics_.healthy_endpoints->Set(static_cast<double>(usable_count));
  if (usable != last_usable_) {
    last_usable_ = usable;
    balancer_->OnUsableChanged(usable);
  }
}

}  // namespace skproxy
