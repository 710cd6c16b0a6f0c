// One event loop thread: its own io_uring, its own SO_REUSEPORT socket per listener (the kernel spreads
// new connections across workers), and the connections it accepted, from accept to close.
#pragma once

#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "proxy/connection.h"
#include "proxy/path_switch.h"
#include "proxy/unique_fd.h"
#include "proxy/worker_context.h"

namespace skproxy {

class Worker {
 public:
  // index: this worker's notice ring; fallback_reason: see WorkerContext.
  Worker(const config::Config& config, Metrics& metrics, bpf::SockmapProgram* sockmap, uint32_t index,
         std::string fallback_reason,
         std::vector<ListenerContext>& listeners);
  ~Worker();

  // In the main thread, before Start: binds this worker's listening sockets (errors name the listener).
  absl::Status Bind();
  // Starts the thread and waits until its ring exists and it accepts.
  absl::Status Start();
  // From any thread: stops accepting, closes every connection, joins.
  void Stop();

 private:
  class Acceptor;
  class Waker;

  void Run();
  void Reap();

  const config::Config& config_;
  std::vector<ListenerContext>& listeners_;
  WorkerContext context_;
  std::vector<UniqueFd> listen_fds_;
  UniqueFd stop_event_;
  std::thread thread_;
  absl::Notification started_;
  absl::Status start_status_;
  bool stopping_ = false;

  // Before connections_: they leave it when they are destroyed.
  std::unique_ptr<PathSwitches> switches_;
  std::vector<Connection*> finished_;
  absl::flat_hash_map<Connection*, std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  NoticeTargets notice_targets_;
  std::unique_ptr<NoticeReader> notice_reader_;
  std::unique_ptr<Waker> waker_;
  std::unique_ptr<Ring> ring_;
};

}  // namespace skproxy
