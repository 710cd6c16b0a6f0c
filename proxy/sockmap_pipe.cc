#include "proxy/sockmap_pipe.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <linux/tcp.h>  // the kernel's tcp_info, with tcpi_bytes_acked
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "bpf/socket_key.h"

namespace skproxy {
namespace {

constexpr long kFirstWaitNs = 50'000;    // the backlog usually drains within one kworker run
constexpr long kLongestWaitNs = 5'000'000;
constexpr uint8_t kTcpClose = 7;  // include/net/tcp_states.h

}  // namespace

absl::StatusOr<WriteProgress> ReadWriteProgress(int fd) {
  tcp_info info{};
  socklen_t len = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return absl::ErrnoToStatus(errno, "TCP_INFO");
  int unacked = 0;  // SIOCOUTQ: write_seq - snd_una, i.e. in the write queue and not yet acknowledged
  if (ioctl(fd, SIOCOUTQ, &unacked) != 0) return absl::ErrnoToStatus(errno, "SIOCOUTQ");
  return WriteProgress{info.tcpi_state, info.tcpi_bytes_acked + static_cast<uint64_t>(unacked)};
}

std::unique_ptr<SockmapPipe> SockmapPipe::Create(Ring& ring, Metrics& metrics, bpf::SockmapProgram& program,
                                                 NoticeTargets& notices, Options options, UniqueFd downstream,
                                                 UniqueFd upstream, std::function<void()> on_finish,
                                                 InsertFailure* failure) {
  auto fail = [&](std::string reason, absl::Status status) -> std::unique_ptr<SockmapPipe> {
    *failure = InsertFailure{std::move(reason), std::move(status), std::move(downstream), std::move(upstream)};
    return nullptr;
  };
  absl::StatusOr<WriteProgress> up = ReadWriteProgress(upstream.get());
  if (!up.ok()) return fail("socket_state", up.status());
  absl::StatusOr<WriteProgress> down = ReadWriteProgress(downstream.get());
  if (!down.ok()) return fail("socket_state", down.status());
  absl::StatusOr<skp_key> down_key = bpf::SocketKey(downstream.get());
  if (!down_key.ok()) return fail("socket_state", down_key.status());
  absl::StatusOr<skp_key> up_key = bpf::SocketKey(upstream.get());
  if (!up_key.ok()) return fail("socket_state", up_key.status());

  bpf::ConnectionKeys keys{*down_key, *up_key};
  int err = 0;
  bpf::Inserted inserted = bpf::Inserted::kNone;
  absl::Status status =
      program.Insert(keys, downstream.get(), upstream.get(), options.gate_limit, options.worker, &inserted, &err);
  std::string reason;
  if (!status.ok()) {
    const char* name = strerrorname_np(err);  // EBUSY, EOPNOTSUPP, ENOMEM...: a bounded set of labels
    reason = absl::StrCat("insert_", absl::AsciiStrToLower(name != nullptr ? name : "error"));
    if (inserted == bpf::Inserted::kNone) return fail(std::move(reason), std::move(status));
  }
  std::unique_ptr<SockmapPipe> pipe(new SockmapPipe(ring, metrics, program, notices, options.gate_limit,
                                                    CopyBufferSize(options.receive_buffer), keys, std::move(downstream),
                                                    std::move(upstream), std::move(on_finish)));
  pipe->dirs_[SKP_DOWNSTREAM_TO_UPSTREAM].destination_base = up->entered;
  pipe->dirs_[SKP_UPSTREAM_TO_DOWNSTREAM].destination_base = down->entered;
  if (inserted == bpf::Inserted::kDownstreamOnly) {
    pipe->upstream_in_map_ = false;
    pipe->dirs_[SKP_UPSTREAM_TO_DOWNSTREAM].source_in_map = false;
    *failure = InsertFailure{std::move(reason), std::move(status), UniqueFd(), UniqueFd()};
  }
  return pipe;
}

size_t SockmapPipe::CopyBufferSize(uint64_t receive_buffer) {
  return static_cast<size_t>(std::clamp<uint64_t>(receive_buffer, 256 * 1024, 4 * 1024 * 1024));
}

SockmapPipe::SockmapPipe(Ring& ring, Metrics& metrics, bpf::SockmapProgram& program, NoticeTargets& notices,
                         uint64_t gate_limit, size_t copy_buffer_size, bpf::ConnectionKeys keys,
                         UniqueFd downstream, UniqueFd upstream, std::function<void()> on_finish)
    : Pipe(ring, metrics, std::move(downstream), std::move(upstream), std::move(on_finish)),
      program_(program),
      notices_(notices),
      gate_limit_(gate_limit),
      copy_buffer_size_(copy_buffer_size),
      keys_(keys) {
  dirs_[SKP_DOWNSTREAM_TO_UPSTREAM].source_key = keys.downstream;
  dirs_[SKP_UPSTREAM_TO_DOWNSTREAM].source_key = keys.upstream;
  for (int d = 0; d < SKP_DIRECTIONS; ++d) {
    dirs_[d].slot = keys.user_slots[d];
    notices_.Add(dirs_[d].slot, this);
  }
}

// A ring buffer still held here goes with the ring (the worker tears its ring down first); a pipe that
// finished gave its buffers back already (EndIfDone after every send, Abort).
SockmapPipe::~SockmapPipe() { ReleaseKernelState(); }

void SockmapPipe::Start() {
  // Bytes that arrived before the insertion sit in the receive queue, where the verdict only sees them
  // when the next segment arrives. Setting SO_RCVLOWAT runs the data-ready path now, synchronously.
  // Without it those bytes could wait for ever (a client that sent its request and waits): reset.
  if (!SetLowWater(1)) {
    metrics_.PipeError("rcvlowat").Increment();
    Abort();
    return;
  }
  Pump(0);
  Pump(1);
}

bool SockmapPipe::SetLowWater(int bytes) {
  for (int fd : {downstream_.get(), upstream_.get()}) {
    if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes)) != 0) return false;
  }
  return true;
}

void SockmapPipe::WatchReadable(int d) {
  if (dirs_[d].readable_poll) return;
  dirs_[d].readable_poll = true;
  io_uring_prep_poll_add(Submit(kReadable + d), source(d), POLLIN | POLLRDHUP);
}

// A second poll rather than one whose events change: it stays armed while the verdict redirects, and
// the readable poll comes and goes with the passed bytes.
void SockmapPipe::WatchHangup(int d) {
  if (dirs_[d].hangup_poll) return;
  dirs_[d].hangup_poll = true;
  io_uring_prep_poll_add(Submit(kHangup + d), source(d), POLLRDHUP);
}

void SockmapPipe::WatchWritable(int d) {
  if (dirs_[d].writable_poll) return;
  dirs_[d].writable_poll = true;
  io_uring_prep_poll_add(Submit(kWritable + d), destination(d), POLLOUT);
}

void SockmapPipe::WaitForBacklog(int d) {
  dirs_[d].on_timer = true;
  if (timer_armed_ || aborting_) return;
  timer_armed_ = true;
  const long next = timer_delay_.tv_nsec == 0 ? kFirstWaitNs : std::min<long long>(timer_delay_.tv_nsec * 2, kLongestWaitNs);
  timer_delay_.tv_sec = 0;
  timer_delay_.tv_nsec = next;
  io_uring_prep_timeout(Submit(kTimer), &timer_delay_, 0, 0);
}

void SockmapPipe::Handle(unsigned tag, int res, unsigned cqe_flags) {
  switch (tag) {
    case kReadable:
    case kReadable + 1:
    case kWritable:
    case kWritable + 1:
    case kHangup:
    case kHangup + 1: {
      const int d = static_cast<int>(tag & 1);
      if (tag < kWritable) {
        dirs_[d].readable_poll = false;
      } else if (tag < kHangup) {
        dirs_[d].writable_poll = false;
      } else {
        dirs_[d].hangup_poll = false;
      }
      if (res < 0 && res != -ECANCELED) Abort();
      Pump(d);
      break;
    }
    case kTimer: {
      timer_armed_ = false;
      for (int d = 0; d < 2; ++d) {
        if (dirs_[d].on_timer) Pump(d);
      }
      if (!timer_armed_) timer_delay_.tv_nsec = 0;
      break;
    }
    case kRecv:
    case kRecv + 1:
      OnReceived(static_cast<int>(tag - kRecv), res, cqe_flags);
      break;
    case kSend:
    case kSend + 1:
      OnSent(static_cast<int>(tag - kSend), res);
      break;
    default:  // kCancel
      break;
  }
  if (aborting_ && inflight() == 0) Finish();
  if (leave_ == Leave::kStopping && !aborting_) StopForLeave();
}

void SockmapPipe::OnNotice(uint32_t slot, uint32_t kind) {
  const int d = slot == dirs_[0].slot ? 0 : 1;
  if (kind == SKP_NOTICE_BROKEN) {
    // The verdict could not remove a retransmitted head and dropped the skb rather than repeat bytes:
    // the stream has a hole now, which only a reset can tell the peers.
    metrics_.PipeError("trim_short").Increment();
    Abort();
  } else {
    Pump(d);
  }
  if (aborting_ && inflight() == 0) Finish();
}

bool SockmapPipe::Hold(bool hold) {
  // While leaving, the pipe is held and reads nothing until the leave pass has run.
  if (!upstream_in_map_ || hold == held_ || aborting_ || state_released_ || leave_ != Leave::kNone) return false;
  held_ = hold;
  for (const Direction& dir : dirs_) program_.Hold(dir.slot, hold);
  // Held, every byte comes to user space: each direction keeps a recv through the ring in flight from now
  // on. Released, that recv stays until bytes (the gate's) or the FIN complete it, watching the source
  // meanwhile; then the direction goes back to the synchronous copy and Idle's arming.
  if (hold) {
    for (int d = 0; d < SKP_DIRECTIONS; ++d) {
      if (!dirs_[d].on_timer) Pump(d);
    }
  }
  if (aborting_ && inflight() == 0) Finish();
  return true;
}

void SockmapPipe::OnSweep(uint32_t slot) { OnNotice(slot, SKP_NOTICE_PASSED); }

bool SockmapPipe::BeginLeave(std::function<void()> ask_pass, Left left) {
  if (!held_ || leave_ != Leave::kNone || aborting_ || state_released_) return false;
  for (const Direction& dir : dirs_) {
    if (dir.eof || dir.shut) return false;  // ending anyway
  }
  // From here, bytes that arrive stay in the source's receive queue: a data-ready runs the verdict only
  // once SO_RCVLOWAT bytes are queued (the kernel caps it at half the receive buffer), or at a FIN, so what
  // the verdict has passed stops growing while the pipe writes it out and the pass compares. The
  // setsockopt also takes each leg's lock, which every verdict holds while it runs: none that read the
  // hold before it was set is still deciding.
  const int most = std::numeric_limits<int>::max();
  for (int d = 0; d < SKP_DIRECTIONS; ++d) {
    if (!dirs_[d].source_in_map) continue;
    if (setsockopt(source(d), SOL_SOCKET, SO_RCVLOWAT, &most, sizeof(most)) != 0) {
      SetLowWater(1);  // back to 1 where it was raised: the kick runs the verdict on what waited
      return false;
    }
  }
  leave_ = Leave::kStopping;
  leave_cancelled_ = false;
  ask_pass_ = std::move(ask_pass);
  left_ = std::move(left);
  StopForLeave();
  return true;
}

// Reads and polls are cancelled once no send is in flight (a send is never cut short); a recv that had
// bytes completes with them, and they are written first. Once nothing is in flight, the legs are marked.
void SockmapPipe::StopForLeave() {
  for (const Direction& dir : dirs_) {
    if (dir.send_inflight) return;  // its completion comes back here
  }
  if (!leave_cancelled_) {
    leave_cancelled_ = true;
    CancelAll(kCancel);
    return;
  }
  if (inflight() == 0) AskToLeave();
}

void SockmapPipe::AskToLeave() {
  for (const Direction& dir : dirs_) {
    if (dir.eof || dir.shut || dir.length > dir.sent || dir.ring_buffer != kNoRingBuffer) {
      ResumeAfterLeave();
      return;
    }
  }
  // Nothing redirected towards either leg is still in its backlog, and every byte passed from either leg
  // has been written: the psocks hold nothing of this connection.
  for (int d = 0; d < SKP_DIRECTIONS; ++d) {
    if (!BacklogDrained(d) || !AllPassedCopied(d)) {
      if (!aborting_) ResumeAfterLeave();
      return;
    }
  }
  for (int d = 0; d < SKP_DIRECTIONS; ++d) {
    if (dirs_[d].source_in_map && !program_.AskToLeave(source(d)).ok()) {
      ResumeAfterLeave();
      return;
    }
  }
  leave_ = Leave::kAsked;
  ask_pass_();
}

void SockmapPipe::AfterLeavePass() {
  if (leave_ != Leave::kAsked) return;
  if (aborting_) {  // reset meanwhile (a notice): the legs are closed with the pipe, out of the map or not
    leave_ = Leave::kNone;
    for (int d = 0; d < SKP_DIRECTIONS; ++d) program_.ForgetLeave(source(d));
    return;
  }
  for (int d = 0; d < SKP_DIRECTIONS; ++d) {
    if (dirs_[d].source_in_map && program_.Left(source(d), keys_)) {
      dirs_[d].source_in_map = false;
      // A connection with a leg out is copied in user space for good: no redirect can reach that leg.
      upstream_in_map_ = false;
    }
  }
  if (dirs_[0].source_in_map || dirs_[1].source_in_map) {
    ResumeAfterLeave();  // a leg whose verdict passed more meanwhile: copy it, ask again at the next sample
    return;
  }
  // Both legs are plain sockets now: the verdict never runs for them again.
  SetLowWater(1);
  ReleaseKernelState();
  leave_ = Leave::kNone;
  held_ = false;
  Left left = std::move(left_);
  ask_pass_ = nullptr;
  metrics_.SockmapLeave("left").Increment();
  left(std::move(downstream_), std::move(upstream_));
}

void SockmapPipe::ResumeAfterLeave() {
  metrics_.SockmapLeave("stayed").Increment();
  const Leave was = leave_;
  leave_ = Leave::kNone;
  ask_pass_ = nullptr;
  left_ = nullptr;
  for (int d = 0; d < SKP_DIRECTIONS; ++d) {
    if (was == Leave::kAsked && dirs_[d].source_in_map) program_.ForgetLeave(source(d));
  }
  // Back to SO_RCVLOWAT 1: bytes that waited in a source run the verdict now (the same kick as at Start).
  if (!SetLowWater(1)) {
    metrics_.PipeError("rcvlowat").Increment();
    Abort();
    return;
  }
  Pump(0);
  Pump(1);
}

void SockmapPipe::Pump(int d) {
  Direction& dir = dirs_[d];
  dir.on_timer = false;
  while (!aborting_ && !dir.shut) {
    // A recv or send through the ring is in flight: its completion pumps again, and no second read may
    // overtake the first.
    if (dir.recv_inflight || dir.send_inflight) return;
    if (dir.length > dir.sent) {
      if (!Flush(d)) return;
      if (DestinationBusy(d)) {
        WaitForBacklog(d);
        return;
      }
    }
    if (dir.eof) {
      if (!BacklogDrained(d)) {
        WaitForBacklog(d);
        return;
      }
      ShutDestination(d);
      return;
    }
    // Passed bytes wait in the source (charged to its receive buffer, closing its window) until the
    // destination has worked off half of what the gate allows; the send buffer is larger than the gate
    // (see KernelPathSendBuffer), so it would not stop user space by itself.
    // Held, every byte is passed, so the same bound applies to every read.
    if ((held_ || !AllPassedCopied(d)) && DestinationBusy(d)) {
      WaitForBacklog(d);
      return;
    }
    if (held_) {
      dir.buffer.reset();
      if (leave_ != Leave::kNone) return;  // leaving: what arrives waits in the source from here
      if (!dir.pool_dry) {
        Receive(d);
        return;
      }
      if (!ReadIntoOwnBuffer(d)) return;
      continue;
    }
    // Not zeroed: recv overwrites what is sent.
    if (!dir.buffer) dir.buffer.reset(new uint8_t[copy_buffer_size_]);
    // With the socket in the sockhash, recv only returns what the verdict passed to user space, and 0 once
    // every byte before the FIN has been through the verdict.
    const ssize_t n = recv(source(d), dir.buffer.get(), copy_buffer_size_, MSG_DONTWAIT);
    if (n > 0) {
      dir.length = static_cast<size_t>(n);
      dir.sent = 0;
      continue;
    }
    if (n == 0) {
      if (!AtEof(d)) return;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      dir.buffer.reset();  // an idle direction holds no copy buffer
      Idle(d);
      return;
    }
    Abort();
    return;
  }
}

bool SockmapPipe::AtEof(int d) {
  Direction& dir = dirs_[d];
  // recv() says EOF as soon as the FIN is in and the psock's ready queue is empty, but bytes the verdict
  // passed while the receive buffer was full wait in the psock's own backlog for a kworker and arrive
  // after it. The stream has ended only when every passed byte has been copied.
  // With a psock, a reset also reads as 0 (SOCK_DONE is checked before sk_err), and a send on the
  // socket may have taken the error: tell them apart, and pass a reset on as a reset.
  if (SourceWasReset(d, dirs_[1 - d].shut)) {
    Abort();
    return false;
  }
  if (!AllPassedCopied(d)) {
    WaitForBacklog(d);
    return false;
  }
  dir.eof = true;
  NoteEnd(d);
  dir.buffer.reset();
  return true;
}

// A plain recv with IOSQE_BUFFER_SELECT: it waits (polled by the ring) until the verdict passes bytes, and
// takes a buffer from the worker's pool only then, so an idle held connection holds none.
void SockmapPipe::Receive(int d) {
  dirs_[d].recv_inflight = true;
  io_uring_sqe* sqe = Submit(kRecv + d);
  io_uring_prep_recv(sqe, source(d), nullptr, ring_.buffers().buffer_size(), 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BufferRing::kGroupId;
}

void SockmapPipe::OnReceived(int d, int res, unsigned cqe_flags) {
  Direction& dir = dirs_[d];
  dir.recv_inflight = false;
  if (cqe_flags & IORING_CQE_F_BUFFER) {
    const auto id = static_cast<int>(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
    if (aborting_ || res <= 0) {
      ring_.buffers().Return(static_cast<unsigned>(id));
    } else {
      dir.ring_buffer = id;
      dir.length = static_cast<size_t>(res);
      dir.sent = 0;
    }
  }
  if (aborting_) return;
  if (res > 0 || res == -EINTR || res == -EAGAIN || (res == -ECANCELED && leave_ != Leave::kNone)) {
    Pump(d);
  } else if (res == 0) {
    if (AtEof(d)) Pump(d);
  } else if (res == -ENOBUFS) {
    // The worker's pool is empty (the bytes stay in the socket). Nothing of this direction is in flight
    // (one recv or one send at a time), so it reads into its own buffer instead: other connections may
    // hold the whole pool in sends that complete only once this direction reads (own_buffer.h).
    ring_.buffers().NoteEmpty();
    dir.pool_dry = true;
    Pump(d);
  } else {
    Abort();
  }
}

void SockmapPipe::OnSent(int d, int res) {
  Direction& dir = dirs_[d];
  dir.send_inflight = false;
  if (aborting_ || res <= 0) {
    ReturnRingBuffer(d);  // no send reads it any more
    if (!aborting_) Abort();
    return;
  }
  dir.sent += static_cast<size_t>(res);
  dir.user_copied += static_cast<uint64_t>(res);
  CountUserBytes(d, static_cast<uint64_t>(res));
  if (dir.sent == dir.length) {
    ReturnRingBuffer(d);
    // Tells the verdict every passed byte so far is in the destination's write queue.
    program_.PublishUserCopied(dir.slot, dir.user_copied);
  }
  Pump(d);
}

// Watches the source for POLLIN until it has bytes, then reads them (the send goes through the ring as for
// a pool buffer). The next read tries the pool again.
bool SockmapPipe::ReadIntoOwnBuffer(int d) {
  Direction& dir = dirs_[d];
  if (dir.readable_poll) return false;  // its completion pumps again
  const ssize_t n = dir.own.Read(source(d));
  if (n > 0) {
    dir.pool_dry = false;
    dir.ring_buffer = kOwnBuffer;
    dir.length = static_cast<size_t>(n);
    dir.sent = 0;
    return true;
  }
  if (n == 0) return AtEof(d);
  if (errno == EINTR) return true;
  if (errno == EAGAIN) {
    WatchReadable(d);
    return false;
  }
  Abort();
  return false;
}

uint8_t* SockmapPipe::RingBytes(const Direction& dir) {
  return dir.ring_buffer == kOwnBuffer ? dir.own.data()
                                       : ring_.buffers().buffer(static_cast<unsigned>(dir.ring_buffer));
}

void SockmapPipe::ReturnRingBuffer(int d) {
  Direction& dir = dirs_[d];
  if (dir.ring_buffer == kNoRingBuffer) return;
  if (dir.ring_buffer == kOwnBuffer) {
    dir.own.Release();
  } else {
    ring_.buffers().Return(static_cast<unsigned>(dir.ring_buffer));
  }
  dir.ring_buffer = kNoRingBuffer;
  dir.length = dir.sent = 0;
}

void SockmapPipe::Idle(int d) {
  Direction& dir = dirs_[d];
  if (dir.source_in_map && !held_ && AllPassedCopied(d)) {
    // Arm, then look again: a pass that did not see the flag is visible here, and one after it posts a
    // notice. Either way no passed byte waits unseen while the source is not watched for POLLIN.
    program_.Arm(dir.slot);
    if (AllPassedCopied(d)) {
      WatchHangup(d);
      return;
    }
  }
  WatchReadable(d);
}

void SockmapPipe::ShutDestination(int d) {
  Direction& dir = dirs_[d];
  if (shutdown(destination(d), SHUT_WR) != 0) {
    // The destination is gone (ENOTCONN after a reset): the other side must learn of it as a reset.
    metrics_.PipeError("shutdown").Increment();
    Abort();
    return;
  }
  dir.shut = true;
  EndIfDone();
}

// Writes passed bytes to the destination. False when it has to wait (backlog, or a full send buffer).
bool SockmapPipe::Flush(int d) {
  Direction& dir = dirs_[d];
  if (!BacklogDrained(d)) {
    WaitForBacklog(d);
    return false;
  }
  if (dir.ring_buffer != kNoRingBuffer) {
    // MSG_WAITALL: the ring finishes a short send itself. OnSent goes on from here.
    dir.send_inflight = true;
    io_uring_prep_send(Submit(kSend + d), destination(d), RingBytes(dir) + dir.sent, dir.length - dir.sent,
                       MSG_NOSIGNAL | MSG_WAITALL);
    return false;
  }
  while (dir.sent < dir.length) {
    const ssize_t n = send(destination(d), dir.buffer.get() + dir.sent, dir.length - dir.sent,
                           MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      dir.sent += static_cast<size_t>(n);
      dir.user_copied += static_cast<uint64_t>(n);
      CountUserBytes(d, static_cast<uint64_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      WatchWritable(d);
      return false;
    }
    Abort();
    return false;
  }
  dir.length = dir.sent = 0;
  // Tells the verdict every passed byte so far is in the destination's write queue: it may redirect again.
  program_.PublishUserCopied(dir.slot, dir.user_copied);
  return true;
}

// While the gate passes bytes to user space, read more only once the destination has worked off half of
// what the gate allows: the passed bytes wait in the source's receive buffer meanwhile (its window closes
// and the sender slows) instead of piling up in the destination. Measured: one stream, 10.0 -> 12.2 Gbit/s.
bool SockmapPipe::DestinationBusy(int d) {
  Direction& dir = dirs_[d];
  // Redirected bytes still in the psock backlog are not in SIOCOUTQ: a count taken while the kworker is
  // behind (the start of a fast stream: megabytes redirected, a fraction entered) would let user space
  // write as much again past the gate. So the queue is counted only once the backlog has drained, which
  // costs no syscall while the verdict redirects nothing new (the gate passing bytes to user space).
  if (!BacklogDrained(d)) return true;
  // Read before the queue: a redirect between the two is then counted twice (in the queue and in what is
  // written since), never missed.
  const uint64_t redirected = dir.source_in_map ? program_.Redirected(dir.slot) : 0;
  const uint64_t written = dir.user_copied + redirected;
  if (dir.queue_known && dir.queued_at_check + (written - dir.written_at_check) <= gate_limit_ / 2) return false;
  int outq = 0;
  if (ioctl(destination(d), SIOCOUTQ, &outq) != 0) return false;
  // Redirected after the backlog was seen drained: maybe still in the backlog, so counted too (twice at
  // worst, if it entered meanwhile).
  const uint64_t queued = static_cast<uint64_t>(outq) + (redirected - dir.drained_at_redirected);
  // Busy twice in a row with nothing drained or written in between: the count may be frozen (below).
  const bool frozen = dir.queue_known && dir.queued_at_check == queued && dir.written_at_check == written;
  dir.queue_known = true;
  dir.queued_at_check = queued;
  dir.written_at_check = written;
  if (dir.queued_at_check <= gate_limit_ / 2) return false;
  // Busy: the direction waits on the timer, with no poll on the destination. A destination that was reset
  // keeps the count its reset left (write_seq - snd_una) for good and would look busy for ever: pass the
  // reset on instead. Asked only of a count that did not move (a draining destination was not reset), so
  // a busy bulk stream pays no second syscall per check.
  if (frozen) {
    absl::StatusOr<WriteProgress> progress = ReadWriteProgress(destination(d));
    if (progress.ok() && progress->tcp_state == kTcpClose) Abort();
  }
  return true;
}

bool SockmapPipe::AllPassedCopied(int d) const {
  return !dirs_[d].source_in_map || program_.Passed(dirs_[d].slot) <= dirs_[d].user_copied;
}

// True when every byte the verdict redirected for direction d has entered the destination's write queue.
// A destination that was reset never takes them: the connection is then reset too.
bool SockmapPipe::BacklogDrained(int d) {
  Direction& dir = dirs_[d];
  const uint64_t redirected = dir.source_in_map ? program_.Redirected(dir.slot) : 0;
  if (redirected == dir.drained_at_redirected) return true;
  absl::StatusOr<WriteProgress> progress = ReadWriteProgress(destination(d));
  if (progress.ok() && progress->tcp_state == kTcpClose) {
    Abort();
    return false;
  }
  if (!progress.ok()) return true;  // the socket is gone: nothing left to wait for
  if (progress->entered - dir.destination_base < redirected + dir.user_copied) return false;
  dir.drained_at_redirected = redirected;
  return true;
}

void SockmapPipe::EndIfDone() {
  if (!dirs_[0].shut || !dirs_[1].shut) return;
  // Both sources reached EOF (so user space read every passed byte) and both backlogs drained: nothing of
  // this connection is left in the kernel path. The sockets leave the sockhash when they are closed.
  ReleaseKernelState();
  Finish();
}

uint64_t SockmapPipe::kernel_bytes(int d) const {
  if (state_released_ || dirs_[d].slot == bpf::ConnectionKeys::kNoSlot) return kernel_bytes_[d];
  return program_.Redirected(dirs_[d].slot);
}

void SockmapPipe::ReleaseKernelState() {
  if (state_released_) return;
  activity_at_release_ = activity();  // the slots may serve another connection from now on
  for (int d = 0; d < 2; ++d) kernel_bytes_[d] = kernel_bytes(d);  // the slots go back to the pool
  state_released_ = true;
  for (const Direction& dir : dirs_) notices_.Remove(dir.slot);
  program_.RemoveState(keys_);
}

uint64_t SockmapPipe::activity() const {
  if (state_released_) return activity_at_release_;
  uint64_t total = 0;
  for (const Direction& dir : dirs_) {
    total += dir.user_copied;
    if (dir.source_in_map) total += program_.Redirected(dir.slot) + program_.Passed(dir.slot);
  }
  return total;
}

std::string SockmapPipe::Operations() const {
  std::string out = absl::StrCat(Pipe::Operations(), held_ ? " held" : "", upstream_in_map_ ? "" : " upstream_not_in_map",
                                 leave_ == Leave::kStopping ? " leave_stopping" : "",
                                 leave_ == Leave::kAsked ? " leave_asked" : "", aborting_ ? " aborting" : "");
  for (int d = 0; d < 2; ++d) {
    const Direction& dir = dirs_[d];
    absl::StrAppend(&out, d == 0 ? "; d2u:" : "; u2d:");
    if (dir.source_in_map && !state_released_ && dir.slot != bpf::ConnectionKeys::kNoSlot) {
      absl::StrAppend(&out, " redirected=", program_.Redirected(dir.slot), " passed=", program_.Passed(dir.slot));
    }
    absl::StrAppend(&out, " copied=", dir.user_copied, " pending=", dir.length - dir.sent,
                    dir.readable_poll ? " poll_in" : "", dir.hangup_poll ? " poll_rdhup" : "",
                    dir.writable_poll ? " poll_out" : "", dir.on_timer ? " timer" : "", dir.recv_inflight ? " recv" : "",
                    dir.send_inflight ? " send" : "", dir.pool_dry ? " pool_dry" : "", dir.eof ? " eof" : "",
                    dir.shut ? " shut" : "");
  }
  return out;
}

void SockmapPipe::Abort(bool reset) {
  if (aborting_) return;
  aborting_ = true;
  for (int d = 0; d < SKP_DIRECTIONS; ++d) {
    if (!dirs_[d].send_inflight) ReturnRingBuffer(d);
  }
  ReleaseKernelState();
  if (reset) ArmResetOnClose();
  CancelAll(kCancel);
}

}  // namespace skproxy
