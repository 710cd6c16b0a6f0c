// How a cluster picks the endpoint of a new connection: weighted round robin, least connections, and two
// consistent hashes of the client address (Maglev, ring hash). A balancer only knows endpoint indexes and
// weights; whether an endpoint may take a connection now (healthy, not ejected, not tried yet by this
// connection) is asked through `eligible`, so health changes need no rebuild to be obeyed.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "config/config.h"

namespace skproxy {

// A hash that is the same in every process and on every run (absl::Hash is not): consistent hashing must
// send a client to the same endpoint after a restart, and every skproxy instance behind one address
// to the same one too.
uint64_t StableHash(const void* data, size_t length, uint64_t seed = 0);
// The client's IP address only (not its port): a client's connections all land on one endpoint.
uint64_t ClientAddressHash(const SocketAddress& client);

struct LbRequest {
  uint64_t hash = 0;                                // ClientAddressHash, for the consistent hashes
  absl::FunctionRef<bool(uint32_t)> eligible;       // may endpoint i take this connection now
  absl::FunctionRef<int64_t(uint32_t)> active;      // connections endpoint i holds now
};

class LoadBalancer {
 public:
  // `keys` name the endpoints ("host:port"): the consistent hashes place them by name, so a restart or a
  // DNS change does not move clients.
  static std::unique_ptr<LoadBalancer> Create(config::LbPolicy policy, const std::vector<std::string>& keys,
                                              const std::vector<uint32_t>& weights);
  virtual ~LoadBalancer() = default;
  // The endpoint for a new connection, or nullopt when none is eligible.
  virtual std::optional<uint32_t> Choose(const LbRequest& request) = 0;
  // The set of usable endpoints changed (control thread). Maglev rebuilds its table without the unusable
  // ones, which moves only their clients; the others need nothing.
  virtual void OnUsableChanged(const std::vector<bool>& usable) {}
  virtual bool needs_client_hash() const { return false; }
};

// The Maglev lookup table (Eisenbud et al., NSDI 2016, with weights: an endpoint of weight w takes a turn
// in w of every max-weight rounds). Exposed for tests of its spread and disruption.
std::vector<uint32_t> BuildMaglevTable(const std::vector<std::string>& keys, const std::vector<uint32_t>& weights,
                                       const std::vector<bool>& usable, uint32_t table_size);

}  // namespace skproxy
