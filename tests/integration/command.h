// Running a command with a deadline, and finding an executable.
#pragma once

#include <string>
#include <vector>

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
// Finds `name` in $PATH plus /usr/sbin and /sbin; empty if absent.
std::string FindExecutable(const std::string& name);

}  // namespace skproxy::itest
