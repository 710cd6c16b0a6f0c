// Socket options whose failure the proxy survives but must not hide.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "config/config.h"

namespace skproxy {

// Gives fd a receive buffer of `bytes`: SO_RCVBUFFORCE (past net.core.rmem_max; needs CAP_NET_ADMIN), else
// SO_RCVBUF. An error when both fail, or when the buffer the kernel granted is smaller than asked for (plain
// SO_RCVBUF is capped at net.core.rmem_max): below 512 KiB the kernel path crawls on zero-window probes.
absl::Status SetReceiveBuffer(int fd, int bytes);

// The send buffer of both legs on the kernel path. A psock sends redirected skbs and delivers the skbs the
// gate passes to its own socket from one queue, in order: a redirected skb that waits for room in the
// write queue holds up the passed bytes behind it, which user space then cannot read. When the peer
// application waits for those bytes before it reads again (an echo), nothing moves any more. With the
// send buffer above what the gate lets into the write queue plus the backlog, a redirected skb always
// finds room, and the queue never waits. The gate, not this buffer, bounds the memory.
// SO_SNDBUFFORCE doubles the value (the other half for skb overhead, which counts against it too).
inline int KernelPathSendBuffer(const config::Sockmap& sockmap) {
  const uint64_t bytes = sockmap.gate_limit_bytes;
  return bytes > (1u << 30) ? (1 << 30) : static_cast<int>(bytes);
}

// Gives fd a send buffer of at least `bytes` (SO_SNDBUFFORCE, else SO_SNDBUF); the same checks.
absl::Status SetSendBuffer(int fd, int bytes);

// SetReceiveBuffer; a failure is written to stderr once per process, since the same cause (no
// CAP_NET_ADMIN, a low rmem_max) repeats for every socket. The socket stays usable with the buffer it has.
void SetReceiveBufferOrWarnOnce(int fd, int bytes, std::string_view what);
void SetSendBufferOrWarnOnce(int fd, int bytes, std::string_view what);

// SO_MARK `mark` on fd, so that packet rules can tell skproxy's own upstream connections from the
// application's (the sidecar rules let marked packets pass instead of redirecting them back into skproxy).
// Needs CAP_NET_ADMIN (or CAP_NET_RAW); without it the error says so. Unlike the buffers this is not
// survivable: an unmarked upstream connection would be redirected back into skproxy.
absl::Status SetMark(int fd, uint32_t mark);
// SetMark; a failure is written to stderr once per process. Returns whether the mark is set.
bool SetMarkOrWarnOnce(int fd, uint32_t mark);

}  // namespace skproxy
