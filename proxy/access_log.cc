#include "proxy/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace skproxy {

absl::StatusOr<std::unique_ptr<AccessLog>> AccessLog::Open(const std::string& path) {
  std::unique_ptr<AccessLog> log(new AccessLog(path));
  if (absl::Status s = log->OpenFile(); !s.ok()) return s;
  log->writer_ = std::thread([raw = log.get()] { raw->Run(); });
  return log;
}

absl::Status AccessLog::OpenFile() {
  const int fd = path_ == "-" ? dup(STDOUT_FILENO) : open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("access_log: opening ", path_));
  fd_.Reset(fd);  // the old file stays in use until the new one is open
  return absl::OkStatus();
}

AccessLog::~AccessLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (writer_.joinable()) writer_.join();
}

void AccessLog::Write(std::string line) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() >= kMaxQueuedLines) {
      ++dropped_;
      return;
    }
    line.push_back('\n');
    queue_.push_back(std::move(line));
  }
  wake_.notify_one();
}

void AccessLog::Reopen() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    reopen_ = true;
  }
  wake_.notify_one();
}

uint64_t AccessLog::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

void AccessLog::Run() {
  std::deque<std::string> batch;
  for (;;) {
    bool reopen = false, stopping = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || reopen_ || !queue_.empty(); });
      batch.swap(queue_);
      reopen = std::exchange(reopen_, false);
      stopping = stopping_;
    }
    if (reopen) {
      if (absl::Status s = OpenFile(); !s.ok())
        std::fprintf(stderr, "skproxy: access log not reopened, still writing the old file: %s\n", s.ToString().c_str());
    }
    std::string out;
    for (std::string& line : batch) out += line;
    batch.clear();
    for (size_t done = 0; done < out.size();) {
      const ssize_t n = write(fd_.get(), out.data() + done, out.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        std::fprintf(stderr, "skproxy: writing the access log: %s\n", std::strerror(errno));
        break;
      }
      done += static_cast<size_t>(n);
    }
    if (stopping) {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) return;
    }
  }
}

}  // namespace skproxy
