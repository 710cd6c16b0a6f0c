#include "proxy/userspace_pipe.h"

#include <sys/socket.h>

#include <cerrno>

namespace skproxy {

UserspacePipe::UserspacePipe(Ring& ring, Metrics& metrics, UniqueFd downstream, UniqueFd upstream,
                             std::function<void()> on_finish)
    : Pipe(ring, metrics, std::move(downstream), std::move(upstream), std::move(on_finish)) {}

void UserspacePipe::Start() {
  Receive(0);
  Receive(1);
}

void UserspacePipe::Receive(int d) {
  io_uring_sqe* sqe = Submit(kRecv + d);
  io_uring_prep_recv(sqe, source(d), nullptr, ring_.buffers().buffer_size(), 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BufferRing::kGroupId;
}

void UserspacePipe::SendRest(int d) {
  Direction& dir = dirs_[d];
  io_uring_sqe* sqe = Submit(kSend + d);
  // MSG_WAITALL: io_uring retries a short stream send itself instead of completing early.
  io_uring_prep_send(sqe, destination(d), ring_.buffers().buffer(dir.buffer_id) + dir.sent,
                     dir.length - dir.sent, MSG_NOSIGNAL | MSG_WAITALL);
}

void UserspacePipe::Handle(unsigned tag, int res, unsigned cqe_flags) {
  switch (tag) {
    case kRecv:
    case kRecv + 1:
      OnReceived(tag - kRecv, res, cqe_flags);
      break;
    case kSend:
    case kSend + 1:
      OnSent(tag - kSend, res);
      break;
    case kRetry:
    case kRetry + 1:
      if (!aborting_) Receive(tag - kRetry);
      break;
    default:  // kCancel: nothing to do, the cancelled operations complete on their own
      break;
  }
  if (aborting_ && inflight() == 0) Finish();
}

void UserspacePipe::OnReceived(int d, int res, unsigned cqe_flags) {
  Direction& dir = dirs_[d];
  if (cqe_flags & IORING_CQE_F_BUFFER) {
    dir.buffer_id = static_cast<int>(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
    if (aborting_ || res <= 0) ReleaseBuffer(d);
  }
  if (aborting_) return;
  if (res > 0) {
    dir.length = static_cast<size_t>(res);
    dir.sent = 0;
    SendRest(d);
    return;
  }
  if (res == 0) {
    // The source half-closed: pass the FIN on. The other direction goes on until it ends too.
    shutdown(destination(d), SHUT_WR);
    dir.ended = true;
    if (dirs_[1 - d].ended) Finish();
    return;
  }
  if (res == -ENOBUFS) {  // every provided buffer is in use: retry shortly
    io_uring_prep_timeout(Submit(kRetry + d), &retry_delay_, 0, 0);
    return;
  }
  Abort();  // ECONNRESET and friends: reset the other leg
}

void UserspacePipe::OnSent(int d, int res) {
  Direction& dir = dirs_[d];
  if (aborting_) {
    ReleaseBuffer(d);
    return;
  }
  if (res <= 0) {
    ReleaseBuffer(d);
    Abort();
    return;
  }
  metrics_.UserBytes(d).fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
  dir.sent += static_cast<size_t>(res);
  if (dir.sent < dir.length) {
    SendRest(d);
    return;
  }
  ReleaseBuffer(d);
  Receive(d);
}

void UserspacePipe::ReleaseBuffer(int d) {
  Direction& dir = dirs_[d];
  if (dir.buffer_id < 0) return;
  ring_.buffers().Return(static_cast<unsigned>(dir.buffer_id));
  dir.buffer_id = -1;
}

void UserspacePipe::Abort() {
  if (aborting_) return;
  aborting_ = true;
  ArmResetOnClose();
  CancelAll(kCancel);
}

}  // namespace skproxy
