// A cluster at run time: its config, where the next connection starts in round-robin order, and its counters.
#pragma once

#include <prometheus/counter.h>

#include <atomic>
#include <cstddef>

#include "config/config.h"

namespace skproxy {

class ClusterState {
 public:
  ClusterState(const config::Cluster& config, prometheus::Counter& connect_failures)
      : config_(config), connect_failures_(connect_failures) {}

  const config::Cluster& config() const { return config_; }
  // Index of the first endpoint a new connection tries; it then tries the following ones in order, so
  // load spreads evenly and a dead endpoint costs one failed attempt, not a failed connection.
  size_t NextStart() { return next_.fetch_add(1, std::memory_order_relaxed) % config_.endpoints.size(); }
  void CountConnectFailure() { connect_failures_.Increment(); }
  // Whether a new connection has an endpoint to go to; an http listener answers 503 when not. Every
  // endpoint counts as healthy until health checking decides otherwise.
  bool HasHealthyEndpoint() const { return !config_.endpoints.empty(); }

 private:
  const config::Cluster& config_;
  prometheus::Counter& connect_failures_;
  std::atomic<size_t> next_{0};
};

}  // namespace skproxy
