#include "proxy/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <exception>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"

namespace skproxy {

const char* PathKindName(PathKind kind) { return kind == PathKind::kSockmap ? "sockmap" : "userspace"; }

const char* DirectionName(int direction) {
  return direction == SKP_DOWNSTREAM_TO_UPSTREAM ? "downstream_to_upstream" : "upstream_to_downstream";
}

// What the verdict program counted, read from its per-CPU map when /metrics is scraped.
class Metrics::KernelCollectable : public prometheus::Collectable {
 public:
  KernelCollectable(const bpf::SockmapProgram* program, const std::atomic<uint64_t>* user_bytes,
                    const ProcessState* state)
      : program_(program), user_bytes_(user_bytes), state_(state) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    bpf::StatsSnapshot stats{};
    uint64_t sockets = 0;
    uint64_t capacity = 0;
    if (program_ != nullptr) {
      stats = program_->ReadStats();
      sockets = program_->SocketsHeld();  // counted as sockets go in and out: no map walk per scrape
      capacity = program_->max_sockets();
    }
    std::vector<prometheus::MetricFamily> out;
    out.reserve(9);  // family() hands out references into `out`: it must not reallocate
    auto family = [&](const char* name, const char* help, prometheus::MetricType type) -> auto& {
      out.push_back(prometheus::MetricFamily{name, help, type, {}});
      return out.back().metric;
    };
    auto& bytes = family("skproxy_bytes_total", "Bytes proxied, by direction and by who moved them.",
                         prometheus::MetricType::Counter);
    auto& switches = family("skproxy_gate_switches_total",
                            "Times a direction of a kernel-path connection was handed to user space.",
                            prometheus::MetricType::Counter);
    uint64_t trimmed = 0;
    for (int d = 0; d < SKP_DIRECTIONS; ++d) {
      prometheus::ClientMetric m;
      m.label = {{"direction", DirectionName(d)}, {"path", "kernel"}};
      m.counter.value = static_cast<double>(stats[d][SKP_STAT_REDIRECTED_BYTES]);
      bytes.push_back(m);
      m.label = {{"direction", DirectionName(d)}, {"path", "user"}};
      m.counter.value = static_cast<double>(user_bytes_[d].load(std::memory_order_relaxed));
      bytes.push_back(m);
      prometheus::ClientMetric s;
      s.label = {{"direction", DirectionName(d)}};
      s.counter.value = static_cast<double>(stats[d][SKP_STAT_GATE_ENTER]);
      switches.push_back(s);
      trimmed += stats[d][SKP_STAT_TRIMMED_BYTES];
    }
    // Every other counter of the verdict, so that nothing it does is invisible.
    static constexpr std::pair<skp_stat, const char*> kEvents[] = {
        {SKP_STAT_GATE_EXIT, "gate_exit"},
        {SKP_STAT_OLD_SKBS_DROPPED, "old_skb_dropped"},
        {SKP_STAT_TRIM_SHORT, "trim_short"},
        {SKP_STAT_BROKEN_DROPS, "broken_skb_dropped"},
        {SKP_STAT_REDIRECT_ERRORS, "redirect_error"},
        {SKP_STAT_NO_STATE, "no_state"},
        {SKP_STAT_NOTICES, "notice"},
        {SKP_STAT_NOTICES_LOST, "notice_lost"},
    };
    auto& events = family("skproxy_verdict_events_total",
                          "What the verdict program did besides moving bytes, by event and direction.",
                          prometheus::MetricType::Counter);
    for (int d = 0; d < SKP_DIRECTIONS; ++d) {
      for (const auto& [stat, name] : kEvents) {
        prometheus::ClientMetric m;
        m.label = {{"direction", DirectionName(d)}, {"event", name}};
        m.counter.value = static_cast<double>(stats[d][stat]);
        events.push_back(m);
      }
    }
    prometheus::ClientMetric t;
    t.counter.value = static_cast<double>(trimmed);
    family("skproxy_trimmed_bytes_total", "Retransmitted bytes the verdict program removed.",
           prometheus::MetricType::Counter)
        .push_back(t);
    prometheus::ClientMetric e;
    e.gauge.value = static_cast<double>(sockets);
    family("skproxy_sockmap_entries", "Sockets in the sockhash now.", prometheus::MetricType::Gauge)
        .push_back(e);
    prometheus::ClientMetric c;
    c.gauge.value = static_cast<double>(capacity);
    family("skproxy_sockmap_capacity", "Sockets the sockhash can hold (sockmap.max_entries; 0 without the kernel path).",
           prometheus::MetricType::Gauge)
        .push_back(c);
    if (state_ != nullptr) {
      prometheus::ClientMetric d;
      d.gauge.value = state_->draining() ? 1 : 0;
      family("skproxy_draining", "1 while skproxy drains after SIGTERM/SIGINT, else 0.", prometheus::MetricType::Gauge)
          .push_back(d);
      prometheus::ClientMetric r;
      r.gauge.value = state_->ready() ? 1 : 0;
      family("skproxy_ready", "1 when /ready answers 200, else 0.", prometheus::MetricType::Gauge).push_back(r);
      prometheus::ClientMetric f;
      f.gauge.value = static_cast<double>(state_->failed_workers());
      family("skproxy_workers_failed", "Workers whose event loop failed and whose listeners were closed.",
             prometheus::MetricType::Gauge)
          .push_back(f);
    }
    return out;
  }

 private:
  const bpf::SockmapProgram* program_;
  const std::atomic<uint64_t>* user_bytes_;
  const ProcessState* state_;
};

Metrics::Metrics(const bpf::SockmapProgram* program, const ProcessState* state)
    : registry_(std::make_shared<prometheus::Registry>()),
      kernel_(std::make_shared<KernelCollectable>(program, user_bytes_, state)),
      connections_total_(prometheus::BuildCounter()
                             .Name("skproxy_connections_total")
                             .Help("Client connections accepted, by listener and data path.")
                             .Register(*registry_)),
      connections_active_(prometheus::BuildGauge()
                              .Name("skproxy_connections_active")
                              .Help("Client connections open now, by listener and data path.")
                              .Register(*registry_)),
      fallbacks_(prometheus::BuildCounter()
                     .Name("skproxy_fallbacks_total")
                     .Help("Connections that took the user-space path although the kernel path was on.")
                     .Register(*registry_)),
      connect_failures_(prometheus::BuildCounter()
                            .Name("skproxy_upstream_connect_failures_total")
                            .Help("Upstream connection attempts that failed or timed out, by cluster.")
                            .Register(*registry_)),
      connect_duration_(prometheus::BuildHistogram()
                            .Name("skproxy_upstream_connect_duration_seconds")
                            .Help("Time from submitting an upstream connect to its success, by cluster.")
                            .Register(*registry_)),
      pipe_errors_(prometheus::BuildCounter()
                       .Name("skproxy_pipe_errors_total")
                       .Help("Connections reset because a data-path operation failed, by operation.")
                       .Register(*registry_)),
      datapath_switches_(prometheus::BuildCounter()
                             .Name("skproxy_datapath_switches_total")
                             .Help("Connections moved from one data path to the other, by the path they moved to.")
                             .Register(*registry_)),
      sockmap_leaves_(prometheus::BuildCounter()
                          .Name("skproxy_sockmap_leaves_total")
                          .Help("Attempts of held (demoted) connections to leave the sockhash, by result.")
                          .Register(*registry_)),
      resource_errors_(prometheus::BuildCounter()
                           .Name("skproxy_resource_errors_total")
                           .Help("Client connections closed because skproxy ran out of descriptors or memory.")
                           .Register(*registry_)),
      socket_option_failures_(prometheus::BuildCounter()
                                  .Name("skproxy_socket_option_failures_total")
                                  .Help("Socket options the kernel refused when set through io_uring; the "
                                        "connection went on without the option.")
                                  .Register(*registry_)),
      route_decisions_(prometheus::BuildCounter()
                           .Name("skproxy_route_decisions_total")
                           .Help("Connections routed by an http or tls listener, by listener and route.")
                           .Register(*registry_)),
      local_responses_(prometheus::BuildCounter()
                           .Name("skproxy_local_responses_total")
                           .Help("HTTP responses skproxy sent itself, by listener and status.")
                           .Register(*registry_)),
      inspection_failures_(prometheus::BuildCounter()
                               .Name("skproxy_inspection_failures_total")
                               .Help("Connections closed or answered while inspecting, by listener and reason.")
                               .Register(*registry_)),
      rejected_(prometheus::BuildCounter()
                 .Name("skproxy_connections_rejected_total")
                 .Help("Client connections closed at once, by listener and reason (a limit, or no healthy endpoint).")
                 .Register(*registry_)),
      idle_timeouts_(prometheus::BuildCounter()
                 .Name("skproxy_idle_timeouts_total")
                 .Help("Connections closed because neither direction moved a byte for idle_timeout, by listener.")
                 .Register(*registry_)),
      cluster_active_(prometheus::BuildGauge()
                 .Name("skproxy_cluster_connections_active")
                 .Help("Upstream connections open now (connecting or established), by cluster.")
                 .Register(*registry_)),
      cluster_healthy_(prometheus::BuildGauge()
                 .Name("skproxy_cluster_healthy_endpoints")
                 .Help("Endpoints that may take new connections now, by cluster.")
                 .Register(*registry_)),
      cluster_rejections_(prometheus::BuildCounter()
                 .Name("skproxy_cluster_rejections_total")
                 .Help("Client connections a cluster refused, by cluster and reason (max_connections, no_healthy_endpoint).")
                 .Register(*registry_)),
      pool_requests_(prometheus::BuildCounter()
                 .Name("skproxy_http_pool_requests_total")
                 .Help("HTTP requests sent over a cluster's keep-alive pool, by cluster and result (hit: an open connection was reused, from the pool or kept from the client's previous request; miss: a new one was connected).")
                 .Register(*registry_)),
      pool_idle_(prometheus::BuildGauge()
                 .Name("skproxy_http_pool_idle_connections")
                 .Help("Idle keep-alive upstream connections held now, all workers, by cluster.")
                 .Register(*registry_)),
      pool_retries_(prometheus::BuildCounter()
                 .Name("skproxy_http_pool_retries_total")
                 .Help("Requests that failed on a reused connection before any response byte and were sent again on a new one, by cluster.")
                 .Register(*registry_)),
      response_timeouts_(prometheus::BuildCounter()
                 .Name("skproxy_upstream_response_timeouts_total")
                 .Help("HTTP requests whose upstream let response_timeout pass without progress, by cluster and stage (before_response: answered 504; mid_response: the client was reset).")
                 .Register(*registry_)),
      endpoint_healthy_(prometheus::BuildGauge()
                 .Name("skproxy_endpoint_healthy")
                 .Help("1 when the endpoint may take new connections (resolved, passing its health checks, not ejected).")
                 .Register(*registry_)),
      endpoint_ejected_(prometheus::BuildGauge()
                 .Name("skproxy_endpoint_ejected")
                 .Help("1 while outlier detection keeps the endpoint out.")
                 .Register(*registry_)),
      endpoint_active_(prometheus::BuildGauge()
                 .Name("skproxy_endpoint_connections_active")
                 .Help("Upstream connections open now (connecting or established), by endpoint.")
                 .Register(*registry_)),
      endpoint_total_(prometheus::BuildCounter()
                 .Name("skproxy_endpoint_connections_total")
                 .Help("Upstream connections established, by endpoint.")
                 .Register(*registry_)),
      endpoint_failures_(prometheus::BuildCounter()
                 .Name("skproxy_endpoint_connect_failures_total")
                 .Help("Upstream connects that failed or timed out, by endpoint.")
                 .Register(*registry_)),
      ejections_(prometheus::BuildCounter()
                 .Name("skproxy_endpoint_ejections_total")
                 .Help("Times outlier detection ejected the endpoint.")
                 .Register(*registry_)),
      health_checks_(prometheus::BuildCounter()
                 .Name("skproxy_health_checks_total")
                 .Help("Active health checks, by endpoint and result (pass, fail).")
                 .Register(*registry_)),
      dns_(prometheus::BuildCounter()
                 .Name("skproxy_dns_resolutions_total")
                 .Help("Resolutions of host-name endpoints, by endpoint and result (ok, fail).")
                 .Register(*registry_)),
      dns_addresses_(prometheus::BuildGauge()
                 .Name("skproxy_dns_addresses")
                 .Help("Addresses a host-name endpoint expands to now (each an endpoint of its cluster).")
                 .Register(*registry_)),
      reloads_(prometheus::BuildCounter()
                   .Name("skproxy_reloads_total")
                   .Help("Config reloads (SIGHUP, POST /reload), by result: success or failure.")
                   .Register(*registry_)),
      last_reload_success_(prometheus::BuildGauge()
                               .Name("skproxy_last_reload_success")
                               .Help("1 if the last reload was applied (or none was tried), 0 if it was refused.")
                               .Register(*registry_)
                               .Add({})) {
  last_reload_success_.Set(1);
  for (const char* result : {"success", "failure"}) reloads_.Add({{"result", result}});
  for (const char* result : {"left", "stayed"}) sockmap_leaves_.Add({{"result", result}});
}

ListenerMetrics Metrics::ForListener(const std::string& listener) {
  ListenerMetrics m;
  for (PathKind kind : {PathKind::kSockmap, PathKind::kUserspace}) {
    const int i = static_cast<int>(kind);
    m.connections_total[i] = &connections_total_.Add({{"listener", listener}, {"datapath", PathKindName(kind)}});
    m.connections_active[i] = &connections_active_.Add({{"listener", listener}, {"datapath", PathKindName(kind)}});
  }
  m.rejected_listener_limit = &rejected_.Add({{"listener", listener}, {"reason", "listener_max_connections"}});
  m.rejected_cluster_limit = &rejected_.Add({{"listener", listener}, {"reason", "cluster_max_connections"}});
  m.rejected_no_endpoint = &rejected_.Add({{"listener", listener}, {"reason", "no_healthy_endpoint"}});
  m.idle_timeouts = &idle_timeouts_.Add({{"listener", listener}});
  return m;
}

ClusterMetrics Metrics::ForCluster(const std::string& cluster) {
  ClusterMetrics m;
  m.connect_failures = &ConnectFailures(cluster);
  m.connect_duration = &ConnectDuration(cluster);
  m.connections_active = &cluster_active_.Add({{"cluster", cluster}});
  m.healthy_endpoints = &cluster_healthy_.Add({{"cluster", cluster}});
  m.overflow = &cluster_rejections_.Add({{"cluster", cluster}, {"reason", "max_connections"}});
  m.no_healthy_endpoint = &cluster_rejections_.Add({{"cluster", cluster}, {"reason", "no_healthy_endpoint"}});
  m.pool_hits = &pool_requests_.Add({{"cluster", cluster}, {"result", "hit"}});
  m.pool_misses = &pool_requests_.Add({{"cluster", cluster}, {"result", "miss"}});
  m.pool_idle = &pool_idle_.Add({{"cluster", cluster}});
  m.pool_retries = &pool_retries_.Add({{"cluster", cluster}});
  m.response_timeouts_before = &response_timeouts_.Add({{"cluster", cluster}, {"stage", "before_response"}});
  m.response_timeouts_mid = &response_timeouts_.Add({{"cluster", cluster}, {"stage", "mid_response"}});
  return m;
}

EndpointMetrics Metrics::AcquireEndpoint(const std::string& cluster, const std::string& endpoint) {
  absl::MutexLock lock(&endpoints_mu_);
  auto& [count, m] = endpoints_[{cluster, endpoint}];
  if (count++ > 0) return m;
  const std::map<std::string, std::string> labels{{"cluster", cluster}, {"endpoint", endpoint}};
  auto with = [&](const char* key, const char* value) {
    auto l = labels;
    l[key] = value;
    return l;
  };
  m.healthy = &endpoint_healthy_.Add(labels);
  m.ejected = &endpoint_ejected_.Add(labels);
  m.connections_active = &endpoint_active_.Add(labels);
  m.connections_total = &endpoint_total_.Add(labels);
  m.connect_failures = &endpoint_failures_.Add(labels);
  m.ejections = &ejections_.Add(labels);
  m.checks_passed = &health_checks_.Add(with("result", "pass"));
  m.checks_failed = &health_checks_.Add(with("result", "fail"));
  return m;
}

void Metrics::ReleaseEndpoint(const std::string& cluster, const std::string& endpoint) {
  absl::MutexLock lock(&endpoints_mu_);
  auto it = endpoints_.find(std::make_pair(cluster, endpoint));
  if (it == endpoints_.end() || --it->second.first > 0) return;
  const EndpointMetrics& m = it->second.second;
  endpoint_healthy_.Remove(m.healthy);
  endpoint_ejected_.Remove(m.ejected);
  endpoint_active_.Remove(m.connections_active);
  endpoint_total_.Remove(m.connections_total);
  endpoint_failures_.Remove(m.connect_failures);
  ejections_.Remove(m.ejections);
  health_checks_.Remove(m.checks_passed);
  health_checks_.Remove(m.checks_failed);
  endpoints_.erase(it);
}

NameMetrics Metrics::ForName(const std::string& cluster, const std::string& endpoint) {
  NameMetrics m;
  m.resolved = &dns_.Add({{"cluster", cluster}, {"endpoint", endpoint}, {"result", "ok"}});
  m.resolve_failed = &dns_.Add({{"cluster", cluster}, {"endpoint", endpoint}, {"result", "fail"}});
  m.addresses = &dns_addresses_.Add({{"cluster", cluster}, {"endpoint", endpoint}});
  return m;
}

prometheus::Counter& Metrics::ConnectFailures(const std::string& cluster) {
  return connect_failures_.Add({{"cluster", cluster}});
}

prometheus::Histogram& Metrics::ConnectDuration(const std::string& cluster) {
  // 100 us (a loopback or same-host connect) to 10 s (past any sane connect_timeout), 1-2.5-5 per decade.
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return connect_duration_.Add({{"cluster", cluster}}, kBuckets);
}

prometheus::Counter& Metrics::Fallback(const std::string& reason) { return fallbacks_.Add({{"reason", reason}}); }

prometheus::Counter& Metrics::ResourceErrors(const std::string& reason) {
  return resource_errors_.Add({{"reason", reason}});
}

std::string Metrics::Render() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  std::vector<prometheus::MetricFamily> kernel = kernel_->Collect();
  families.insert(families.end(), std::make_move_iterator(kernel.begin()), std::make_move_iterator(kernel.end()));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace skproxy
