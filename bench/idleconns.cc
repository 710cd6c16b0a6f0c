// Opens N connections through ADDR, proves each one reaches the backend (one byte echoed end to end,
// unless --no-ping), then holds them idle so a proxy's memory per connection can be read.
//   skproxy_bench_idleconns ADDR [--count 10000] [--parallel 256] [--connect-seconds 60]
//                                [--hold-seconds 600] [--no-ping]
// Prints "established N seconds=S" once all are up, then holds until stdin reaches EOF (or a line
// arrives), SIGTERM/SIGINT, or --hold-seconds; prints "released N peer_closed=K" and exits 0.
// Exits 1 (after "failed ...") if not all N are up within --connect-seconds.
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>

#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/net_util.h"

namespace skproxy::bench {
namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

int Usage() {
  std::fprintf(stderr,
               "usage: skproxy_bench_idleconns ADDR [--count N] [--parallel P] [--connect-seconds S] "
               "[--hold-seconds S] [--no-ping]\n");
  return 2;
}

enum class State { kNew, kConnecting, kPinging, kUp };

struct Conn {
  UniqueFd fd;
  State state = State::kNew;
};

class Opener {
 public:
  Opener(const SocketAddress& ep, size_t count, size_t parallel, bool ping)
      : ep_(ep), conns_(count), parallel_(parallel), ping_(ping) {}

  // Returns once all are up, or an error saying how many were.
  absl::Status OpenAll(int64_t deadline_ns) {
    epoll_.Reset(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_.valid()) return absl::ErrnoToStatus(errno, "epoll_create1");
    std::vector<epoll_event> events(512);
    while (up_ < conns_.size()) {
      if (g_stop) return absl::CancelledError(Progress("stopped by signal"));
      if (NowNs() > deadline_ns) return absl::DeadlineExceededError(Progress("deadline reached"));
      // A bounded number in flight: a burst of 10,000 SYNs would overflow the proxy's accept queue,
      // and the dropped SYNs would measure the 1 s SYN retransmit timer instead of the proxy.
      while (in_flight_ < parallel_ && next_ < conns_.size()) {
        if (auto s = Start(next_++); !s.ok()) return s;
      }
      int n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), 100);
      if (n < 0 && errno != EINTR) return absl::ErrnoToStatus(errno, "epoll_wait");
      for (int i = 0; i < n; ++i) {
        if (auto s = Advance(events[i].data.u32, events[i].events); !s.ok()) return s;
      }
    }
    return absl::OkStatus();
  }

  // Connections whose peer has already closed or reset (the proxy dropped them while held).
  size_t CountPeerClosed() const {
    std::vector<pollfd> pfds;
    pfds.reserve(conns_.size());
    for (const Conn& c : conns_) pfds.push_back(pollfd{c.fd.get(), POLLRDHUP, 0});
    if (poll(pfds.data(), pfds.size(), 0) < 0) return 0;
    size_t closed = 0;
    for (const pollfd& p : pfds) closed += (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) ? 1 : 0;
    return closed;
  }

  size_t up() const { return up_; }

 private:
  std::string Progress(absl::string_view why) const {
    return absl::StrCat(why, ": ", up_, " of ", conns_.size(), " up, ", in_flight_, " in flight");
  }

  absl::Status Watch(uint32_t idx, uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u32 = idx;
    if (epoll_ctl(epoll_.get(), op, conns_[idx].fd.get(), &ev) != 0) return absl::ErrnoToStatus(errno, "epoll_ctl");
    return absl::OkStatus();
  }

  absl::Status Start(size_t idx) {
    Conn& c = conns_[idx];
    c.fd.Reset(socket(ep_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!c.fd.valid()) return absl::ErrnoToStatus(errno, Progress("socket"));
    (void)SetNoDelay(c.fd.get());
    c.state = State::kConnecting;
    ++in_flight_;
    if (connect(c.fd.get(), ep_.sockaddr_ptr(), ep_.length) != 0 && errno != EINPROGRESS) {
      return absl::ErrnoToStatus(errno, Progress("connect"));
    }
    return Watch(static_cast<uint32_t>(idx), EPOLLOUT, EPOLL_CTL_ADD);
  }

  absl::Status Advance(uint32_t idx, uint32_t events) {
    Conn& c = conns_[idx];
    if (c.state == State::kConnecting) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return absl::ErrnoToStatus(err, Progress("connect"));
      if (!(events & EPOLLOUT)) return absl::OkStatus();
      if (!ping_) return MarkUp(idx);
      char b = 'i';
      if (send(c.fd.get(), &b, 1, MSG_NOSIGNAL) != 1) return absl::ErrnoToStatus(errno, Progress("send(ping)"));
      c.state = State::kPinging;
      return Watch(idx, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
    }
    if (c.state == State::kPinging) {
      char b = 0;
      ssize_t n = recv(c.fd.get(), &b, 1, 0);
      if (n == 1 && b == 'i') return MarkUp(idx);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return absl::OkStatus();
      if (n == 0) return absl::UnavailableError(Progress("closed by the peer before the echo"));
      if (n == 1) return absl::DataLossError(Progress("wrong echo byte"));
      return absl::ErrnoToStatus(errno, Progress("recv(ping)"));
    }
    return absl::OkStatus();
  }

  absl::Status MarkUp(uint32_t idx) {
    Conn& c = conns_[idx];
    c.state = State::kUp;
    --in_flight_;
    ++up_;
    // Held connections are not watched: nothing is expected on them until release.
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr) != 0) return absl::ErrnoToStatus(errno, "epoll_ctl(DEL)");
    return absl::OkStatus();
  }

  SocketAddress ep_;
  std::vector<Conn> conns_;
  size_t parallel_;
  bool ping_;
  UniqueFd epoll_;
  size_t next_ = 0;
  size_t in_flight_ = 0;
  size_t up_ = 0;
};

// Blocks until stdin reaches EOF or delivers a line, a stop signal arrives, or the deadline passes.
void Hold(int64_t deadline_ns) {
  bool stdin_open = true;
  while (!g_stop) {
    int64_t left_ms = (deadline_ns - NowNs()) / 1'000'000;
    if (left_ms <= 0) return;
    pollfd pfd{0, POLLIN, 0};
    int n = poll(&pfd, stdin_open ? 1 : 0, static_cast<int>(left_ms > 500 ? 500 : left_ms));
    if (n > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) {
      if (pfd.revents & POLLNVAL) {
        stdin_open = false;  // no stdin at all: only a signal or the deadline releases
        continue;
      }
      char buf[256];
      ssize_t r = read(0, buf, sizeof(buf));
      if (r <= 0 || std::string_view(buf, static_cast<size_t>(r)).find('\n') != std::string_view::npos) return;
    }
  }
}

int Main(int argc, char** argv) {
  std::optional<ToolArgs> args =
      ParseToolArgs(argc, argv, 1, {"--count", "--parallel", "--connect-seconds", "--hold-seconds"}, {"--no-ping"});
  if (!args) return Usage();
  const Flags& flags = args->flags;
  const int64_t count = flags.Int("--count", 10000);
  const int64_t parallel = flags.Int("--parallel", 256);
  const double connect_seconds = flags.Double("--connect-seconds", 60);
  const double hold_seconds = flags.Double("--hold-seconds", 600);
  if (count < 1 || count > 1'000'000 || parallel < 1 || connect_seconds <= 0 || hold_seconds < 0) return Usage();

  struct sigaction sa {};
  sa.sa_handler = OnSignal;  // no SA_RESTART: the signal must interrupt poll/epoll_wait
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  if (auto s = RaiseNofileLimit(static_cast<uint64_t>(count) + 256); !s.ok()) {
    std::fprintf(stdout, "failed %s\n", s.ToString().c_str());
    return 1;
  }

  Opener opener(args->ep, static_cast<size_t>(count), static_cast<size_t>(parallel), !flags.Has("--no-ping"));
  const int64_t start = NowNs();
  if (auto s = opener.OpenAll(start + static_cast<int64_t>(connect_seconds * 1e9)); !s.ok()) {
    std::printf("failed %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("established %lld seconds=%.2f\n", static_cast<long long>(count),
              static_cast<double>(NowNs() - start) / 1e9);
  std::fflush(stdout);
  Hold(NowNs() + static_cast<int64_t>(hold_seconds * 1e9));
  std::printf("released %zu peer_closed=%zu\n", opener.up(), opener.CountPeerClosed());
  std::fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace skproxy::bench

int main(int argc, char** argv) { return skproxy::bench::Main(argc, argv); }
