// The process's metrics registry, rendered as Prometheus text for the admin server's /metrics. Kernel-path
// byte counts are not counted here: the verdict program counts them in a per-CPU map, read at scrape time.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
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
};

class Metrics {
 public:
  // program may be null (user-space only); state is read at scrape time.
  Metrics(const bpf::SockmapProgram* program, const ProcessState* state);

  ListenerMetrics ForListener(const std::string& listener);
  prometheus::Counter& ConnectFailures(const std::string& cluster);
  prometheus::Counter& Fallback(const std::string& reason);
  // A socket call on the data path that failed where it must not (op: "shutdown", "rcvlowat", ...), or a
  // connection reset by the kernel path ("trim_short"): each resets the connection, counted here.
  prometheus::Counter& PipeError(const std::string& op) { return pipe_errors_.Add({{"op", op}}); }
  // A connection moved between data paths (to: "kernel" | "user").
  prometheus::Counter& DatapathSwitch(const std::string& to) { return datapath_switches_.Add({{"to", to}}); }
  // Connections closed because the process ran out of a resource (reason: emfile, enfile, enobufs, enomem).
  prometheus::Counter& ResourceErrors(const std::string& reason);
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
  prometheus::Family<prometheus::Counter>& pipe_errors_;
  prometheus::Family<prometheus::Counter>& datapath_switches_;
  prometheus::Family<prometheus::Counter>& resource_errors_;
  prometheus::Family<prometheus::Counter>& route_decisions_;
  prometheus::Family<prometheus::Counter>& local_responses_;
  prometheus::Family<prometheus::Counter>& inspection_failures_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Gauge& last_reload_success_;
  std::atomic<uint64_t> user_bytes_[2] = {};
};

const char* DirectionName(int direction);  // "downstream_to_upstream" | "upstream_to_downstream"

}  // namespace skproxy
