// The options every upstream socket gets before its connect, set through the worker's ring when it can.
#pragma once

#include "proxy/ring.h"

namespace skproxy {

struct UpstreamOptions {
  // Set through the ring (IORING_OP_URING_CMD) rather than with a system call each.
  bool by_ring = false;
  // The kernel path's receive buffer for legs that may enter the sockhash; 0 when the kernel path is off.
  // SQEs point at this field until they run: the struct must outlive the submit (it lives in the worker).
  int receive_buffer = 0;
};

// Decided once per worker, after its ring exists. The ring is used when it sets socket options (Linux
// 6.7+) and, with a receive buffer to set, SO_RCVBUFFORCE is allowed: the ring cannot fall back to plain
// SO_RCVBUF and check the size granted, as SetReceiveBuffer does.
UpstreamOptions DecideUpstreamOptions(const Ring& ring, int receive_buffer);

// TCP_NODELAY and, for a leg that may enter the sockhash (`kernel_path`), the receive buffer: before the
// SYN, so the window never outgrows what the verdict's trim is sized for, and below ~512 KiB the kernel
// path crawls on zero-window probes. Through the ring these are SQEs hard-linked to the next one
// prepared, which must be the connect: they cost no system call and run before it.
void SetUpstreamOptions(Ring& ring, const UpstreamOptions& options, int fd, bool kernel_path);

}  // namespace skproxy
