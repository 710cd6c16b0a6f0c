// Stream I/O with deadlines on connected sockets. Every call polls; none blocks past its deadline.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "tests/integration/deadline.h"
#include "tests/integration/pattern.h"
#include "tests/integration/sha256.h"
#include "tests/integration/units.h"

namespace skproxy::itest {

struct IoResult {
  uint64_t bytes = 0;
  bool eof = false;        // read a clean EOF
  int error = 0;           // errno that ended the transfer (ECONNRESET, EPIPE, ...)
  bool timed_out = false;  // the deadline passed first
  std::string Describe() const;
};

// Reading speed. rate == 0 reads as fast as possible. With slow_phase_bytes > 0 the reader alternates:
// fast_phase_bytes unpaced, then slow_phase_bytes at slow_rate, and again, so a proxy sees its peer's
// receive window open and close many times in one stream.
struct ReadPacing {
  double rate = 0;  // bytes/s for the whole stream
  uint64_t fast_phase_bytes = 0;
  uint64_t slow_phase_bytes = 0;
  double slow_rate = 0;  // bytes/s in a slow phase
  size_t chunk = 256 * KiB;
};

// Sends bytes [offset, offset + n) of stream `id`, paced at `rate` bytes/s if > 0. `progress` (optional)
// is advanced by every byte the kernel accepted; `stop` (optional) cuts the pacing short.
IoResult SendPattern(int fd, uint32_t id, uint64_t offset, uint64_t n, Deadline deadline, double rate = 0,
                     std::atomic<uint64_t>* progress = nullptr, const std::atomic<bool>* stop = nullptr);
IoResult SendAll(int fd, const void* data, size_t n, Deadline deadline);
// Reads exactly n bytes (fewer only on EOF, error or deadline).
IoResult RecvExact(int fd, void* data, size_t n, Deadline deadline);
// Reads until EOF, error, deadline or `max_bytes`, feeding every byte to `checker` and `sha` (both optional).
// `stop` (optional) ends the read early when it becomes true.
IoResult ReadStream(int fd, PatternChecker* checker, Deadline deadline, const ReadPacing& pacing = {},
                    std::atomic<uint64_t>* progress = nullptr, Sha256* sha = nullptr,
                    uint64_t max_bytes = UINT64_MAX, const std::atomic<bool>* stop = nullptr);

// Sends n bytes of stream `id` and reads the echo at the same time (one thread, poll), shuts down the write
// side after the last byte and reads until EOF.
struct EchoResult {
  IoResult send, recv;
  int64_t first_bad = -1;
  std::string checker_description;
  std::string sha_sent, sha_received;  // hex, only when asked for
  std::string Describe() const;
};
// Optional controls of an exchange: its progress, a pause and an end part-way.
struct EchoControl {
  std::atomic<uint64_t>* echoed = nullptr;  // advanced by every echoed byte read
  // With `pause`: the exchange sends nothing past offset `pause_at` until every byte before it has come
  // back, then calls pause() and goes on when it returns: a barrier that holds many connections open at
  // once with nothing in flight.
  std::function<void()> pause;
  uint64_t pause_at = 0;
  // Return as soon as this many bytes have come back, without shutting down (the caller then resets, or
  // closes, a stream cut short).
  uint64_t stop_after_echoed = UINT64_MAX;
};
EchoResult EchoExchange(int fd, uint32_t id, uint64_t n, Deadline deadline, bool compute_sha = false,
                        const EchoControl& control = {});

// Waits until the peer closes (EOF or reset), discarding data. closed=false means the deadline passed.
struct CloseResult {
  bool closed = false;
  bool reset = false;
  double seconds = 0;
  uint64_t discarded = 0;
};
CloseResult WaitForPeerClose(int fd, Deadline deadline);

}  // namespace skproxy::itest
