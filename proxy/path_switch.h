// The choice between the two data paths for one connection, and every move between them. The pipes move
// bytes; this object decides which pipe a connection is on and owns the moves:
//
//   start ── datapath sockmap ──────────────────────────────► kernel (SockmapPipe)
//     │                                                          ▲  │
//     └─ datapath auto/userspace ─► user (UserspacePipe) ── promote ┘  │ demote: Hold(true)
//                                     ▲                                ▼
//                                     │ leave   held (SockmapPipe, both directions passed to user space)
//                                     └──────────────┘   └── promote again: Hold(false) ──► kernel
//
//  - promote (user -> kernel): the UserspacePipe stops reading once it sees a bulk flow (or a quiet worker),
//    writes what it read, and hands both legs over (UserspacePipe::HandOverWhen); they go into the
//    sockhash, where the verdict starts from each socket's copied_seq.
//  - demote (kernel -> user): the connection stays in the sockhash with both directions held in user mode:
//    the verdict passes every byte, and the SockmapPipe copies it once the backlog to the peer has drained.
//    Taking the sockets out of the map instead would drop what their psocks hold, and a segment can be
//    passed between user space's last read and the delete; the hold has no such window.
//  - promote again (held -> kernel): the hold ends and the gate's own rule hands the direction back to the
//    redirect once every passed byte has been copied.
//  - leave (held -> user): held for a whole interval and still not bulk, the connection leaves the sockhash
//    exactly (SockmapPipe::BeginLeave: a BPF iterator deletes each leg under its socket lock once the
//    verdict has passed nothing uncopied) and goes on on a new UserspacePipe (Demote), promotable again.
// The signal for the kernel side is the verdict's per-direction counts of bytes and skbs (skp_user),
// sampled once per switch_interval by the worker's PathSwitches timer: no wake-up per skb.
#pragma once

#include <linux/time_types.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/container/flat_hash_set.h"
#include "bpf/loader.h"
#include "proxy/datapath.h"
#include "proxy/metrics.h"
#include "proxy/ring.h"
#include "proxy/unique_fd.h"

namespace skproxy {

struct WorkerContext;
class SockmapPipe;

class PathSwitch {
 public:
  // `no_response` (an http listener's): the connection starts on the user-space pipe whatever the
  // datapath, and stays there until the upstream's first byte; if the upstream ends before that, the
  // client's leg is handed to it (UserspacePipe::AwaitResponse). With datapath sockmap the connection
  // moves into the kernel path at that first byte.
  PathSwitch(WorkerContext& worker, ListenerMetrics& listener_metrics, UniqueFd downstream, UniqueFd upstream,
             std::function<void()> on_finish, std::function<void(UniqueFd, bool)> no_response = nullptr);
  ~PathSwitch();
  PathSwitch(const PathSwitch&) = delete;
  PathSwitch& operator=(const PathSwitch&) = delete;

  // `count_connection`: count it in skproxy_connections_total (false when the client connection was already
  // counted, by the HttpSession it started as).
  void Start(bool count_connection = true);
  // The current pipe's: see Pipe::activity, Pipe::finished, Pipe::CloseIdle (the idle timeout).
  uint64_t activity() const { return pipe_->activity(); }
  bool finished() const { return pipe_->finished(); }
  void CloseIdle() { pipe_->CloseIdle(); }
  // See Pipe::awaiting_response (an http listener's response timeout).
  bool awaiting_response() const { return pipe_->awaiting_response(); }
  void TimeOutResponse() { pipe_->TimeOutResponse(); }
  bool done() const { return pipe_->done() && (retired_ == nullptr || retired_->inflight() == 0); }
  // Once done(), on the worker's thread with its ring running: see Pipe::CloseLegsThroughRing.
  void CloseLegsThroughRing() { pipe_->CloseLegsThroughRing(); }
  int downstream_fd() const { return pipe_->downstream_fd(); }

  // Called once per switch_interval while the connection is on a SockmapPipe with both legs in the map.
  void Sample();
  // The leave pass this connection asked for has run (PathSwitches::AskLeavePass).
  void AfterLeavePass();

  // The connection is about to be destroyed unfinished (drain timeout, failed worker): RST, never a FIN.
  void ResetOnClose() { pipe_->ResetOnClose(); }
  // What the connection's pipes moved and how it ended, for the access log.
  struct Summary {
    uint64_t kernel_bytes[2] = {0, 0};  // by enum skp_direction
    uint64_t user_bytes[2] = {0, 0};
    bool reset = false;
    int first_end = -1;  // see Pipe::first_end
    PathKind kind = PathKind::kUserspace;
    uint32_t switches = 0;
  };
  Summary Summarize() const;
  std::string Operations() const { return pipe_->Operations(); }

 private:
  struct Traffic {
    uint64_t bytes = 0;
    uint64_t skbs = 0;
  };
  // The pipe for the kernel path, or a UserspacePipe when the legs cannot be inserted.
  std::unique_ptr<Pipe> KernelPipe(UniqueFd downstream, UniqueFd upstream);
  std::unique_ptr<Pipe> UserPipe(UniqueFd downstream, UniqueFd upstream,
                                 std::function<void(UniqueFd, bool)> no_response);
  void Promote(UniqueFd downstream, UniqueFd upstream);
  // Both legs have left the sockhash (SockmapPipe::BeginLeave): on as a user-space connection.
  void Demote(UniqueFd downstream, UniqueFd upstream);
  // Keeps what the retired pipe moved before a newer one takes its place.
  void Retire(std::unique_ptr<Pipe> pipe);
  // What the verdict has seen of this connection so far, both directions.
  Traffic Seen() const;
  bool WorkerQuiet() const;
  void Count(PathKind kind);
  void Uncount();
  void Watch(bool on);

  WorkerContext& worker_;
  ListenerMetrics& listener_metrics_;
  std::function<void()> on_finish_;
  std::unique_ptr<Pipe> pipe_;
  std::unique_ptr<Pipe> retired_;  // the pipe before the last move: spent, kept until we go
  uint64_t carried_kernel_[2] = {0, 0};  // what pipes retired before it moved, by direction
  uint64_t carried_user_[2] = {0, 0};
  SockmapPipe* kernel_ = nullptr;  // pipe_, when it is a SockmapPipe with both legs in the map
  Traffic last_;                   // Seen() at the previous sample
  PathKind counted_kind_ = PathKind::kUserspace;
  bool counted_ = false;
  bool watched_ = false;
  uint32_t switches_ = 0;  // moves between the paths, either way
};

// One worker's connections on the kernel path, and the timer that samples them.
class PathSwitches final : public IoHandler {
 public:
  // `program`: for the leave pass, nullptr without one.
  PathSwitches(Ring& ring, absl::Duration interval, bpf::SockmapProgram* program);
  void Add(PathSwitch* path) { switches_.insert(path); }
  void Remove(PathSwitch* path) {
    switches_.erase(path);
    leaving_.erase(path);
  }
  bool leave_available() const { return program_ != nullptr && program_->leave_available(); }
  // One leave pass for every connection that asks within one round of completions: the pass walks every
  // TCP socket of the namespace, so it is shared.
  void AskLeavePass(PathSwitch* path);
  void OnCompletion(unsigned tag, int res, unsigned cqe_flags) override;

 private:
  enum Tag : unsigned { kTimer = 0, kLeavePass = 1 };
  void Arm();

  Ring& ring_;
  bpf::SockmapProgram* program_;
  __kernel_timespec interval_{};
  absl::flat_hash_set<PathSwitch*> switches_;
  absl::flat_hash_set<PathSwitch*> leaving_;  // asked for the next leave pass
  bool pass_armed_ = false;
  bool pass_error_logged_ = false;
};

}  // namespace skproxy
