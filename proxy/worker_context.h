// What a worker's connections share: the ring, the kernel path (if on), metrics, and how to be reaped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bpf/loader.h"
#include "config/config.h"
#include "proxy/metrics.h"
#include "proxy/notice_ring.h"
#include "proxy/cluster.h"
#include "proxy/cluster_manager.h"
#include "proxy/connection_limit.h"
#include "proxy/ring.h"
#include "proxy/route_table.h"
#include "proxy/upstream_socket.h"

namespace skproxy {

class AccessLog;
class Connection;
class HttpPool;
class PathSwitches;

// One listener of one config generation. A connection takes a shared_ptr to it at accept and keeps the
// config snapshot and cluster it was accepted under until it ends, whatever a reload changes meanwhile.
struct ListenerContext {
  const config::Listener* config;
  ClusterState* cluster = nullptr;  // the default route; null when the listener has none
  ListenerMetrics metrics;
  // http and tls listeners, and any listener that requires the PROXY protocol, read before connecting.
  bool inspects = false;
  std::unique_ptr<RouteTable> routes;
  std::vector<ClusterState*> route_clusters;          // by route index
  std::vector<prometheus::Counter*> route_decisions;  // by route index, then "default", then "none"
  std::shared_ptr<const config::Config> snapshot;  // owns *config (and the clusters' config)
  // Owns *cluster and every route cluster: all clusters of the generation, and the thread that checks
  // their health. Declared after `snapshot`, so it stops before the config it reads goes.
  std::shared_ptr<ClusterManager> clusters;
  // max_connections of this listener, shared by every worker (a reload starts a new count).
  std::shared_ptr<ConnectionLimit> limit;
};

struct WorkerContext {
  Ring* ring;
  Metrics* metrics;
  bpf::SockmapProgram* sockmap;  // null: every connection takes the user-space path
  uint32_t index;                // this worker's notice ring in the kernel path
  NoticeTargets* notices;        // the kernel-path connections of this worker, by slot
  // Datapath auto without the kernel path: why (kernel_too_old, kernel_path_unavailable), counted as a
  // fallback for each connection; empty when nothing was wanted or the kernel path is on.
  std::string fallback_reason;
  const config::Sockmap* sockmap_config;
  // Datapath auto with the kernel path on: connections start on the user-space path and move into the
  // sockhash once they carry bulk (sockmap_config->promote_after_bytes). Forced sockmap inserts at once.
  bool promote;
  uint32_t userspace_connections = 0;  // connections of this worker on the user-space path now
  uint32_t kernel_connections = 0;     // and on the kernel path
  PathSwitches* switches = nullptr;    // samples kernel-path connections for demotion (datapath auto)
  std::vector<Connection*>* finished;  // connections that may be done: the worker reaps them
  AccessLog* access_log = nullptr;     // null: no access log
  HttpPool* http_pool = nullptr;       // idle keep-alive upstream connections (clusters' http_keepalive)
  UpstreamOptions upstream_options;    // how upstream sockets get theirs (proxy/upstream_socket.h)
};

}  // namespace skproxy
