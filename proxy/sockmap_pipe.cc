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

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "bpf/socket_key.h"

namespace skproxy {
namespace {

constexpr long kFirstWaitNs = 50'000;    // the backlog usually drains within one kworker run
constexpr long kLongestWaitNs = 5'000'000;
constexpr uint8_t kTcpEstablished = 1;  // include/net/tcp_states.h
constexpr uint8_t kTcpClose = 7;

int PendingError(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 ? err : errno;
}

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
                                                 uint64_t gate_limit, UniqueFd downstream, UniqueFd upstream,
                                                 std::function<void()> on_finish, InsertFailure* failure) {
  auto fail = [&](std::string reason, absl::Status status) -> std::unique_ptr<SockmapPipe> {
    *failure = InsertFailure{std::move(reason), std::move(status), std::move(downstream), std::move(upstream)};
    return nullptr;
  };
  absl::StatusOr<WriteProgress> up = ReadWriteProgress(upstream.get());
  if (!up.ok()) return fail("socket_state", up.status());
  absl::StatusOr<WriteProgress> down = ReadWriteProgress(downstream.get());
  if (!down.ok()) return fail("socket_state", down.status());
  // A leg that is already closing cannot be inserted (EOPNOTSUPP); checking first keeps the other leg from
  // spending a moment in the map, where bytes passed to it would be lost when it is taken out again.
  if (up->tcp_state != kTcpEstablished || down->tcp_state != kTcpEstablished)
    return fail("not_established", absl::FailedPreconditionError("a leg is no longer established"));
  absl::StatusOr<skp_key> down_key = bpf::SocketKey(downstream.get());
  if (!down_key.ok()) return fail("socket_state", down_key.status());
  absl::StatusOr<skp_key> up_key = bpf::SocketKey(upstream.get());
  if (!up_key.ok()) return fail("socket_state", up_key.status());

  bpf::ConnectionKeys keys{*down_key, *up_key};
  int err = 0;
  if (absl::Status s = program.Insert(keys, downstream.get(), upstream.get(), gate_limit, &err); !s.ok()) {
    const char* name = strerrorname_np(err);  // EBUSY, EOPNOTSUPP, ENOMEM...: a bounded set of labels
    return fail(absl::StrCat("insert_", absl::AsciiStrToLower(name != nullptr ? name : "error")), std::move(s));
  }
  std::unique_ptr<SockmapPipe> pipe(new SockmapPipe(ring, metrics, program, gate_limit, keys, std::move(downstream),
                                                    std::move(upstream), std::move(on_finish)));
  pipe->dirs_[SKP_DOWNSTREAM_TO_UPSTREAM].destination_base = up->entered;
  pipe->dirs_[SKP_UPSTREAM_TO_DOWNSTREAM].destination_base = down->entered;
  return pipe;
}

SockmapPipe::SockmapPipe(Ring& ring, Metrics& metrics, bpf::SockmapProgram& program, uint64_t gate_limit,
                         bpf::ConnectionKeys keys,
                         UniqueFd downstream, UniqueFd upstream, std::function<void()> on_finish)
    : Pipe(ring, metrics, std::move(downstream), std::move(upstream), std::move(on_finish)),
      program_(program),
      gate_limit_(gate_limit),
      keys_(keys) {
  dirs_[SKP_DOWNSTREAM_TO_UPSTREAM].source_key = keys.downstream;
  dirs_[SKP_UPSTREAM_TO_DOWNSTREAM].source_key = keys.upstream;
}

void SockmapPipe::Start() {
  // Bytes that arrived before the insertion sit in the receive queue, where the verdict
  // only sees them when the next segment arrives. Setting SO_RCVLOWAT runs the data-ready path now.
  const int one = 1;
  for (int fd : {downstream_.get(), upstream_.get()}) setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
  WatchReadable(0);
  WatchReadable(1);
}

void SockmapPipe::WatchReadable(int d) {
  dirs_[d].watching = true;
  io_uring_prep_poll_add(Submit(kReadable + d), source(d), POLLIN | POLLRDHUP);
}

void SockmapPipe::WatchWritable(int d) {
  dirs_[d].watching = true;
  io_uring_prep_poll_add(Submit(kWritable + d), destination(d), POLLOUT);
}

void SockmapPipe::WaitForBacklog() {
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
    case kWritable + 1: {
      const int d = static_cast<int>(tag & 1);
      dirs_[d].watching = false;
      if (res < 0 && res != -ECANCELED) Abort();
      Pump(d);
      break;
    }
    case kTimer: {
      timer_armed_ = false;
      bool waiting = false;
      for (int d = 0; d < 2; ++d) {
        if (!dirs_[d].watching) {
          Pump(d);
          waiting = waiting || timer_armed_;
        }
      }
      if (!waiting) timer_delay_.tv_nsec = 0;
      break;
    }
    default:  // kCancel
      break;
  }
  if (aborting_ && inflight() == 0) Finish();
}

void SockmapPipe::Pump(int d) {
  Direction& dir = dirs_[d];
  while (!aborting_ && !dir.shut) {
    if (dir.length > dir.sent) {
      if (!Flush(d)) return;
      if (DestinationBusy(d)) {
        WaitForBacklog();
        return;
      }
    }
    if (dir.eof) {
      if (!BacklogDrained(d)) {
        WaitForBacklog();
        return;
      }
      shutdown(destination(d), SHUT_WR);
      dir.shut = true;
      EndIfDone();
      return;
    }
    if (!dir.buffer) dir.buffer = std::make_unique<uint8_t[]>(kCopyBufferSize);
    // With the socket in the sockhash, recv only returns what the verdict passed to user space, and 0 once
    // every byte before the FIN has been through the verdict.
    const ssize_t n = recv(source(d), dir.buffer.get(), kCopyBufferSize, MSG_DONTWAIT);
    if (n > 0) {
      dir.length = static_cast<size_t>(n);
      dir.sent = 0;
      continue;
    }
    if (n == 0) {
      // recv() says EOF as soon as the FIN is in and the psock's ready queue is empty, but bytes the
      // verdict passed while the receive buffer was full wait in the psock's own backlog for a kworker
      // and arrive after it. The stream has ended only when every passed byte has been copied.
      // With a psock, a reset also reads as 0 (SOCK_DONE is checked before sk_err): tell them apart by
      // the pending error, and pass a reset on as a reset.
      if (PendingError(source(d)) != 0) {
        Abort();
        return;
      }
      if (!AllPassedCopied(d)) {
        WaitForBacklog();
        return;
      }
      dir.eof = true;
      dir.buffer.reset();
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      dir.buffer.reset();  // an idle direction holds no copy buffer
      WatchReadable(d);
      return;
    }
    Abort();
    return;
  }
}

// Writes passed bytes to the destination. False when it has to wait (backlog, or a full send buffer).
bool SockmapPipe::Flush(int d) {
  Direction& dir = dirs_[d];
  if (!BacklogDrained(d)) {
    WaitForBacklog();
    return false;
  }
  while (dir.sent < dir.length) {
    const ssize_t n = send(destination(d), dir.buffer.get() + dir.sent, dir.length - dir.sent,
                           MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      dir.sent += static_cast<size_t>(n);
      dir.user_copied += static_cast<uint64_t>(n);
      metrics_.UserBytes(d).fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
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
  program_.PublishUserCopied(keys_.user_slots[d], dir.user_copied);
  return true;
}

// While the gate passes bytes to user space, read more only once the destination has worked off half of
// what the gate allows: the passed bytes wait in the source's receive buffer meanwhile (its window closes
// and the sender slows) instead of piling up in the destination. Measured: one stream, 10.0 -> 12.2 Gbit/s.
bool SockmapPipe::DestinationBusy(int d) {
  int queued = 0;
  return ioctl(destination(d), SIOCOUTQ, &queued) == 0 && static_cast<uint64_t>(queued) > gate_limit_ / 2;
}

bool SockmapPipe::AllPassedCopied(int d) {
  absl::StatusOr<skp_dir> state = program_.ReadDirection(dirs_[d].source_key);
  return !state.ok() || state->passed <= dirs_[d].user_copied;
}

// True when every byte the verdict redirected for direction d has entered the destination's write queue.
// A destination that was reset never takes them: the connection is then reset too.
bool SockmapPipe::BacklogDrained(int d) {
  Direction& dir = dirs_[d];
  absl::StatusOr<WriteProgress> progress = ReadWriteProgress(destination(d));
  if (progress.ok() && progress->tcp_state == kTcpClose) {
    Abort();
    return false;
  }
  absl::StatusOr<skp_dir> state = program_.ReadDirection(dir.source_key);
  if (!state.ok() || !progress.ok()) return true;  // the socket is gone: nothing left to wait for
  return progress->entered - dir.destination_base >= state->redirected + dir.user_copied;
}

void SockmapPipe::EndIfDone() {
  if (!dirs_[0].shut || !dirs_[1].shut) return;
  // Both sources reached EOF (so user space read every passed byte) and both backlogs drained: nothing of
  // this connection is left in the kernel path. The sockets leave the sockhash when they are closed.
  program_.RemoveState(keys_);
  Finish();
}

void SockmapPipe::Abort() {
  if (aborting_) return;
  aborting_ = true;
  program_.RemoveState(keys_);
  ArmResetOnClose();
  CancelAll(kCancel);
}

}  // namespace skproxy
