// One event loop thread: its own io_uring, its own SO_REUSEPORT socket per listener (the kernel spreads
// new connections across workers), and the connections it accepted, from accept to close.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "proxy/connection.h"
#include "proxy/http_pool.h"
#include "proxy/process_state.h"
#include "proxy/path_switch.h"
#include "proxy/unique_fd.h"
#include "proxy/worker_context.h"

namespace skproxy {

// A listening socket for one worker: SO_REUSEPORT, non-blocking, bound and listening (errors name the
// listener). With the kernel path on, the buffer sizes accepted sockets inherit are set first.
absl::StatusOr<UniqueFd> BindListener(const config::Listener& listener, const config::Sockmap* kernel_path);

// What a reload gives a worker for one listener of the new config.
struct ListenerUpdate {
  std::shared_ptr<ListenerContext> context;
  UniqueFd fd;  // a new socket to accept on; invalid: keep accepting on the socket of the same name
};

class Worker {
 public:
  // index: this worker's notice ring; fallback_reason: see WorkerContext. `config` is the generation the
  // process started with; only the keys a reload cannot change are read from it.
  Worker(const config::Config& config, Metrics& metrics, bpf::SockmapProgram* sockmap, uint32_t index,
         std::string fallback_reason, std::vector<std::shared_ptr<ListenerContext>> listeners,
         ProcessState& state, AccessLog* access_log);
  ~Worker();

  // In the main thread, before Start: takes this worker's listening sockets, one per listener of the
  // constructor's `listeners` in that order (from BindListener: bound while the process still held the
  // capabilities binding may need).
  absl::Status Bind(std::vector<UniqueFd> sockets);
  // Starts the thread and waits until its ring exists and it accepts.
  absl::Status Start();
  // From any thread: the worker accepts on `listeners` from now on. Established connections are not
  // touched; a listener missing from `listeners` stops accepting (its connections finish on their own).
  // Returns once the worker applied it (or has exited).
  void Reload(std::vector<ListenerUpdate> listeners);
  // From any thread: stops accepting (the listening sockets leave the SO_REUSEPORT group at once, so the
  // kernel sends new connections to nobody here) and lets established connections finish; the thread
  // exits when none is left.
  void Drain();
  // Whether the thread has exited (drained, stopped or failed) by `deadline`.
  bool WaitUntilExited(absl::Time deadline);
  // From any thread: stops accepting, resets every connection left (RST, never a FIN on a cut stream),
  // joins. Returns how many connections were reset.
  size_t Stop();
  // From any thread, after Start: up to `limit` of this worker's connections whose id is above `after`,
  // lowest ids first, described on the worker's thread; `total` gets how many connections the worker
  // holds. Returns what the worker answered by `deadline` (nothing from a worker that exited).
  std::vector<ConnectionInfo> Snapshot(uint64_t after, size_t limit, absl::Time deadline, size_t* total);
  // Connections this worker holds now (from any thread; approximate while it runs).
  size_t connection_count() const { return connection_count_.load(std::memory_order_relaxed); }

 private:
  class Acceptor;
  class Waker;
  class TimeoutSweeper;
  // One listener as this worker serves it: its socket, and the generation new connections are accepted under.
  struct Listening {
    std::shared_ptr<ListenerContext> context;
    UniqueFd fd;
    std::unique_ptr<Acceptor> acceptor;
    bool closed = false;  // shut down: accepts no more
    bool ended = false;   // closed, and its last accept completion arrived: may be freed
  };

  void Run();
  void Loop();
  void Reap();
  void OnCommand();
  void ApplyReload();
  void AnswerSnapshots();
  void StartAccepting(Listening& listening);
  // Takes a listening socket out of the kernel's accept path (shutdown on a listening socket stops it).
  void CloseListener(Listening& listening);
  void CloseListeners();
  // Test hook: the loop fails as if io_uring had (SKPROXY_FAULT_WORKER_RING=<worker index>).
  bool FaultInjected() const;
  void Wake();

  const config::Config& config_;
  std::vector<std::shared_ptr<ListenerContext>> initial_listeners_;
  WorkerContext context_;
  std::vector<std::unique_ptr<Listening>> listening_;
  UniqueFd stop_event_;
  std::thread thread_;
  absl::Notification started_;
  absl::Status start_status_;
  ProcessState& state_;
  bool stopping_ = false;
  bool draining_ = false;
  enum Command : int { kNone = 0, kDrain = 1, kStop = 2 };
  std::atomic<int> command_{kNone};
  absl::Notification exited_;
  size_t reset_ = 0;  // connections reset when the loop ended unfinished
  std::unique_ptr<HttpPool> http_pool_;  // on the worker's thread, like the ring it uses
  std::atomic<size_t> connection_count_{0};

  std::mutex reload_mu_;
  std::vector<ListenerUpdate> pending_reload_;  // guarded by reload_mu_
  bool reload_pending_ = false;                 // guarded by reload_mu_
  std::shared_ptr<absl::Notification> reload_applied_;  // guarded by reload_mu_

  // GET /connections: requests an admin thread left for the worker's thread to answer.
  struct SnapshotRequest {
    uint64_t after = 0;
    size_t limit = 0;
    std::vector<ConnectionInfo> connections;
    size_t total = 0;
    absl::Notification answered;
  };
  std::mutex snapshot_mu_;
  std::vector<std::shared_ptr<SnapshotRequest>> snapshot_requests_;  // guarded by snapshot_mu_

  // Before connections_: they leave it when they are destroyed.
  std::unique_ptr<PathSwitches> switches_;
  std::vector<Connection*> finished_;
  absl::flat_hash_map<Connection*, std::unique_ptr<Connection>> connections_;
  NoticeTargets notice_targets_;
  std::unique_ptr<NoticeReader> notice_reader_;
  std::unique_ptr<Waker> waker_;
  std::unique_ptr<TimeoutSweeper> timeout_sweeper_;
  std::unique_ptr<Ring> ring_;
};

}  // namespace skproxy
