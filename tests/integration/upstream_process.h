// An upstream in a process of its own, so that a test can kill it by PID with connections open, as a
// crashed or OOM-killed server goes away: skproxy_itest_upstream (upstream_process_main.cc) echoes every
// connection with SO_LINGER 0 (EchoOptions::reset_on_close), so its death resets every socket it held
// and its listener refuses what comes next.
#pragma once

#include <sys/types.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/address.h"
#include "tests/integration/deadline.h"

namespace skproxy::itest {

class UpstreamProcess {
 public:
  // Starts the echo upstream on `address` (a port of 0 is picked first) and returns once it listens.
  // Start it from the test's main thread: the child dies with the thread that started it.
  static absl::StatusOr<std::unique_ptr<UpstreamProcess>> Start(SocketAddress address, Millis timeout = 30s);
  ~UpstreamProcess();  // kills it if still running
  UpstreamProcess(const UpstreamProcess&) = delete;
  UpstreamProcess& operator=(const UpstreamProcess&) = delete;

  SocketAddress endpoint() const { return endpoint_; }
  pid_t pid() const { return pid_; }
  // SIGKILL, then waits until the process is reaped: by then the kernel has closed (reset) its sockets.
  absl::Status Kill(Millis timeout = 10s);

 private:
  UpstreamProcess() = default;
  SocketAddress endpoint_;
  pid_t pid_ = -1;
};

// Path of the upstream binary: $SKPROXY_ITEST_UPSTREAM if set, else the path CMake compiled in.
std::string UpstreamProcessBinaryPath();

}  // namespace skproxy::itest
