#include "tests/integration/stream_io.h"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/integration/sockets.h"

namespace skproxy::itest {

namespace {

// A peer that resets must surface as EPIPE from send(), not kill the test binary.
const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

// After a recv() that returned no bytes: records EOF, an error or the deadline in *r and returns false, or
// waits until fd is readable and returns true (read again).
bool WaitAfterEmptyRecv(int fd, ssize_t got, Deadline deadline, IoResult* r) {
  if (got == 0) {
    r->eof = true;
    return false;
  }
  if (errno != EAGAIN && errno != EINTR) {
    r->error = errno;
    return false;
  }
  if (PollFd(fd, POLLIN, deadline) == 0) {
    r->timed_out = true;
    return false;
  }
  return true;
}

}  // namespace

std::string IoResult::Describe() const {
  return absl::StrCat(bytes, " bytes, ", eof ? "eof" : "no eof", error ? absl::StrCat(", ", strerror(error)) : "",
                      timed_out ? ", TIMED OUT" : "");
}

IoResult SendAll(int fd, const void* data, size_t n, Deadline deadline) {
  IoResult r;
  const char* p = static_cast<const char*>(data);
  while (r.bytes < n) {
    ssize_t w = send(fd, p + r.bytes, n - r.bytes, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) {
      r.bytes += w;
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
      r.error = errno;
      return r;
    }
    int ev = PollFd(fd, POLLOUT, deadline);
    if (ev == 0) {
      r.timed_out = true;
      return r;
    }
  }
  return r;
}

IoResult SendPattern(int fd, uint32_t id, uint64_t offset, uint64_t n, Deadline deadline, double rate,
                     std::atomic<uint64_t>* progress, const std::atomic<bool>* stop) {
  IoResult r;
  const size_t kChunk = rate > 0 ? 64 * KiB : 256 * KiB;
  std::vector<uint8_t> buf(kChunk);
  size_t have = 0, pos = 0;  // bytes filled in buf, bytes of buf already sent
  const auto start = Clock::now();
  while (r.bytes < n) {
    if (pos == have) {
      have = std::min<uint64_t>(kChunk, n - r.bytes);
      pos = 0;
      FillPattern(id, offset + r.bytes, buf.data(), have);
      if (rate > 0) {
        auto due = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(r.bytes / rate));
        if (!PaceUntil(due, deadline, stop)) {
          r.timed_out = Clock::now() >= deadline;
          return r;
        }
      }
    }
    ssize_t w = send(fd, buf.data() + pos, have - pos, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) {
      pos += w;
      r.bytes += w;
      if (progress) progress->fetch_add(w);
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
      r.error = errno;
      return r;
    }
    if (PollFd(fd, POLLOUT, deadline) == 0) {
      r.timed_out = true;
      return r;
    }
  }
  return r;
}

IoResult RecvExact(int fd, void* data, size_t n, Deadline deadline) {
  IoResult r;
  char* p = static_cast<char*>(data);
  while (r.bytes < n) {
    ssize_t got = recv(fd, p + r.bytes, n - r.bytes, MSG_DONTWAIT);
    if (got > 0) {
      r.bytes += got;
      continue;
    }
    if (!WaitAfterEmptyRecv(fd, got, deadline, &r)) return r;
  }
  return r;
}

IoResult ReadStream(int fd, PatternChecker* checker, Deadline deadline, const ReadPacing& pacing,
                    std::atomic<uint64_t>* progress, Sha256* sha, uint64_t max_bytes,
                    const std::atomic<bool>* stop) {
  IoResult r;
  std::vector<uint8_t> buf(std::max<size_t>(pacing.chunk, 4096));
  const bool phased = pacing.slow_phase_bytes > 0 && pacing.slow_rate > 0;
  const uint64_t cycle = pacing.fast_phase_bytes + pacing.slow_phase_bytes;
  const auto start = Clock::now();
  Clock::time_point slow_start{};
  bool in_slow = false;
  while (r.bytes < max_bytes) {
    if (stop && stop->load()) break;
    size_t want = std::min<uint64_t>(buf.size(), max_bytes - r.bytes);
    if (phased) {
      uint64_t pos = r.bytes % cycle;
      bool slow = pos >= pacing.fast_phase_bytes;
      if (slow && !in_slow) slow_start = Clock::now();
      in_slow = slow;
      if (slow) {
        uint64_t done_in_phase = pos - pacing.fast_phase_bytes;
        want = std::min<uint64_t>({want, cycle - pos, 16 * KiB});
        auto due = slow_start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(done_in_phase / pacing.slow_rate));
        if (!PaceUntil(due, deadline, stop)) break;
      } else {
        want = std::min<uint64_t>(want, pacing.fast_phase_bytes - pos);
      }
    } else if (pacing.rate > 0) {
      want = std::min<uint64_t>(want, 64 * KiB);
      auto due =
          start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(r.bytes / pacing.rate));
      if (!PaceUntil(due, deadline, stop)) break;
    }
    ssize_t got = recv(fd, buf.data(), want, MSG_DONTWAIT);
    if (got > 0) {
      if (checker) checker->Feed(buf.data(), got);
      if (sha) sha->Update(buf.data(), got);
      r.bytes += got;
      if (progress) progress->fetch_add(got);
      continue;
    }
    if (!WaitAfterEmptyRecv(fd, got, deadline, &r)) return r;
  }
  if (Clock::now() >= deadline && r.bytes < max_bytes) r.timed_out = true;
  return r;
}

std::string EchoResult::Describe() const {
  return absl::StrCat("sent ", send.Describe(), "; received ", recv.Describe(), "; pattern ", checker_description);
}

EchoResult EchoExchange(int fd, uint32_t id, uint64_t n, Deadline deadline, bool compute_sha,
                        const EchoControl& control) {
  EchoResult res;
  PatternChecker checker(id);
  Sha256 sha_out, sha_in;
  const size_t kChunk = 256 * KiB;
  std::vector<uint8_t> out(kChunk), in(kChunk);
  size_t have = 0, pos = 0;
  bool shut = false, paused = false;
  while (true) {
    if (!shut && res.send.bytes == n && !res.send.error) {
      shutdown(fd, SHUT_WR);
      shut = true;
    }
    const uint64_t send_limit = control.pause && !paused ? std::min(n, control.pause_at) : n;
    bool want_out = !shut && !res.send.error && res.send.bytes < send_limit;
    pollfd p{fd, static_cast<short>(POLLIN | (want_out ? POLLOUT : 0)), 0};
    int ms = PollTimeoutMs(deadline);
    int pr = poll(&p, 1, ms);
    if (pr < 0 && errno == EINTR) continue;
    if (pr == 0 && Clock::now() >= deadline) {
      res.recv.timed_out = true;
      if (want_out) res.send.timed_out = true;
      break;
    }
    if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
      ssize_t got = recv(fd, in.data(), in.size(), MSG_DONTWAIT);
      if (got > 0) {
        checker.Feed(in.data(), got);
        if (compute_sha) sha_in.Update(in.data(), got);
        res.recv.bytes += got;
        if (control.echoed) control.echoed->fetch_add(got);
        if (control.pause && !paused && res.recv.bytes >= control.pause_at) {
          paused = true;
          control.pause();
        }
        if (res.recv.bytes >= control.stop_after_echoed) break;
      } else if (got == 0) {
        res.recv.eof = true;
        break;
      } else if (errno != EAGAIN && errno != EINTR) {
        res.recv.error = errno;
        break;
      }
    }
    if (want_out && (p.revents & POLLOUT)) {
      if (pos == have) {
        have = std::min<uint64_t>(kChunk, send_limit - res.send.bytes);
        pos = 0;
        FillPattern(id, res.send.bytes, out.data(), have);
      }
      ssize_t w = send(fd, out.data() + pos, have - pos, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w > 0) {
        if (compute_sha) sha_out.Update(out.data() + pos, w);
        pos += w;
        res.send.bytes += w;
      } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        res.send.error = errno;
      }
    }
  }
  res.first_bad = checker.first_bad();
  res.checker_description = checker.Describe();
  if (compute_sha) {
    res.sha_sent = sha_out.FinalHex();
    res.sha_received = sha_in.FinalHex();
  }
  return res;
}

CloseResult WaitForPeerClose(int fd, Deadline deadline) {
  CloseResult res;
  auto start = Clock::now();
  char buf[64 * 1024];
  for (;;) {
    ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got > 0) {
      res.discarded += got;
      continue;
    }
    if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
      res.closed = true;
      res.reset = got < 0;
      break;
    }
    if (PollFd(fd, POLLIN, deadline) == 0) break;
  }
  res.seconds = SecondsSince(start);
  return res;
}

}  // namespace skproxy::itest
