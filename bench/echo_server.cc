#include "bench/echo_server.h"

#include <errno.h>
#include <sys/epoll.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"

namespace skproxy::bench {

namespace {

struct Conn {
  UniqueFd fd;
  std::string pending;  // bytes still to send back (stream: unsent tail; once: the request)
  size_t received = 0;
};

class EchoLoop {
 public:
  EchoLoop(UniqueFd listener, const EchoServerOptions& options) : listener_(std::move(listener)), options_(options) {}

  absl::Status Init() {
    epoll_.Reset(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_.valid()) return absl::ErrnoToStatus(errno, "epoll_create1");
    return Watch(listener_.get(), EPOLLIN, EPOLL_CTL_ADD);
  }

  void Run(int64_t deadline_ns) {
    std::vector<epoll_event> events(256);
    std::vector<char> buf(64 * 1024);
    while (true) {
      int64_t left_ms = (deadline_ns - NowNs()) / 1'000'000;
      if (left_ms <= 0) return;
      int n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()),
                         static_cast<int>(left_ms > 1000 ? 1000 : left_ms));
      if (n < 0 && errno != EINTR) {
        std::perror("epoll_wait");
        return;
      }
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == listener_.get()) {
          AcceptAll();
        } else {
          OnEvent(fd, events[i].events, buf);
        }
      }
    }
  }

 private:
  absl::Status Watch(int fd, uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_.get(), op, fd, &ev) != 0) return absl::ErrnoToStatus(errno, "epoll_ctl");
    return absl::OkStatus();
  }

  void AcceptAll() {
    // Bounded: at most one backlog's worth per wake-up, so a flood cannot starve open connections.
    for (int i = 0; i < 4096; ++i) {
      int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
          std::perror("accept4");
        }
        return;
      }
      (void)SetNoDelay(fd);
      Conn& c = conns_[fd];
      c.fd.Reset(fd);
      if (!Watch(fd, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_ADD).ok()) conns_.erase(fd);
    }
  }

  void Close(int fd) { conns_.erase(fd); }  // close() also removes it from the epoll set

  // Sends what is pending; returns false if the connection was closed.
  bool Flush(Conn& c) {
    while (!c.pending.empty()) {
      ssize_t n = send(c.fd.get(), c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        Close(c.fd.get());
        return false;
      }
      c.pending.erase(0, static_cast<size_t>(n));
    }
    return true;
  }

  void OnEvent(int fd, uint32_t events, std::vector<char>& buf) {
    auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    if (!c.pending.empty()) {
      // Waiting for room to send: reading more would only grow the queue.
      if (events & (EPOLLERR | EPOLLHUP)) return Close(fd);
      if (!Flush(c)) return;
      if (c.pending.empty()) {
        if (options_.mode == EchoMode::kOnce) return Close(fd);
        (void)Watch(fd, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
      }
      return;
    }
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      return Close(fd);
    }
    if (n == 0) return Close(fd);
    c.received += static_cast<size_t>(n);
    c.pending.append(buf.data(), static_cast<size_t>(n));
    if (options_.mode == EchoMode::kOnce && c.received < options_.once_size) {
      return;  // keep collecting the request; nothing is sent until it is whole
    }
    if (!Flush(c)) return;
    if (c.pending.empty()) {
      if (options_.mode == EchoMode::kOnce) return Close(fd);
      return;
    }
    (void)Watch(fd, EPOLLOUT | EPOLLRDHUP, EPOLL_CTL_MOD);
  }

  UniqueFd listener_;
  UniqueFd epoll_;
  EchoServerOptions options_;
  std::unordered_map<int, Conn> conns_;
};

}  // namespace

absl::Status RunEchoServer(const SocketAddress& ep, const EchoServerOptions& options) {
  if (options.threads < 1 || options.threads > 64) return absl::InvalidArgumentError("threads must be 1..64");
  if (auto s = RaiseNofileLimit(20000); !s.ok()) std::fprintf(stderr, "warning: %s\n", s.ToString().c_str());
  std::vector<std::unique_ptr<EchoLoop>> loops;
  for (int i = 0; i < options.threads; ++i) {
    auto listener = Listen(ep, 4096, /*reuseport=*/options.threads > 1, /*nonblocking=*/true);
    if (!listener.ok()) return listener.status();
    loops.push_back(std::make_unique<EchoLoop>(std::move(*listener), options));
    if (auto s = loops.back()->Init(); !s.ok()) return s;
  }
  std::fprintf(stderr, "listening threads=%d mode=%s\n", options.threads,
               options.mode == EchoMode::kOnce ? "once" : "stream");
  int64_t deadline = NowNs() + static_cast<int64_t>(options.max_seconds * 1e9);
  std::vector<std::thread> threads;
  for (auto& loop : loops) threads.emplace_back([&loop, deadline] { loop->Run(deadline); });
  for (auto& t : threads) t.join();
  return absl::OkStatus();
}

}  // namespace skproxy::bench
