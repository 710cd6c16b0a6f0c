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
  // Whether a load balancer should send new connections here.
  bool ready() const { return started_.load() && !draining() && failed_workers() == 0; }

 private:
  std::atomic<bool> started_{false};
  std::atomic<bool> draining_{false};
  std::atomic<uint32_t> failed_workers_{0};
};

}  // namespace skproxy
