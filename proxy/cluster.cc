#include "proxy/cluster.h"

#include <time.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace skproxy {
namespace {

// "10.0.0.7" or "2001:db8::7": the address without its port (the name's label already has the port).
std::string HostOf(const SocketAddress& address) {
  std::string text = address.ToString();
  text.erase(text.rfind(':'));
  if (!text.empty() && text.front() == '[') text = text.substr(1, text.size() - 2);
  return text;
}

}  // namespace

EndpointState::EndpointState(const config::Endpoint& config, const SocketAddress& address, std::string label,
                             const std::string& cluster, Metrics& metrics)
    : config_(config),
      address_(address),
      label_(std::move(label)),
      cluster_(cluster),
      metrics_owner_(metrics),
      metrics_(metrics.AcquireEndpoint(cluster, label_)) {}

EndpointState::~EndpointState() { metrics_owner_.ReleaseEndpoint(cluster_, label_); }

void EndpointState::SetHealthy(bool healthy) { healthy_.store(healthy, std::memory_order_relaxed); }

void EndpointState::CountCheck(bool passed) { (passed ? metrics_.checks_passed : metrics_.checks_failed)->Increment(); }

int64_t ClusterState::NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

ClusterState::ClusterState(const config::Cluster& config, Metrics& metrics)
    : config_(config),
      metrics_registry_(metrics),
      metrics_(metrics.ForCluster(config.name)),
      limit_(config.max_connections) {
  needs_client_address_ = config.lb_policy == config::LbPolicy::kMaglev || config.lb_policy == config::LbPolicy::kRingHash;
  by_config_.resize(config.endpoints.size());
  name_metrics_.resize(config.endpoints.size());
  for (size_t i = 0; i < config.endpoints.size(); ++i) {
    const config::Endpoint& endpoint = config.endpoints[i];
    if (endpoint.is_name) {
      name_metrics_[i] = metrics.ForName(config.name, endpoint.ToString());
      continue;
    }
    by_config_[i].push_back(
        std::make_shared<EndpointState>(endpoint, endpoint.address, endpoint.ToString(), config_.name, metrics));
  }
  Rebuild();
  Refresh();
}

std::shared_ptr<const HostSet> ClusterState::hosts() const {
  absl::ReaderMutexLock lock(&mu_);
  return hosts_;
}

bool ClusterState::HasHealthyEndpoint() const {
  const int64_t now = NowNs();
  const std::shared_ptr<const HostSet> set = hosts();
  return std::any_of(set->endpoints.begin(), set->endpoints.end(), [&](const auto& e) { return e->usable(now); });
}

std::shared_ptr<EndpointState> ClusterState::Pick(const SocketAddress* client,
                                                  const std::vector<const EndpointState*>& tried) {
  const int64_t now = NowNs();
  const std::shared_ptr<const HostSet> set = hosts();
  const auto& endpoints = set->endpoints;
  auto eligible = [&](uint32_t i) {
    return endpoints[i]->usable(now) && std::find(tried.begin(), tried.end(), endpoints[i].get()) == tried.end();
  };
  auto active = [&](uint32_t i) { return endpoints[i]->active(); };
  std::optional<uint32_t> index;
  if (!endpoints.empty()) {
    LbRequest request{client != nullptr ? ClientAddressHash(*client) : 0, eligible, active};
    index = set->balancer->Choose(request);
  }
  if (!index) {
    if (tried.empty()) metrics_.no_healthy_endpoint->Increment();
    return nullptr;
  }
  std::shared_ptr<EndpointState> endpoint = endpoints[*index];
  endpoint->active_.fetch_add(1, std::memory_order_relaxed);
  endpoint->metrics_.connections_active->Increment();
  metrics_.connections_active->Increment();
  return endpoint;
}

void ClusterState::OnConnected(EndpointState& endpoint, absl::Duration connect_time) {
  metrics_.connect_duration->Observe(absl::ToDoubleSeconds(connect_time));
  endpoint.consecutive_failures_.store(0, std::memory_order_relaxed);
  endpoint.metrics_.connections_total->Increment();
}

void ClusterState::OnConnectFailed(EndpointState& endpoint) {
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

void ClusterState::Release(EndpointState& endpoint) {
  endpoint.active_.fetch_sub(1, std::memory_order_relaxed);
  endpoint.metrics_.connections_active->Decrement();
  metrics_.connections_active->Decrement();
}

bool ClusterState::SetAddresses(size_t config_index, const std::vector<SocketAddress>& addresses) {
  const config::Endpoint& endpoint = config_.endpoints[config_index];
  std::vector<std::shared_ptr<EndpointState>>& current = by_config_[config_index];
  std::vector<std::shared_ptr<EndpointState>> next;
  bool changed = false;
  for (const SocketAddress& address : addresses) {
    auto same = [&](const std::shared_ptr<EndpointState>& e) {
      return &e->config() == &endpoint && e->address() == address;
    };
    if (auto it = std::find_if(current.begin(), current.end(), same); it != current.end()) {
      next.push_back(*it);
      continue;
    }
    changed = true;
    // An address that comes back while its connections still drain is the same endpoint again: its counts
    // and its health go on.
    if (auto it = std::find_if(draining_.begin(), draining_.end(), same); it != draining_.end()) {
      (*it)->removed_.store(false, std::memory_order_relaxed);
      next.push_back(*it);
      draining_.erase(it);
      continue;
    }
    next.push_back(std::make_shared<EndpointState>(
        endpoint, address, absl::StrCat(endpoint.ToString(), "/", HostOf(address)), config_.name, metrics_registry_));
  }
  for (std::shared_ptr<EndpointState>& old : current) {
    if (std::find(next.begin(), next.end(), old) != next.end()) continue;
    changed = true;
    old->removed_.store(true, std::memory_order_relaxed);
    old->metrics_.healthy->Set(0);
    draining_.push_back(std::move(old));
  }
  current = std::move(next);
  name_metrics_[config_index]->addresses->Set(static_cast<double>(current.size()));
  if (changed) Rebuild();
  return changed;
}

void ClusterState::CountResolution(size_t config_index, bool ok) {
  const NameMetrics& m = *name_metrics_[config_index];
  (ok ? m.resolved : m.resolve_failed)->Increment();
}

void ClusterState::Rebuild() {
  auto set = std::make_shared<HostSet>();
  std::vector<std::string> keys;
  std::vector<uint32_t> weights;
  for (const auto& endpoints : by_config_) {
    for (const std::shared_ptr<EndpointState>& endpoint : endpoints) {
      set->endpoints.push_back(endpoint);
      keys.push_back(endpoint->label());
      weights.push_back(endpoint->config().weight);
    }
  }
  if (!set->endpoints.empty()) {  // none while no name has resolved yet: a pick finds nothing
    set->balancer = LoadBalancer::Create(config_.lb_policy, keys, weights);
    // Built with what is usable now, so that Maglev's first table leaves out what cannot take connections.
    const int64_t now = NowNs();
    std::vector<bool> usable(set->endpoints.size());
    for (size_t i = 0; i < usable.size(); ++i) usable[i] = set->endpoints[i]->usable(now);
    set->balancer->OnUsableChanged(usable);
  }
  absl::MutexLock lock(&mu_);
  hosts_ = std::move(set);
}

void ClusterState::Refresh() {
  const int64_t now = NowNs();
  const std::shared_ptr<const HostSet> set = hosts();
  std::vector<bool> usable(set->endpoints.size());
  size_t usable_count = 0;
  for (size_t i = 0; i < set->endpoints.size(); ++i) {
    EndpointState& endpoint = *set->endpoints[i];
    usable[i] = endpoint.usable(now);
    usable_count += usable[i];
    endpoint.metrics_.healthy->Set(usable[i] ? 1 : 0);
    endpoint.metrics_.ejected->Set(endpoint.ejected(now) ? 1 : 0);
  }
  metrics_.healthy_endpoints->Set(static_cast<double>(usable_count));
  if (set != last_refreshed_ || usable != last_usable_) {
    last_refreshed_ = set;
    last_usable_ = usable;
    if (!set->endpoints.empty()) set->balancer->OnUsableChanged(usable);
  }
  // A drained endpoint is held by nothing but this list (no host set has it, no connection holds it, and
  // only this thread could hand it out again): let it go, and its series with it.
  draining_.erase(std::remove_if(draining_.begin(), draining_.end(),
                                 [](const std::shared_ptr<EndpointState>& e) { return e.use_count() == 1; }),
                  draining_.end());
}

}  // namespace skproxy
