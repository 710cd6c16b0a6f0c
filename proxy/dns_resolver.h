// Resolves the host-name endpoints of one cluster with c-ares, on the cluster thread: at start, then every
// dns_refresh. An endpoint takes the first address of the answer (IPv4 before IPv6: the loopback and most
// internal names have both, and IPv4 is what an upstream listening on 0.0.0.0 accepts); a failed
// resolution keeps the last good address, as Envoy does, and a name that never resolved takes no
// connection. /etc/hosts is read before DNS, and `dns_resolvers` replaces /etc/resolv.conf's servers.
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
    size_t endpoint;
    absl::Time next;
    bool in_flight = false;
    bool answered = false;
  };

  explicit DnsResolver(ClusterState& cluster) : cluster_(cluster) {}
  static void OnAnswer(void* arg, int status, int timeouts, ares_addrinfo* result);

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
