// Running a command with a deadline, and finding an executable.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/integration/deadline.h"

namespace skproxy::itest {

struct CommandResult {
  int exit_code = -1;   // -1 if killed by a signal
  int term_signal = 0;
  bool timed_out = false;
  std::string out, err;
  std::string Describe() const;
};
CommandResult RunCommand(const std::vector<std::string>& argv, Millis timeout);
// Forks and execs `argv` (argv[0] looked up in $PATH unless it has a slash) with this environment plus
// `extra_env` ("NAME=value"), stdin from /dev/null, stdout to `out_fd` and stderr to `err_fd`. The child is
// killed when the calling thread ends (PR_SET_PDEATHSIG), so a crashed test leaves no process behind: spawn
// from the test's main thread. Returns the child's pid; the caller reaps it.
absl::StatusOr<pid_t> SpawnChild(const std::vector<std::string>& argv, int out_fd, int err_fd,
                                 const std::vector<std::string>& extra_env = {});
// Finds `name` in $PATH plus /usr/sbin and /sbin; empty if absent.
std::string FindExecutable(const std::string& name);

}  // namespace skproxy::itest
