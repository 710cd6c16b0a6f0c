// The access log: one JSON line per connection when it ends, to a file or stdout. Workers hand lines to a
// bounded queue (a short mutex, never a write): a writer thread does the I/O, so a slow disk never stalls a
// worker. When the queue is full the line is dropped and counted instead.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "proxy/unique_fd.h"

namespace skproxy {

class AccessLog {
 public:
  static constexpr size_t kMaxQueuedLines = 65536;

  // path: a file (appended to, created 0640), or "-" for stdout.
  static absl::StatusOr<std::unique_ptr<AccessLog>> Open(const std::string& path);
  // Writes every queued line, then stops the writer.
  ~AccessLog();

  // From any thread; `line` without its newline.
  void Write(std::string line);
  // SIGUSR1 (logrotate): the next write goes to a freshly opened `path`.
  void Reopen();
  uint64_t dropped() const;

 private:
  explicit AccessLog(std::string path) : path_(std::move(path)) {}
  absl::Status OpenFile();
  void Run();

  const std::string path_;
  UniqueFd fd_;  // only the writer thread uses it after start
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::string> queue_;  // guarded by mu_
  bool reopen_ = false;            // guarded by mu_
  bool stopping_ = false;          // guarded by mu_
  uint64_t dropped_ = 0;           // guarded by mu_
  std::thread writer_;
};

}  // namespace skproxy
