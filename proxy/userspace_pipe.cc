#include "proxy/userspace_pipe.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace skproxy {

UserspacePipe::UserspacePipe(Ring& ring, Metrics& metrics, UniqueFd downstream, UniqueFd upstream,
                             std::function<void()> on_finish)
    : Pipe(ring, metrics, std::move(downstream), std::move(upstream), std::move(on_finish)) {}

void UserspacePipe::Start() {
  MaybeReceive(0);
  MaybeReceive(1);
}

std::string UserspacePipe::Operations() const {
  std::string out = Pipe::Operations();
  for (int d = 0; d < 2; ++d) {
    const Direction& dir = dirs_[d];
    absl::StrAppend(&out, d == 0 ? "; d2u:" : "; u2d:", dir.receiving ? " recv" : "", dir.sending ? " send" : "",
                    dir.awaiting_readable ? " poll" : "", dir.pausing ? " pausing" : "", dir.eof ? " eof" : "",
                    dir.ended ? " ended" : "", " queued=", dir.queue.size(), "/", dir.queued_bytes);
  }
  absl::StrAppend(&out, stopping_ ? " stopping" : "", aborting_ ? " aborting" : "");
  return out;
}

void UserspacePipe::MaybeReceive(int d) {
  Direction& dir = dirs_[d];
  if (dir.receiving || dir.pausing || dir.awaiting_readable || dir.eof || aborting_ || stopping_) return;
  const BufferRing& buffers = ring_.buffers();
  const bool multishot = ring_.recv_multishot_limit();
  // Without the limit a recv cannot be bounded in bytes: read one buffer only once the last one left.
  if (!multishot && !dir.queue.empty()) return;
  const uint64_t budget = uint64_t{kReadAheadBuffers} * buffers.buffer_size();
  if (dir.queued_bytes >= budget || dir.queue.size() >= kMaxQueuedBuffers) return;
  dir.receiving = true;
  io_uring_sqe* sqe = Submit(kRecv + d);
  if (multishot) {
    const auto limit = static_cast<uint32_t>(budget - dir.queued_bytes);
    dir.recv_cap = std::min(limit, buffers.buffer_size());
    PrepareLimitedRecvMultishot(sqe, source(d), BufferRing::kGroupId,
                                dir.recv_cap < buffers.buffer_size() ? dir.recv_cap : 0, limit);
  } else {
    dir.recv_cap = buffers.buffer_size();
    io_uring_prep_recv(sqe, source(d), nullptr, buffers.buffer_size(), 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BufferRing::kGroupId;
  }
}

void UserspacePipe::SendHead(int d) {
  Direction& dir = dirs_[d];
  const Chunk& head = dir.queue.front();
  dir.sending = true;
  io_uring_sqe* sqe = Submit(kSend + d);
  // MSG_WAITALL: io_uring retries a short stream send itself instead of completing early.
  io_uring_prep_send(sqe, destination(d), ChunkData(dir, head) + dir.sent, head.length - dir.sent,
                     MSG_NOSIGNAL | MSG_WAITALL);
}

uint8_t* UserspacePipe::ChunkData(const Direction& dir, const Chunk& chunk) {
  return chunk.buffer_id == kOwnBufferId ? dir.own.data() : ring_.buffers().buffer(chunk.buffer_id);
}

void UserspacePipe::ReturnBuffer(Direction& dir, uint16_t buffer_id) {
  if (buffer_id == kOwnBufferId) {
    dir.own.Release();
  } else {
    ring_.buffers().Return(buffer_id);
  }
}

void UserspacePipe::ReceiveIntoOwnBuffer(int d) {
  Direction& dir = dirs_[d];
  if (!dir.queue.empty() || aborting_ || stopping_ || dir.eof) {
    MaybeReceive(d);
    return;
  }
  const ssize_t n = dir.own.Read(source(d));
  if (n > 0) {
    dir.queue.push_back({kOwnBufferId, static_cast<uint32_t>(n)});
    dir.queued_bytes += static_cast<uint64_t>(n);
    dir.full_run = 0;  // a degraded read says nothing about bulk
    ++reads_;
    ++activity_;
    SendHead(d);
    return;
  }
  if (n == 0) {
    OnEof(d);
  } else if (errno == EAGAIN || errno == EINTR) {
    MaybeReceive(d);  // nothing after all: the pool again (and, if still dry, this again)
  } else {
    Abort();  // ECONNRESET and friends: reset the other leg
  }
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
    case kReadable:
    case kReadable + 1:
      dirs_[tag - kReadable].awaiting_readable = false;
      if (res == -ECANCELED) {
        MaybeReceive(tag - kReadable);  // stopped for the hand-over: re-armed if it did not happen
      } else {
        ReceiveIntoOwnBuffer(tag - kReadable);  // readable, or an error that the recv reports
      }
      break;
    case kPause:
    case kPause + 1:
      dirs_[tag - kPause].pausing = false;
      MaybeReceive(tag - kPause);
      break;
    default:  // kStop, kCancel: nothing to do, the cancelled operations complete on their own
      break;
  }
  if (aborting_ && inflight() == 0) {
    // Only now: a buffer must not go back to the pool while a send may still read it.
    ReleaseAll(0);
    ReleaseAll(1);
    if (failed_before_response_) {
      // The owner answers the client: the pipe never finishes and is only destroyed.
      failed_before_response_ = false;
      NoResponse no_response = std::move(no_response_);
      upstream_.Reset();
      no_response(std::move(downstream_), response_timed_out_);
      return;
    }
    Finish();
  }
  if (stopping_ && !aborting_ && inflight() == 0) FinishHandover();
}

bool UserspacePipe::WantsHandover(const Direction& dir) {
  if (no_response_) return false;  // the upstream has not answered yet
  if (promotion_.on_response) return true;
  if (promotion_.bulk_bytes > 0 && dir.full_run >= promotion_.bulk_bytes) return true;
  return promotion_.quiet_reads > 0 && reads_ % promotion_.quiet_reads == 0 && promotion_.quiet();
}

void UserspacePipe::StopForHandover() {
  stopping_ = true;
  for (int d = 0; d < 2; ++d) {
    // Bytes a multishot recv read before the cancel still complete (and are written) before its last
    // completion, -ECANCELED; a single-shot recv that already has bytes completes with them. A poll for
    // the own buffer has read nothing yet.
    unsigned tag;
    if (dirs_[d].receiving) {
      tag = kRecv + d;
    } else if (dirs_[d].awaiting_readable) {
      tag = kReadable + d;
    } else {
      continue;
    }
    const uint64_t op = reinterpret_cast<uint64_t>(static_cast<IoHandler*>(this)) | tag;
    io_uring_prep_cancel64(Submit(kStop + d), op, 0);
  }
}

void UserspacePipe::FinishHandover() {
  stopping_ = false;
  if (dirs_[0].eof || dirs_[1].eof) {
    // A direction ended while stopping: the connection is closing, nothing to gain. Read on.
    handover_ = nullptr;
    MaybeReceive(0);
    MaybeReceive(1);
    return;
  }
  Handover handover = std::move(handover_);
  handover(std::move(downstream_), std::move(upstream_));
}

void UserspacePipe::OnReceived(int d, int res, unsigned cqe_flags) {
  Direction& dir = dirs_[d];
  const bool more = (cqe_flags & IORING_CQE_F_MORE) != 0;
  if (!more) dir.receiving = false;
  if (cqe_flags & IORING_CQE_F_BUFFER) {
    const auto id = static_cast<uint16_t>(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
    if (aborting_ || res <= 0) {
      ring_.buffers().Return(id);
    } else {
      dir.queue.push_back({id, static_cast<uint32_t>(res)});
      dir.queued_bytes += static_cast<uint32_t>(res);
    }
  }
  if (aborting_) return;
  if (res > 0) {
    // A multishot recv completes as soon as bytes arrive, so a bulk read need not fill its buffer; one
    // that left more waiting in the socket (SOCK_NONEMPTY) is as much a sign of bulk as a full one.
    const bool full = static_cast<uint32_t>(res) == dir.recv_cap || (cqe_flags & IORING_CQE_F_SOCK_NONEMPTY);
    dir.full_run = full ? dir.full_run + static_cast<uint32_t>(res) : 0;
    if (d == 1) no_response_ = nullptr;  // the upstream answered: from now on its end is the client's to see
    ++reads_;
    ++activity_;
    if (!stopping_ && handover_ && WantsHandover(dir)) StopForHandover();
    if (!dir.sending) SendHead(d);
    if (more && dir.queue.size() >= kMaxQueuedBuffers && !dir.pausing && !stopping_) {
      // Many small segments wait behind a slow send: stop reading until they have left.
      dir.pausing = true;
      const uint64_t recv = reinterpret_cast<uint64_t>(static_cast<IoHandler*>(this)) | (kRecv + d);
      io_uring_prep_cancel64(Submit(kPause + d), recv, 0);
    }
    if (!more) MaybeReceive(d);  // the read-ahead limit ended it: re-armed if sends left room
    return;
  }
  if (more) return;
  if (res == -ECANCELED) {  // stopped for the hand-over, or paused: re-armed as the queue drains
    MaybeReceive(d);
    return;
  }
  if (res == 0 && d == 1 && no_response_) {
    NoteEnd(d);
    FailBeforeResponse();
    return;
  }
  if (res == 0) {
    OnEof(d);
    return;
  }
  if (res == -ENOBUFS) {
    ring_.buffers().NoteEmpty();
    // Every provided buffer is in use (the data waits in the socket). Our own send returns one and
    // re-arms; with nothing of ours in flight, read into our own buffer once there is something to read
    // (see own_buffer.h: waiting for the pool could wait for ever).
    if (stopping_ || dir.sending) return;
    dir.awaiting_readable = true;
    io_uring_prep_poll_add(Submit(kReadable + d), source(d), POLLIN);
    return;
  }
  if (d == 1 && no_response_) {
    FailBeforeResponse();
    return;
  }
  Abort();  // ECONNRESET and friends: reset the other leg
}

void UserspacePipe::OnSent(int d, int res) {
  Direction& dir = dirs_[d];
  dir.sending = false;
  if (aborting_) return;
  if (res <= 0) {
    if (d == 0 && no_response_) {  // the upstream refused the request's bytes before answering
      FailBeforeResponse();
      return;
    }
    Abort();
    return;
  }
  CountUserBytes(d, static_cast<uint64_t>(res));
  ++activity_;
  dir.sent += static_cast<uint32_t>(res);
  const Chunk head = dir.queue.front();
  if (dir.sent < head.length) {
    SendHead(d);
    return;
  }
  ReturnBuffer(dir, head.buffer_id);
  dir.queued_bytes -= head.length;
  dir.sent = 0;
  dir.queue.erase(dir.queue.begin());
  if (!dir.queue.empty()) {
    SendHead(d);
  } else {
    MaybeEnd(d);
  }
  MaybeReceive(d);
}

void UserspacePipe::OnEof(int d) {
  // Once the other direction has ended, no send of ours can use this socket any more, and only a send could
  // have taken a reset's error (one that failed has aborted the pipe): a reset would have been read as that
  // error, so this 0 is a FIN. A reset that follows the FIN cuts nothing of this direction, and a direct
  // peer would have read the same FIN: no system call is spent to look.
  if (!dirs_[1 - d].ended && SourceWasReset(d, /*our_side_shut=*/false)) {
    Abort();  // a FIN passed on would tell the other side a truncated stream was complete
    return;
  }
  // The source half-closed: pass the FIN on after the bytes before it. The other direction goes on.
  dirs_[d].eof = true;
  NoteEnd(d);
  MaybeEnd(d);
}

void UserspacePipe::MaybeEnd(int d) {
  Direction& dir = dirs_[d];
  if (!dir.eof || dir.ended || !dir.queue.empty()) return;
  dir.ended = true;
  if (dirs_[1 - d].ended) {
    // The other direction is over too, so the close comes next and sends this FIN itself (the destination
    // has nothing unread: it is the source that just reached EOF). One system call fewer per connection.
    Finish();
    return;
  }
  // Synchronous on purpose: io_uring always punts IORING_OP_SHUTDOWN to an io-wq thread.
  shutdown(destination(d), SHUT_WR);
}

void UserspacePipe::ReleaseAll(int d) {
  Direction& dir = dirs_[d];
  for (const Chunk& chunk : dir.queue) ReturnBuffer(dir, chunk.buffer_id);
  dir.queue.clear();
  dir.queued_bytes = 0;
  dir.sent = 0;
}

void UserspacePipe::FailBeforeResponse() {
  if (aborting_) return;
  failed_before_response_ = true;
  Abort(/*reset=*/false);
}

void UserspacePipe::TimeOutResponse() {
  if (!no_response_ || aborting_) return;
  response_timed_out_ = true;
  FailBeforeResponse();
}

void UserspacePipe::Abort(bool reset) {
  if (aborting_) return;
  aborting_ = true;
  if (reset) ArmResetOnClose();
  CancelAll(kCancel);
}

}  // namespace skproxy
