// What /ready and the drain metrics report, shared by the main thread, the workers and the admin server.
#pragma once

#include <atomic>
#include <cstdint>

namespace skproxy {

class ProcessState {
 public:
  // Every listener is bound, every worker runs and the data path is decided.
  void SetStarted() { started_.store(true); }
  // SIGTERM/SIGINT: stop accepting, let connections finish.
  void SetDraining() { draining_.store(true); }
  // A worker took its listeners down after its ring failed.
  void WorkerFailed() { failed_workers_.fetch_add(1); }

  bool draining() const { return draining_.load(); }
  uint32_t failed_workers() const { return failed_workers_.load(); }
  // A connection's id: process-wide and in accept order, so /connections pages through every worker's
  // connections with one cursor. One atomic add per accepted connection.
  uint64_t NextConnectionId() { return next_connection_id_.fetch_add(1, std::memory_order_relaxed) + 1; }
  // Whether a load balancer should send new connections here.
  bool ready() const { return started_.load() && !draining() && failed_workers() == 0; }

 private:
  std::atomic<bool> started_{false};
  std::atomic<bool> draining_{false};
  std::atomic<uint32_t> failed_workers_{0};
  std::atomic<uint64_t> next_connection_id_{0};
};

}  // namespace skproxy
