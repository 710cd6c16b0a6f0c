// The configuration schema as plain structs, and the parser that fills them from YAML with errors that
// name FILE:LINE: key. The proxy only ever sees a validated Config.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "config/address.h"

namespace skproxy::config {

enum class DatapathMode { kAuto, kSockmap, kUserspace };
std::string_view DatapathModeName(DatapathMode mode);  // "auto" | "sockmap" | "userspace"
absl::StatusOr<DatapathMode> ParseDatapathMode(std::string_view text);

struct Admin {
  SocketAddress address;  // default 127.0.0.1:9901
};

// Tuning of the kernel path (see bpf/verdict.bpf.c for what each knob bounds).
struct Sockmap {
  uint32_t max_entries = 65536;             // sockets in the SOCKHASH (2 per connection)
  uint64_t gate_limit_bytes = 8ull << 20;   // per direction: peer write queue + psock backlog before user mode
  uint32_t receive_buffer_bytes = 1u << 20; // SO_RCVBUF forced on both legs (>= 512 KiB: see the notes)
  // datapath auto: a connection starts on the user-space path and moves into the sockhash once one
  // direction has read this many bytes in full buffers back to back (a bulk flow); 0 inserts at once.
  uint64_t promote_after_bytes = 1ull << 20;
  // datapath auto: a connection that has exchanged 64 messages also moves when its worker has at most this
  // many connections on the user-space path (the kernel path wins latency at low concurrency, the
  // user-space path throughput at high concurrency); 0: never.
  uint32_t quiet_worker_connections = 4;
  // datapath auto: a kernel-path connection whose messages (skbs, both directions) averaged fewer than this
  // many bytes over one switch_interval, with at least demote_after_messages of them, moves back to the
  // user-space path while its worker has more than quiet_worker_connections connections; a held
  // connection moves into the kernel again once it carries promote_after bytes in one interval, in
  // messages of at least this mean size. 0: never demote. See docs/adaptive-datapath.md.
  uint64_t demote_below_bytes = 1024;
  uint32_t demote_after_messages = 16;
  absl::Duration switch_interval = absl::Milliseconds(100);  // how often the switch samples a connection
};

// What a listener reads from a client before it picks a cluster (docs/l7-routing.md).
enum class ListenerProtocol { kTcp, kHttp, kTls };
std::string_view ListenerProtocolName(ListenerProtocol protocol);  // "tcp" | "http" | "tls"

// The PROXY protocol (HAProxy's proxy-protocol.txt): a listener may require it from a load balancer in
// front, a cluster may send it to its endpoints.
enum class ProxyProtocolVersion { kNone, kV1, kV2 };

// A route's conditions; every one that is set must hold. Host names are stored lower case.
struct RouteMatch {
  std::string host;         // http: "api.example.com" or "*.example.com" (one or more labels)
  std::string path_prefix;  // http: "/v1/"
  std::string sni;          // tls: same forms as host
};

struct Route {
  std::string name;  // the metric label: `name:` or "routes[N]"
  RouteMatch match;
  std::string cluster;
  int line = 0;
};

// How much and how long a listener reads before it routes (HAProxy inspect-delay, nginx preread_*).
struct Inspect {
  uint32_t max_bytes = 16 << 10;
  absl::Duration timeout = absl::Seconds(5);
};

struct Listener {
  std::string name;
  SocketAddress address;
  ListenerProtocol protocol = ListenerProtocol::kTcp;
  std::vector<Route> routes;  // first match wins
  Inspect inspect;
  ProxyProtocolVersion proxy_protocol = ProxyProtocolVersion::kNone;  // required from clients when set
  bool x_forwarded_for = false;  // http: append X-Forwarded-For with the client's address to the head
  // The default route; empty for a transparent listener, and on an http or tls listener where no match
  // closes (tls) or answers 404 (http).
  std::string cluster;
  // Transparent (sidecar) mode: connections arrive redirected by nftables (deploy/sidecar/) and each goes
  // to the destination its client asked for, read from conntrack (SO_ORIGINAL_DST), instead of a cluster.
  bool transparent = false;
  absl::Duration connect_timeout = absl::Seconds(5);  // transparent only; a cluster has its own
  // SO_MARK on every upstream socket (Config::upstream_mark, copied here for the data path); 0: none.
  uint32_t upstream_mark = 0;
  // Client connections open at once through this listener; past it a new one is closed at accept and
  // counted (skproxy_connections_rejected_total{reason="listener_max_connections"}). 0: no limit.
  uint32_t max_connections = 0;
  // A connection that moved no byte in either direction for this long is closed (both legs, on either
  // data path). Zero: never.
  absl::Duration idle_timeout = absl::ZeroDuration();
  int line = 0;  // line of the listener in the file, for later error messages
};

// How a cluster chooses the endpoint of a new connection.
enum class LbPolicy { kRoundRobin, kLeastConnections, kMaglev, kRingHash };
std::string_view LbPolicyName(LbPolicy policy);  // "round_robin" | "least_connections" | "maglev" | "ring_hash"
absl::StatusOr<LbPolicy> ParseLbPolicy(std::string_view text);

// One upstream server: an IP literal, or a host name that the cluster resolves at start and again when
// its answer's TTL runs out; each address of the answer is an endpoint of its own with this weight (as
// Envoy's STRICT_DNS does).
struct Endpoint {
  std::string host;  // as written: "10.0.0.1", "::1" (no brackets) or "db.internal"
  uint16_t port = 0;
  bool is_name = false;   // host is a name to resolve; otherwise `address` holds the literal
  SocketAddress address;  // the literal address (is_name == false)
  uint32_t weight = 1;    // relative share of new connections, 1..1000
  int line = 0;
  std::string ToString() const;  // "10.0.0.1:80", "[::1]:80", "db.internal:80": also the metric label
};

struct HealthCheck {
  enum class Type { kNone, kTcp, kHttp };
  Type type = Type::kNone;          // kNone: no active check, every endpoint counts as healthy
  std::string path = "/";           // http: the request target
  std::string host;                 // http: the Host header; empty: the endpoint as written
  uint32_t expected_status = 200;   // http: the status that passes (any other fails)
  absl::Duration interval = absl::Seconds(5);  // from the end of one check to the start of the next
  absl::Duration timeout = absl::Seconds(1);   // connect + request + status line
  uint32_t healthy_threshold = 2;    // consecutive passes that bring an unhealthy endpoint back
  uint32_t unhealthy_threshold = 3;  // consecutive failures that take a healthy endpoint out
};

// Passive health: an endpoint that fails this many connects in a row (refused, unreachable, timed out)
// is ejected, i.e. gets no new connection for ejection_time. consecutive_failures 0: off.
struct OutlierDetection {
  uint32_t consecutive_failures = 0;
  absl::Duration ejection_time = absl::Seconds(30);
};

// Keep-alive connections to a cluster's endpoints, reused across the requests of http listeners (nginx's
// `upstream { keepalive N; keepalive_timeout T; }`, Envoy's per-cluster HTTP/1.1 connection pool).
// docs/l7-routing.md: which requests use it.
struct HttpKeepalive {
  uint32_t max_idle = 0;  // idle connections kept per worker; 0: no pool (each client connection is spliced)
  absl::Duration idle_timeout = absl::Seconds(60);  // an idle connection unused this long is closed
  bool enabled() const { return max_idle > 0; }
};

struct Cluster {
  std::string name;
  absl::Duration connect_timeout = absl::Seconds(5);
  LbPolicy lb_policy = LbPolicy::kRoundRobin;
  std::vector<Endpoint> endpoints;
  ProxyProtocolVersion proxy_protocol = ProxyProtocolVersion::kNone;  // sent to endpoints when set
  HealthCheck health_check;
  OutlierDetection outlier_detection;
  // Host-name endpoints. A name is resolved again when its answer's TTL (the smallest of its records)
  // runs out, bounded to [dns_min_refresh, dns_max_refresh]; every dns_refresh instead when
  // respect_dns_ttl is false, when the answer's TTL is 0 (/etc/hosts answers carry none), and after a
  // failed resolution. dns_family: which address families a name expands to. dns_resolvers: the servers
  // (empty: the system's, from /etc/resolv.conf; /etc/hosts is consulted first either way).
  absl::Duration dns_refresh = absl::Seconds(5);
  bool respect_dns_ttl = true;
  absl::Duration dns_min_refresh = absl::Seconds(5);
  absl::Duration dns_max_refresh = absl::Minutes(5);
  enum class DnsFamily { kAll, kV4, kV6 };
  DnsFamily dns_family = DnsFamily::kAll;
  std::vector<SocketAddress> dns_resolvers;
  // Connections open at once to this cluster (connecting or established); past it a new one is closed
  // (reason="cluster_max_connections"). 0: no limit.
  uint32_t max_connections = 0;
  HttpKeepalive http_keepalive;
  // http listeners: how long the upstream may go without taking a byte of the request or sending a byte of
  // the response, from the request's first byte written until the response head is in (pooled requests:
  // until the response's end). Past it: 504 before any response byte, a reset client after. 0: off.
  // docs/l7-routing.md "Response timeout".
  absl::Duration response_timeout = absl::Seconds(15);
  int line = 0;

  bool has_names() const;  // some endpoint is a host name
};

struct RunAs {
  std::string user;   // `user`: its uid, and its primary group unless `group` names one
  std::string group;  // `group`
  uint32_t uid = 0;
  uint32_t gid = 0;
  bool empty() const { return user.empty() && group.empty(); }
};

struct Config {
  std::string source;  // file name, or "<default>" for the embedded config
  Admin admin;
  DatapathMode datapath = DatapathMode::kAuto;
  int workers = 0;  // 0 = one per core
  // SIGTERM/SIGINT: how long established connections may go on before what is left is reset.
  absl::Duration drain_timeout = absl::Seconds(30);
  // One JSON line per connection: a file, "-" for stdout, empty for none.
  std::string access_log_path;
  // SO_MARK for skproxy's own upstream connections, so that the redirect rules of a sidecar let them pass
  // (deploy/sidecar/skproxy-redirect.sh skips this mark); 0 leaves them unmarked.
  uint32_t upstream_mark = 0;
  // The user and group skproxy runs as once it has loaded its BPF program and bound its listeners (as
  // HAProxy's and nginx's `user`), looked up when the config is read. Empty: stay as started.
  RunAs run_as;
  Sockmap sockmap;
  std::vector<Listener> listeners;
  std::vector<Cluster> clusters;

  const Cluster* FindCluster(std::string_view name) const;
};

// Parses and validates. `source` names the file in error messages. Every error is
// "SOURCE:LINE: key.path: what is wrong" (e.g. "a.yaml:7: listeners[0].address: port 70000 out of range").
absl::StatusOr<Config> ParseConfig(std::string_view yaml_text, std::string_view source);
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

// The default config (config/skproxy.yaml), embedded in the binary at build time.
std::string_view DefaultConfigYaml();
absl::StatusOr<Config> LoadDefaultConfig();

}  // namespace skproxy::config
