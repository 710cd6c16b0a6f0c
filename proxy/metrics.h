// The process's metrics registry, rendered as Prometheus text for the admin server's /metrics. Kernel-path
// byte counts are not counted here: the verdict program counts them in a per-CPU map, read at scrape time.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "bpf/loader.h"
#include "config/address.h"
#include "proxy/process_state.h"

namespace skproxy {

enum class PathKind { kSockmap, kUserspace };
const char* PathKindName(PathKind kind);  // "sockmap" | "userspace"

// Counters of one listener, resolved once so the data path only increments.
struct ListenerMetrics {
  prometheus::Counter* connections_total[2];   // by PathKind
  prometheus::Gauge* connections_active[2];
  // skproxy_connections_rejected_total{listener, reason}: closed at once, before any upstream connect.
  prometheus::Counter* rejected_listener_limit;  // reason="listener_max_connections"
  prometheus::Counter* rejected_cluster_limit;   // reason="cluster_max_connections"
  prometheus::Counter* rejected_no_endpoint;     // reason="no_healthy_endpoint"
  prometheus::Counter* idle_timeouts;            // skproxy_idle_timeouts_total{listener}
};

// One cluster (label cluster=NAME).
struct ClusterMetrics {
  prometheus::Counter* connect_failures;     // skproxy_upstream_connect_failures_total
  prometheus::Histogram* connect_duration;   // skproxy_upstream_connect_duration_seconds (successful connects)
  prometheus::Gauge* connections_active;     // skproxy_cluster_connections_active
  prometheus::Gauge* healthy_endpoints;      // skproxy_cluster_healthy_endpoints
  prometheus::Counter* overflow;             // skproxy_cluster_rejections_total{reason="max_connections"}
  prometheus::Counter* no_healthy_endpoint;  // skproxy_cluster_rejections_total{reason="no_healthy_endpoint"}
  // http_keepalive (proxy/http_pool.h): requests served by an open upstream connection, requests that had
  // to connect, idle connections held now (all workers), and requests retried on a fresh connection.
  prometheus::Counter* pool_hits;     // skproxy_http_pool_requests_total{result="hit"}
  prometheus::Counter* pool_misses;   // skproxy_http_pool_requests_total{result="miss"}
  prometheus::Gauge* pool_idle;       // skproxy_http_pool_idle_connections
  prometheus::Counter* pool_retries;  // skproxy_http_pool_retries_total
  // skproxy_upstream_response_timeouts_total: response_timeout expired before any response byte reached the
  // client (answered 504) / after (the client was reset).
  prometheus::Counter* response_timeouts_before;  // stage="before_response"
  prometheus::Counter* response_timeouts_mid;     // stage="mid_response"
};

// One endpoint of a cluster (labels cluster=NAME, endpoint="host:port" as configured).
struct EndpointMetrics {
  prometheus::Gauge* healthy;              // skproxy_endpoint_healthy: 1 when it may take new connections
  prometheus::Gauge* ejected;              // skproxy_endpoint_ejected: 1 while outlier detection ejects it
  prometheus::Gauge* connections_active;   // skproxy_endpoint_connections_active (connecting or established)
  prometheus::Counter* connections_total;  // skproxy_endpoint_connections_total (established)
  prometheus::Counter* connect_failures;   // skproxy_endpoint_connect_failures_total
  prometheus::Counter* ejections;          // skproxy_endpoint_ejections_total
  prometheus::Counter* checks_passed;      // skproxy_health_checks_total{result="pass"}
  prometheus::Counter* checks_failed;      // skproxy_health_checks_total{result="fail"}
};

// One host-name endpoint as configured (labels cluster=NAME, endpoint="name:port").
struct NameMetrics {
  prometheus::Counter* resolved;        // skproxy_dns_resolutions_total{result="ok"}
  prometheus::Counter* resolve_failed;  // skproxy_dns_resolutions_total{result="fail"}: the last answer is kept
  prometheus::Gauge* addresses;         // skproxy_dns_addresses: the endpoints the name expands to now
};

class Metrics {
 public:
  // program may be null (user-space only); state is read at scrape time.
  Metrics(const bpf::SockmapProgram* program, const ProcessState* state);

  ListenerMetrics ForListener(const std::string& listener);
  ClusterMetrics ForCluster(const std::string& cluster);
  // One endpoint's series (an address as configured, or one address of a name), shared by every config
  // generation that has it: created by the first Acquire, removed by the last Release, so that addresses
  // DNS no longer gives do not pile up series once their last connection is gone.
  EndpointMetrics AcquireEndpoint(const std::string& cluster, const std::string& endpoint);
  void ReleaseEndpoint(const std::string& cluster, const std::string& endpoint);
  NameMetrics ForName(const std::string& cluster, const std::string& endpoint);
  prometheus::Counter& ConnectFailures(const std::string& cluster);
  // From the connect's submission to its completion, successful connects only, by cluster.
  prometheus::Histogram& ConnectDuration(const std::string& cluster);
  prometheus::Counter& Fallback(const std::string& reason);
  // A socket call on the data path that failed where it must not (op: "shutdown", "rcvlowat", ...), or a
  // connection reset by the kernel path ("trim_short"): each resets the connection, counted here.
  prometheus::Counter& PipeError(const std::string& op) { return pipe_errors_.Add({{"op", op}}); }
  // A connection moved between data paths (to: "kernel" | "user").
  prometheus::Counter& DatapathSwitch(const std::string& to) { return datapath_switches_.Add({{"to", to}}); }
  // A held connection's attempt to leave the sockhash (result: "left", both legs out and the connection
  // on the user-space pipe; "stayed", a leg's verdict passed bytes meanwhile or a leg is ending).
  prometheus::Counter& SockmapLeave(const std::string& result) { return sockmap_leaves_.Add({{"result", result}}); }
  // Connections closed because the process ran out of a resource (reason: emfile, enfile, enobufs, enomem).
  prometheus::Counter& ResourceErrors(const std::string& reason);
  // skproxy_socket_option_failures_total: options the kernel refused when set through io_uring.
  prometheus::Counter& SocketOptionFailures() { return socket_option_failures_.Add({}); }
  // L7 listeners: which route a connection took (route: its name, "default", or "none" when nothing
  // matched and there is no default), the responses skproxy sent itself, and why an inspection failed.
  prometheus::Counter& RouteDecision(const std::string& listener, const std::string& route) {
    return route_decisions_.Add({{"listener", listener}, {"route", route}});
  }
  prometheus::Counter& LocalResponse(const std::string& listener, int status) {
    return local_responses_.Add({{"listener", listener}, {"status", std::to_string(status)}});
  }
  prometheus::Counter& InspectionFailure(const std::string& listener, const std::string& reason) {
    return inspection_failures_.Add({{"listener", listener}, {"reason", reason}});
  }
  // Bytes user space copied, direction = enum skp_direction. Exposed with the kernel's count as
  // skproxy_bytes_total{path="user"}, so one family holds both.
  std::atomic<uint64_t>& UserBytes(int direction) { return user_bytes_[direction]; }

  // A reload (SIGHUP, POST /reload) was applied, or refused.
  void CountReload(bool success) {
    reloads_.Add({{"result", success ? "success" : "failure"}}).Increment();
    last_reload_success_.Set(success ? 1 : 0);
  }

  // Every metric in the Prometheus text format (version 0.0.4), for /metrics.
  std::string Render() const;

  std::shared_ptr<prometheus::Registry> registry() { return registry_; }

 private:
  class KernelCollectable;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<KernelCollectable> kernel_;  // keeps a pointer to user_bytes_ only
  prometheus::Family<prometheus::Counter>& connections_total_;
  prometheus::Family<prometheus::Gauge>& connections_active_;
  prometheus::Family<prometheus::Counter>& fallbacks_;
  prometheus::Family<prometheus::Counter>& connect_failures_;
  prometheus::Family<prometheus::Histogram>& connect_duration_;
  prometheus::Family<prometheus::Counter>& pipe_errors_;
  prometheus::Family<prometheus::Counter>& datapath_switches_;
  prometheus::Family<prometheus::Counter>& sockmap_leaves_;
  prometheus::Family<prometheus::Counter>& resource_errors_;
  prometheus::Family<prometheus::Counter>& socket_option_failures_;
  prometheus::Family<prometheus::Counter>& route_decisions_;
  prometheus::Family<prometheus::Counter>& local_responses_;
  prometheus::Family<prometheus::Counter>& inspection_failures_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Family<prometheus::Counter>& idle_timeouts_;
  prometheus::Family<prometheus::Gauge>& cluster_active_;
  prometheus::Family<prometheus::Gauge>& cluster_healthy_;
  prometheus::Family<prometheus::Counter>& cluster_rejections_;
  prometheus::Family<prometheus::Counter>& pool_requests_;
  prometheus::Family<prometheus::Gauge>& pool_idle_;
  prometheus::Family<prometheus::Counter>& pool_retries_;
  prometheus::Family<prometheus::Counter>& response_timeouts_;
  prometheus::Family<prometheus::Gauge>& endpoint_healthy_;
  prometheus::Family<prometheus::Gauge>& endpoint_ejected_;
  prometheus::Family<prometheus::Gauge>& endpoint_active_;
  prometheus::Family<prometheus::Counter>& endpoint_total_;
  prometheus::Family<prometheus::Counter>& endpoint_failures_;
  prometheus::Family<prometheus::Counter>& ejections_;
  prometheus::Family<prometheus::Counter>& health_checks_;
  prometheus::Family<prometheus::Counter>& dns_;
  prometheus::Family<prometheus::Gauge>& dns_addresses_;
  absl::Mutex endpoints_mu_;
  absl::flat_hash_map<std::pair<std::string, std::string>, std::pair<int, EndpointMetrics>> endpoints_
      ABSL_GUARDED_BY(endpoints_mu_);
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Gauge& last_reload_success_;
  std::atomic<uint64_t> user_bytes_[2] = {};
};

const char* DirectionName(int direction);  // "downstream_to_upstream" | "upstream_to_downstream"

}  // namespace skproxy
