// The cluster thread's event loop is poll(2) over what its tasks wait on: health-check sockets and
// c-ares's sockets. Each iteration every task adds its descriptors and its next deadline, the thread
// polls, and every task handles what is ready. A handful of descriptors per endpoint, on a thread no
// connection runs on: poll is enough, and c-ares is built for exactly this loop.
#pragma once

#include <poll.h>

#include <vector>

#include "absl/time/time.h"

namespace skproxy {

class PollSet {
 public:
  size_t Add(int fd, short events) {
    fds_.push_back({fd, events, 0});
    return fds_.size() - 1;
  }
  short revents(size_t i) const { return fds_[i].revents; }
  std::vector<pollfd>& fds() { return fds_; }
  void Clear() { fds_.clear(); }

 private:
  std::vector<pollfd> fds_;
};

class LoopTask {
 public:
  virtual ~LoopTask() = default;
  // Adds the descriptors it waits on and lowers `wake` to its next deadline.
  virtual void Prepare(absl::Time now, PollSet& set, absl::Time& wake) = 0;
  // After poll returned: handles its ready descriptors and its expired deadlines.
  virtual void Dispatch(absl::Time now, const PollSet& set) = 0;
};

}  // namespace skproxy
