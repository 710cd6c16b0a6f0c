// A Pipe moves the bytes of one established connection (client leg and upstream leg) until both
// directions have ended, then closes both. Two implementations: the kernel path (sockmap_pipe.h), where
// the verdict program moves bytes and user space only watches, and the user-space copy (userspace_pipe.h).
#pragma once

#include <functional>
#include <string>

#include "proxy/metrics.h"
#include "proxy/tracked_handler.h"
#include "proxy/unique_fd.h"

namespace skproxy {

class Pipe : public TrackedHandler {
 public:
  virtual ~Pipe() = default;
  virtual PathKind kind() const = 0;
  // Starts moving bytes. May finish (or abort) before returning.
  virtual void Start() = 0;
  // Makes the close of both legs send RST: for a stream cut short (drain timeout, a failed worker), so
  // that neither peer takes it for complete.
  void ResetOnClose() { ArmResetOnClose(); }
  // Both directions have ended (or the connection was reset) and the kernel holds no operation of ours:
  // the owner may destroy the pipe, which closes both legs.
  bool done() const { return finished_ && inflight() == 0; }
  bool finished() const { return finished_; }
  // For the owner of a done pipe, while the worker's ring runs: closes both legs from the ring, which costs
  // no system call of its own (the destructor would close them with two). Kernel state goes first.
  void CloseLegsThroughRing() {
    ReleaseKernelState();
    ring_.Close(std::move(downstream_));
    ring_.Close(std::move(upstream_));
  }
  // The client's leg (for its address).
  int downstream_fd() const { return downstream_.get(); }
  // Grows whenever a byte moves in either direction (its unit is the implementation's): the idle timeout
  // compares two samples. Reading it costs no syscall.
  virtual uint64_t activity() const = 0;
  // Closes both legs now, with a FIN rather than a reset (the idle timeout: nothing is in transit).
  virtual void CloseIdle() = 0;
  // An http listener's pipe still waiting for the upstream's first byte (UserspacePipe::AwaitResponse), and
  // the end of that wait when the cluster's response_timeout passed without progress.
  virtual bool awaiting_response() const { return false; }
  virtual void TimeOutResponse() {}
  // What the pipe is waiting for, per direction, for GET /connections: a connection that stopped moving
  // shows which operation it still expects to complete (or that none is armed).
  virtual std::string Operations() const;

  // What this pipe moved, for the access log: bytes user space wrote to the destination, and bytes the
  // kernel redirected, per direction (enum skp_direction).
  uint64_t user_bytes(int direction) const { return user_bytes_[direction]; }
  virtual uint64_t kernel_bytes(int direction) const { return 0; }
  // Whether the legs were (or will be) closed with a reset.
  bool reset() const { return reset_; }
  // The direction whose source ended first with a FIN (0: the client's, 1: the upstream's), -1 if none.
  int first_end() const { return first_end_; }

 protected:
  Pipe(Ring& ring, Metrics& metrics, UniqueFd downstream, UniqueFd upstream,
       std::function<void()> on_finish)
      : TrackedHandler(ring),
        metrics_(metrics),
        downstream_(std::move(downstream)),
        upstream_(std::move(upstream)),
        on_finish_(std::move(on_finish)) {}

  // Index by enum skp_direction: the leg bytes of that direction arrive on, and the one they leave by.
  int source(int direction) const { return direction == 0 ? downstream_.get() : upstream_.get(); }
  int destination(int direction) const { return direction == 0 ? upstream_.get() : downstream_.get(); }

  // Marks the pipe finished and tells the owner (once).
  void Finish() {
    if (finished_) return;
    finished_ = true;
    on_finish_();
  }
  // A reset on either leg, or an error, resets the other: SO_LINGER 0 makes the close send RST.
  void ArmResetOnClose();
  // Whether the source of direction d, whose read just returned 0, was reset rather than half-closed.
  // The kernel reports a reset's error once, to whichever call comes first: a send on the same socket (the
  // other direction's) may take it, and the read then returns 0 as after a FIN. A FIN leaves the socket
  // in CLOSE_WAIT while our side of it is open, a reset closes it. `our_side_shut`: we already sent our
  // FIN on it, so a FIN closes it too and only a pending error tells.
  bool SourceWasReset(int d, bool our_side_shut) const;
  // Bytes user space wrote to the destination of direction d: the process-wide metric and this pipe's count.
  void CountUserBytes(int d, uint64_t n) {
    metrics_.UserBytes(d).fetch_add(n, std::memory_order_relaxed);
    user_bytes_[d] += n;
  }
  void NoteEnd(int d) {
    if (first_end_ < 0) first_end_ = d;
  }
  // Cancels every operation still in flight on either leg.
  void CancelAll(unsigned cancel_tag);
  // What the implementation holds in the kernel for this connection besides the sockets (sockhash
  // elements, verdict state): released before the legs close. Idempotent.
  virtual void ReleaseKernelState() {}

  Metrics& metrics_;
  UniqueFd downstream_;
  UniqueFd upstream_;

 private:
  std::function<void()> on_finish_;
  bool finished_ = false;
  bool reset_ = false;
  int first_end_ = -1;
  uint64_t user_bytes_[2] = {0, 0};
};

}  // namespace skproxy
