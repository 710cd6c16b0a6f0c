#include "tests/integration/command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "tests/integration/sanitizer_report.h"

namespace skproxy::itest {

std::string CommandResult::Describe() const {
  return absl::StrCat("exit ", exit_code, term_signal ? absl::StrCat(" signal ", term_signal) : "",
                      timed_out ? " TIMED OUT" : "", "\nstdout:\n", out, "\nstderr:\n", err);
}

absl::StatusOr<pid_t> SpawnChild(const std::vector<std::string>& args, int out_fd, int err_fd,
                                 const std::vector<std::string>& extra_env) {
  // Everything the child needs is built before fork(): the test process has threads, so only
  // async-signal-safe calls may run between fork and exec.
  std::vector<std::string> arg_strings = args;
  std::vector<char*> argv;
  for (auto& a : arg_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.push_back(*e);
  for (const std::string& e : extra_env) env_strings.push_back(e);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::ErrnoToStatus(errno, "fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before the prctl
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    execvpe(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  return pid;
}

CommandResult RunCommand(const std::vector<std::string>& args, Millis timeout) {
  CommandResult res;
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    res.err = "pipe2 failed";
    return res;
  }
  absl::StatusOr<pid_t> spawned = SpawnChild(args, out_pipe[1], err_pipe[1]);
  const pid_t pid = spawned.ok() ? *spawned : -1;
  close(out_pipe[1]);
  close(err_pipe[1]);
  Deadline deadline = DeadlineIn(timeout);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&res.out, &res.err};
  int open_fds = 2;
  while (open_fds > 0) {
    int ms = PollTimeoutMs(deadline);
    if (ms == 0 && Clock::now() >= deadline) {
      res.timed_out = true;
      break;
    }
    int r = poll(fds, 2, ms);
    if (r < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, n);
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  int status = 0;
  bool reaped = false;
  if (pid > 0) {
    reaped = WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, res.timed_out ? 0ms : 5s, 2ms);
    if (!reaped) {
      res.timed_out = true;
      kill(pid, SIGKILL);
      reaped = waitpid(pid, &status, 0) == pid;
    }
  }
  if (reaped) {
    if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) res.term_signal = WTERMSIG(status);
  }
  // The SKPROXY_SANITIZE build: the proxy (or a tool) run here reported a finding. Its exit status alone may
  // not show it: LeakSanitizer exits 1, as the proxy does when it refuses to start.
  FailOnSanitizerReport(args.empty() ? "a command" : args[0], res.err + res.out);
  return res;
}

std::string FindExecutable(const std::string& name) {
  std::string path = getenv("PATH") ? getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/bin:/bin";
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(std::string(dir), "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

}  // namespace skproxy::itest
