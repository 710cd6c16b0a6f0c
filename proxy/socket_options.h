// Socket options whose failure the proxy survives but must not hide.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace skproxy {

// Gives fd a receive buffer of `bytes`: SO_RCVBUFFORCE (past net.core.rmem_max; needs CAP_NET_ADMIN), else
// SO_RCVBUF. An error when both fail, or when the buffer the kernel granted is smaller than asked for (plain
// SO_RCVBUF is capped at net.core.rmem_max): below 512 KiB the kernel path crawls on zero-window probes.
absl::Status SetReceiveBuffer(int fd, int bytes);

// SetReceiveBuffer; a failure is written to stderr once per process, since the same cause (no
// CAP_NET_ADMIN, a low rmem_max) repeats for every socket. The socket stays usable with the buffer it has.
void SetReceiveBufferOrWarnOnce(int fd, int bytes, std::string_view what);

}  // namespace skproxy
