#include "tests/integration/upstream_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/integration/command.h"
#include "tests/integration/sockets.h"

#ifndef SKPROXY_ITEST_UPSTREAM
#define SKPROXY_ITEST_UPSTREAM ""
#endif

namespace skproxy::itest {

std::string UpstreamProcessBinaryPath() {
  const char* env = getenv("SKPROXY_ITEST_UPSTREAM");
  if (env && *env) return env;
  return SKPROXY_ITEST_UPSTREAM;
}

absl::StatusOr<std::unique_ptr<UpstreamProcess>> UpstreamProcess::Start(SocketAddress address, Millis timeout) {
  const std::string binary = UpstreamProcessBinaryPath();
  if (binary.empty() || access(binary.c_str(), X_OK) != 0)
    return absl::NotFoundError(
        absl::StrCat("upstream binary '", binary, "' is not executable; set SKPROXY_ITEST_UPSTREAM"));
  if (address.port() == 0) address.set_port(PickFreePort(address.family()));
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "pipe2");
  absl::StatusOr<pid_t> pid = SpawnChild({binary, address.ToString()}, out[1], STDERR_FILENO);
  close(out[1]);
  if (!pid.ok()) {
    close(out[0]);
    return pid.status();
  }
  std::unique_ptr<UpstreamProcess> p(new UpstreamProcess());
  p->pid_ = *pid;
  p->endpoint_ = address;
  // It prints one line once its listener is bound, or exits with the reason on stderr.
  std::string line;
  const Deadline deadline = DeadlineIn(timeout);
  while (line.find('\n') == std::string::npos) {
    if (PollFd(out[0], POLLIN, deadline) == 0) break;
    char buf[256];
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  if (line.rfind("listening on ", 0) != 0)
    return absl::UnavailableError(absl::StrCat("upstream process on ", address.ToString(), " did not start within ",
                                               timeout.count(), " ms: '", line, "'"));  // the destructor kills it
  return p;
}

absl::Status UpstreamProcess::Kill(Millis timeout) {
  if (pid_ <= 0) return absl::OkStatus();
  kill(pid_, SIGKILL);
  int status = 0;
  const bool reaped = WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout, 1ms);
  if (!reaped)
    return absl::DeadlineExceededError(absl::StrCat("upstream process ", pid_, " not reaped after SIGKILL"));
  pid_ = -1;
  return absl::OkStatus();
}

UpstreamProcess::~UpstreamProcess() { Kill().IgnoreError(); }

}  // namespace skproxy::itest
