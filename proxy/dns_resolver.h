// Resolves the host-name endpoints of one cluster with c-ares, on the cluster thread (never a worker):
// at start, then again when the answer's TTL runs out (the smallest TTL of its records, bounded by
// dns_min_refresh and dns_max_refresh), or every dns_refresh when TTLs are not respected or the answer
// carries none (/etc/hosts). A name expands to every address of its answer (A and AAAA, or the family
// dns_family asks for): each an endpoint of the cluster (ClusterState::SetAddresses). A failed
// resolution (timeout, SERVFAIL, NXDOMAIN, no address) keeps the last good answer, as Envoy and HAProxy
// do, is counted, and is tried again after dns_refresh; a name that never resolved takes no connection.
// /etc/hosts is read before DNS, and `dns_resolvers` replaces /etc/resolv.conf's servers.
#pragma once

#include <ares.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/cluster.h"
#include "proxy/poll_set.h"

namespace skproxy {

class DnsResolver final : public LoopTask {
 public:
  static absl::StatusOr<std::unique_ptr<DnsResolver>> Create(ClusterState& cluster);
  ~DnsResolver() override;

  void Prepare(absl::Time now, PollSet& set, absl::Time& wake) override;
  void Dispatch(absl::Time now, const PollSet& set) override;
  // Every name has had its first answer (or failure).
  bool first_round_done() const { return pending_first_ == 0; }

 private:
  struct Query {
    DnsResolver* resolver;
    size_t endpoint;  // index in the cluster's config
    absl::Time next;
    bool in_flight = false;
    bool answered = false;
  };

  explicit DnsResolver(ClusterState& cluster) : cluster_(cluster) {}
  static void OnAnswer(void* arg, int status, int timeouts, ares_addrinfo* result);
  // When a name answered with `ttl_seconds` (the smallest of its records) is to be resolved again.
  absl::Duration RefreshAfter(int64_t ttl_seconds) const;

  ClusterState& cluster_;
  ares_channel channel_ = nullptr;
  std::vector<std::unique_ptr<Query>> queries_;
  size_t pending_first_ = 0;
  struct Watched {
    ares_socket_t fd;
    size_t index;
  };
  std::vector<Watched> watched_;
};

}  // namespace skproxy
