// The backend the ping-pong, connection-rate and idle-connection figures share: an epoll echo
// server with one SO_REUSEPORT listener per thread, so it is never the bottleneck on 2 cores
// and holds 10,000+ idle connections without a thread each.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "bench/net_util.h"

namespace skproxy::bench {

enum class EchoMode {
  kStream,  // echo every byte until the client closes (ping-pong, idle connections)
  kOnce,    // read `once_size` bytes, send them back, close first (connection rate)
};

struct EchoServerOptions {
  EchoMode mode = EchoMode::kStream;
  int threads = 1;
  size_t once_size = 64;
  double max_seconds = 3600;  // the server exits by itself after this, even if nobody stops it
};

// Binds every listener first (so a busy port is reported before anything runs), prints
// "listening ADDR" on stderr, then serves until max_seconds have passed.
absl::Status RunEchoServer(const SocketAddress& ep, const EchoServerOptions& options);

}  // namespace skproxy::bench
