// What GET /connections shows of one connection: a copy taken on its worker's thread (the only thread that
// touches a connection), so the admin thread can format it while the connection goes on.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "config/address.h"

namespace skproxy {

struct ConnectionInfo {
  uint64_t id = 0;      // process-wide, in accept order: the cursor of /connections' paging
  uint32_t worker = 0;  // the worker thread that owns it
  std::string listener;
  std::string route;    // the route an http/tls listener chose ("default" for the listener's cluster); empty: none
  std::string cluster;  // empty: none chosen (yet), or a transparent listener
  SocketAddress client;    // length 0: unknown
  SocketAddress upstream;  // the endpoint connected to, or being tried; length 0: none yet
  const char* state = "";     // inspecting, connecting, forwarding, piping, responding, closing
  const char* datapath = "";  // sockmap, userspace, or none before the pipe starts
  uint32_t switches = 0;      // moves between the data paths
  uint64_t kernel_bytes[2] = {0, 0};  // by direction: downstream_to_upstream, upstream_to_downstream
  uint64_t user_bytes[2] = {0, 0};
  std::string operations;  // Pipe::Operations of the current pipe; empty before the pipe starts
  absl::Duration age;
};

}  // namespace skproxy
