// A worker's idle keep-alive connections to cluster endpoints (a cluster's `http_keepalive`), as nginx's
// `upstream { keepalive N; }` and Envoy's per-cluster HTTP/1.1 pools keep them: per worker (no locking, no
// cross-thread hand-off), per endpoint, most recently used first, at most `max_idle` per cluster (past it
// the least recently used is closed). Each idle connection is watched by a poll linked to the cluster's
// `idle_timeout`: the upstream closing it (or sending anything unasked) or the timeout closes it at once,
// so a request rarely meets a dead connection (the session retries once when it does: proxy/http_session.h).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "proxy/cluster.h"
#include "proxy/ring.h"
#include "proxy/unique_fd.h"

namespace skproxy {

class ClusterManager;

class HttpPool {
 public:
  explicit HttpPool(Ring& ring) : ring_(ring) {}
  // After the ring is gone (no completion can come): closes what is idle.
  ~HttpPool();
  HttpPool(const HttpPool&) = delete;
  HttpPool& operator=(const HttpPool&) = delete;

  // The most recently pooled idle connection to `endpoint`, or an invalid fd.
  UniqueFd Take(const EndpointState& endpoint);
  // A connection whose last response ended cleanly and that both sides keep open. `owner` keeps `cluster`
  // alive while its connections wait here (a reload may drop the config generation meanwhile).
  void Put(std::shared_ptr<ClusterManager> owner, ClusterState& cluster, std::shared_ptr<EndpointState> endpoint,
           UniqueFd fd);
  size_t idle() const { return idle_count_; }

 private:
  class Idle;
  void Remove(Idle* idle);  // unlists it (its fd stays with it)
  void Close(Idle* idle);   // unlists and closes it (evicted past max_idle)
  void Retire(Idle* idle);  // frees it once the kernel holds no operation on it

  Ring& ring_;
  absl::flat_hash_map<const EndpointState*, std::deque<Idle*>> idle_;            // per endpoint, most recent at the back
  absl::flat_hash_map<const ClusterState*, std::deque<Idle*>> lru_;  // per cluster, oldest at the front
  absl::flat_hash_set<Idle*> all_;  // every Idle not yet freed: listed, or waiting for its poll's end
  size_t idle_count_ = 0;
};

}  // namespace skproxy
