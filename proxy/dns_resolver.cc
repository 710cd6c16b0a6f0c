#include "proxy/dns_resolver.h"

#include <netdb.h>

#include <cstdio>
#include <cstring>
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace skproxy {
namespace {

constexpr int kQueryTimeoutMs = 1000;  // per try; c-ares tries each server kTries times
constexpr int kTries = 2;

}  // namespace

absl::StatusOr<std::unique_ptr<DnsResolver>> DnsResolver::Create(ClusterState& cluster) {
  std::unique_ptr<DnsResolver> resolver(new DnsResolver(cluster));
  ares_options options{};
  options.timeout = kQueryTimeoutMs;
  options.tries = kTries;
  char lookups[] = "fb";  // /etc/hosts, then DNS
  options.lookups = lookups;
  const int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
  if (int rc = ares_init_options(&resolver->channel_, &options, mask); rc != ARES_SUCCESS) {
    return absl::InternalError(absl::StrCat("cluster ", cluster.name(), ": c-ares init: ", ares_strerror(rc)));
  }
  const std::vector<SocketAddress>& servers = cluster.config().dns_resolvers;
  if (!servers.empty()) {
    std::vector<std::string> texts;
    for (const SocketAddress& server : servers) texts.push_back(server.ToString());
    const std::string csv = absl::StrJoin(texts, ",");
    if (int rc = ares_set_servers_ports_csv(resolver->channel_, csv.c_str()); rc != ARES_SUCCESS) {
      return absl::InternalError(
          absl::StrCat("cluster ", cluster.name(), ": dns_resolvers ", csv, ": ", ares_strerror(rc)));
    }
  }
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < cluster.config().endpoints.size(); ++i) {
    if (!cluster.config().endpoints[i].is_name) continue;
    resolver->queries_.push_back(std::make_unique<Query>(Query{resolver.get(), i, now}));
    ++resolver->pending_first_;
  }
  return resolver;
}

DnsResolver::~DnsResolver() {
  if (channel_ != nullptr) ares_destroy(channel_);  // runs the callbacks of queries in flight (ARES_EDESTRUCTION)
}

void DnsResolver::Prepare(absl::Time now, PollSet& set, absl::Time& wake) {
  for (auto& query : queries_) {
    if (!query->in_flight && query->next <= now) {
      query->in_flight = true;
      const config::Endpoint& endpoint = cluster_.config().endpoints[query->endpoint];
      ares_addrinfo_hints hints{};
      switch (cluster_.config().dns_family) {
        case config::Cluster::DnsFamily::kAll: hints.ai_family = AF_UNSPEC; break;
        case config::Cluster::DnsFamily::kV4: hints.ai_family = AF_INET; break;
        case config::Cluster::DnsFamily::kV6: hints.ai_family = AF_INET6; break;
      }
      hints.ai_socktype = SOCK_STREAM;
      ares_getaddrinfo(channel_, endpoint.host.c_str(), nullptr, &hints, &DnsResolver::OnAnswer, query.get());
    }
    if (!query->in_flight) wake = std::min(wake, query->next);
  }
  watched_.clear();
  ares_socket_t sockets[ARES_GETSOCK_MAXNUM];
  const int bits = ares_getsock(channel_, sockets, ARES_GETSOCK_MAXNUM);
  for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
    short events = 0;
    if (ARES_GETSOCK_READABLE(bits, i)) events |= POLLIN;
    if (ARES_GETSOCK_WRITABLE(bits, i)) events |= POLLOUT;
    if (events == 0) continue;
    watched_.push_back({sockets[i], set.Add(sockets[i], events)});
  }
  timeval limit{};
  timeval* timeout = ares_timeout(channel_, nullptr, &limit);
  if (timeout != nullptr) {
    wake = std::min(wake, now + absl::Seconds(timeout->tv_sec) + absl::Microseconds(timeout->tv_usec));
  }
}

void DnsResolver::Dispatch(absl::Time now, const PollSet& set) {
  for (const Watched& w : watched_) {
    const short revents = set.revents(w.index);
    if (revents == 0) continue;
    const bool readable = revents & (POLLIN | POLLERR | POLLHUP);
    const bool writable = revents & (POLLOUT | POLLERR | POLLHUP);
    ares_process_fd(channel_, readable ? w.fd : ARES_SOCKET_BAD, writable ? w.fd : ARES_SOCKET_BAD);
  }
  ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts and retries
}

absl::Duration DnsResolver::RefreshAfter(int64_t ttl_seconds) const {
  const config::Cluster& config = cluster_.config();
  if (!config.respect_dns_ttl || ttl_seconds <= 0) return config.dns_refresh;
  return std::clamp(absl::Seconds(ttl_seconds), config.dns_min_refresh, config.dns_max_refresh);
}

void DnsResolver::OnAnswer(void* arg, int status, int, ares_addrinfo* result) {
  Query& query = *static_cast<Query*>(arg);
  DnsResolver& self = *query.resolver;
  if (status == ARES_EDESTRUCTION) return;
  query.in_flight = false;
  if (!query.answered) {
    query.answered = true;
    --self.pending_first_;
  }
  ClusterState& cluster = self.cluster_;
  const config::Endpoint& endpoint = cluster.config().endpoints[query.endpoint];
  std::vector<SocketAddress> addresses;
  int64_t ttl = -1;  // the smallest of the records used
  if (status == ARES_SUCCESS && result != nullptr) {
    for (const ares_addrinfo_node* node = result->nodes; node != nullptr; node = node->ai_next) {
      if (node->ai_family != AF_INET && node->ai_family != AF_INET6) continue;
      SocketAddress address = SocketAddressFrom(node->ai_addr, node->ai_addrlen);
      address.set_port(endpoint.port);
      if (std::find(addresses.begin(), addresses.end(), address) != addresses.end()) continue;
      addresses.push_back(address);
      ttl = ttl < 0 ? node->ai_ttl : std::min<int64_t>(ttl, node->ai_ttl);
    }
  }
  if (result != nullptr) ares_freeaddrinfo(result);
  if (addresses.empty()) {
    cluster.CountResolution(query.endpoint, false);
    query.next = absl::Now() + cluster.config().dns_refresh;
    const size_t kept = cluster.address_count(query.endpoint);
    std::fprintf(stderr, "skproxy: cluster %s: cannot resolve %s: %s%s\n", cluster.name().c_str(),
                 endpoint.ToString().c_str(), status == ARES_SUCCESS ? "no address" : ares_strerror(status),
                 kept > 0 ? absl::StrCat(" (keeping the last ", kept, kept == 1 ? " address)" : " addresses)").c_str()
                          : "");
    return;
  }
  query.next = absl::Now() + self.RefreshAfter(ttl);
  cluster.CountResolution(query.endpoint, true);
  if (cluster.SetAddresses(query.endpoint, addresses)) {
    std::vector<std::string> texts;
    for (const SocketAddress& address : addresses) texts.push_back(address.ToString());
    std::fprintf(stderr, "skproxy: cluster %s: %s resolves to %s (ttl %llds)\n", cluster.name().c_str(),
                 endpoint.ToString().c_str(), absl::StrJoin(texts, ", ").c_str(), static_cast<long long>(ttl));
  }
}

}  // namespace skproxy
