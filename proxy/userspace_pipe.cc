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
  dirs_[d].receiving = true;
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
      if (!aborting_ && !stopping_) Receive(tag - kRetry);
      break;
    default:  // kStop, kCancel: nothing to do, the cancelled operations complete on their own
      break;
  }
  if (aborting_ && inflight() == 0) Finish();
  if (stopping_ && !aborting_ && inflight() == 0) FinishHandover();
}

bool UserspacePipe::WantsHandover(const Direction& dir) {
  if (promotion_.bulk_bytes > 0 && dir.full_run >= promotion_.bulk_bytes) return true;
  return promotion_.quiet_reads > 0 && reads_ % promotion_.quiet_reads == 0 && promotion_.quiet();
}

void UserspacePipe::StopForHandover() {
  stopping_ = true;
  for (int d = 0; d < 2; ++d) {
    if (!dirs_[d].receiving) continue;
    // A recv that already has bytes completes with them rather than with -ECANCELED; they are written
    // like any others before the hand-over.
    const uint64_t recv = reinterpret_cast<uint64_t>(static_cast<IoHandler*>(this)) | (kRecv + d);
    io_uring_prep_cancel64(Submit(kStop + d), recv, 0);
  }
}

void UserspacePipe::FinishHandover() {
  stopping_ = false;
  if (dirs_[0].ended || dirs_[1].ended) {
    // A direction ended while stopping: the connection is closing, nothing to gain. Read on.
    handover_ = nullptr;
    for (int d = 0; d < 2; ++d) {
      if (!dirs_[d].ended) Receive(d);
    }
    return;
  }
  Handover handover = std::move(handover_);
  handover(std::move(downstream_), std::move(upstream_));
}

void UserspacePipe::OnReceived(int d, int res, unsigned cqe_flags) {
  Direction& dir = dirs_[d];
  dir.receiving = false;
  if (cqe_flags & IORING_CQE_F_BUFFER) {
    dir.buffer_id = static_cast<int>(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
    if (aborting_ || res <= 0) ReleaseBuffer(d);
  }
  if (aborting_) return;
  if (res > 0) {
    dir.length = static_cast<size_t>(res);
    dir.sent = 0;
    dir.full_run = dir.length == ring_.buffers().buffer_size() ? dir.full_run + dir.length : 0;
    ++reads_;
    if (!stopping_ && handover_ && WantsHandover(dir)) StopForHandover();
    SendRest(d);
    return;
  }
  if (res == -ECANCELED && stopping_) return;  // stopped for the hand-over
  if (res == 0) {
    // The source half-closed: pass the FIN on. The other direction goes on until it ends too.
    shutdown(destination(d), SHUT_WR);
    NoteEnd(d);
    dir.ended = true;
    if (dirs_[1 - d].ended) Finish();
    return;
  }
  if (res == -ENOBUFS && stopping_) return;  // nothing read: the hand-over does not need this recv
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
  CountUserBytes(d, static_cast<uint64_t>(res));
  dir.sent += static_cast<size_t>(res);
  if (dir.sent < dir.length) {
    SendRest(d);
    return;
  }
  ReleaseBuffer(d);
  if (!stopping_) Receive(d);
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
