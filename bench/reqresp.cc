// Request/response rate over many connections: each of C connections sends a small request, waits for
// the whole echo, checks it and sends the next, for a fixed time. Where pingpong times one connection's
// round trip, this counts how many such round trips a proxy completes per second with C of them in flight.
//   skproxy_bench_reqresp ADDR [--connections 50] [--size 32] [--seconds 5] [--threads 2]
//                              [--max-requests 100000000] [--bulk-first 0]
// ADDR is an echo server (skproxy_bench_pingpong server), directly or through a proxy. Every connection
// first does one untimed round trip, so the timed window starts with all C connections open end to end.
// --bulk-first N: before it, each connection echoes N bytes of bulk (256 KiB writes, read back as they
// come), untimed: a connection that carried bulk and then turns into small messages, the traffic a
// proxy's adaptive data path has to move back from the kernel path.
// Prints one line: "reqs_per_s=.. requests=.. connections=.. seconds=.. errors=.." (+ first_error="..").
// A connection that fails (reset, early close, wrong echo, 5 s without an answer) is dropped and counted
// in errors; the others go on. Exit code 1 when no request completed.
#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/net_util.h"

namespace skproxy::bench {
namespace {

constexpr int64_t kStallNs = 5'000'000'000;  // a connection without an answer for this long has failed

int Usage() {
  std::fprintf(stderr,
               "usage: skproxy_bench_reqresp ADDR [--connections N] [--size BYTES] [--seconds S] [--threads T] "
               "[--max-requests N] [--bulk-first BYTES]\n");
  return 2;
}

struct Conn {
  UniqueFd fd;
  int id = 0;
  int64_t seq = 0;
  size_t got = 0;  // bytes of the current echo read so far
  int64_t sent_ns = 0;
  bool dead = false;
  std::vector<char> out, in;

  // A distinct pattern per connection and message, so a stale or crossed echo is caught.
  void Fill() { std::memset(out.data(), 'a' + static_cast<int>((id + seq) % 26), out.size()); }
};

// Sends `bytes` in 256 KiB writes while reading the echo back, both non-blocking, until all of it is back.
absl::Status BulkEcho(int fd, int64_t bytes) {
  std::vector<char> out(256 * 1024, 'b'), in(256 * 1024);
  int64_t sent = 0, received = 0;
  const int64_t deadline = NowNs() + 60'000'000'000;
  while (received < bytes) {
    if (NowNs() > deadline) return absl::DeadlineExceededError("bulk echo: no progress within 60 s");
    bool progress = false;
    if (sent < bytes) {
      const ssize_t n = send(fd, out.data(), static_cast<size_t>(std::min<int64_t>(out.size(), bytes - sent)),
                             MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        sent += n;
        progress = true;
      } else if (errno != EAGAIN && errno != EINTR) {
        return absl::ErrnoToStatus(errno, "bulk echo: send");
      }
    }
    const ssize_t n = recv(fd, in.data(), in.size(), MSG_DONTWAIT);
    if (n > 0) {
      received += n;
      progress = true;
    } else if (n == 0) {
      return absl::DataLossError("bulk echo: peer closed");
    } else if (errno != EAGAIN && errno != EINTR) {
      return absl::ErrnoToStatus(errno, "bulk echo: recv");
    }
    if (!progress) {
      pollfd p{fd, static_cast<short>(POLLIN | (sent < bytes ? POLLOUT : 0)), 0};
      poll(&p, 1, 100);
    }
  }
  return received == bytes ? absl::OkStatus() : absl::DataLossError("bulk echo: more bytes than sent");
}

struct Shared {
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> errors{0};
  std::mutex mu;
  std::string first_error;

  void Fail(Conn& c, const std::string& what) {
    c.dead = true;
    c.fd.Reset();  // closing it also takes it out of the epoll set
    errors.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.empty()) first_error = "connection " + std::to_string(c.id) + ": " + what;
  }
};

// Drives its share of the connections until `deadline`: reads whatever echo bytes are ready and answers
// each complete echo with the next request. Only echoes completed before the deadline count.
void Drive(std::vector<Conn*> conns, int64_t deadline, int64_t max_requests, Shared& shared) {
  UniqueFd ep(epoll_create1(EPOLL_CLOEXEC));
  if (!ep.valid()) {
    for (Conn* c : conns) shared.Fail(*c, "epoll_create1 failed");
    return;
  }
  for (Conn* c : conns) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, c->fd.get(), &ev) != 0) shared.Fail(*c, "epoll_ctl failed");
  }
  int64_t done = 0;
  std::vector<epoll_event> events(conns.size());
  for (Conn* c : conns) {
    if (c->dead) continue;
    c->Fill();
    c->sent_ns = NowNs();
    if (auto s = WriteAll(c->fd.get(), c->out.data(), c->out.size()); !s.ok()) shared.Fail(*c, s.ToString());
  }
  while (done < max_requests) {
    const int64_t now = NowNs();
    if (now >= deadline) break;
    const int wait_ms = static_cast<int>(std::min<int64_t>(100, (deadline - now) / 1'000'000 + 1));
    const int n = epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()), wait_ms);
    if (n < 0 && errno != EINTR) break;
    const int64_t t = NowNs();
    for (int i = 0; i < n; ++i) {
      Conn& c = *static_cast<Conn*>(events[static_cast<size_t>(i)].data.ptr);
      if (c.dead) continue;
      const ssize_t r = recv(c.fd.get(), c.in.data() + c.got, c.in.size() - c.got, MSG_DONTWAIT);
      if (r == 0) {
        shared.Fail(c, "peer closed");
        continue;
      }
      if (r < 0) {
        if (errno != EAGAIN && errno != EINTR) shared.Fail(c, std::string("recv: ") + std::strerror(errno));
        continue;
      }
      c.got += static_cast<size_t>(r);
      if (c.got < c.in.size()) continue;
      if (c.in != c.out) {
        shared.Fail(c, "echo differs from the request");
        continue;
      }
      c.got = 0;
      if (t >= deadline) continue;  // completed after the window: not counted, nothing more sent
      ++done;
      ++c.seq;
      c.Fill();
      c.sent_ns = t;
      if (auto s = WriteAll(c.fd.get(), c.out.data(), c.out.size()); !s.ok()) shared.Fail(c, s.ToString());
    }
    for (Conn* c : conns) {
      if (!c->dead && t - c->sent_ns > kStallNs) shared.Fail(*c, "no echo within 5 s");
    }
  }
  shared.requests.fetch_add(done, std::memory_order_relaxed);
}

int Main(int argc, char** argv) {
  std::optional<ToolArgs> args =
      ParseToolArgs(argc, argv, 1, {"--connections", "--size", "--seconds", "--threads", "--max-requests", "--bulk-first"});
  if (!args) return Usage();
  const SocketAddress& ep = args->ep;
  const Flags& flags = args->flags;
  const int64_t connections = flags.Int("--connections", 50);
  const int64_t size = flags.Int("--size", 32);
  const double seconds = flags.Double("--seconds", 5);
  const int64_t threads = flags.Int("--threads", 2);
  const int64_t max_requests = flags.Int("--max-requests", 100'000'000);
  const int64_t bulk_first = flags.Int("--bulk-first", 0);
  if (connections < 1 || connections > 10000 || size < 1 || size > 65536 || seconds <= 0 || seconds > 600 ||
      threads < 1 || threads > 64 || max_requests < 1 || bulk_first < 0 || bulk_first > (int64_t{1} << 34)) {
    return Usage();
  }
  if (auto s = RaiseNofileLimit(static_cast<uint64_t>(connections) + 256); !s.ok()) {
    std::fprintf(stderr, "warning: %s\n", s.ToString().c_str());
  }

  std::vector<Conn> conns(static_cast<size_t>(connections));
  for (size_t i = 0; i < conns.size(); ++i) {
    Conn& c = conns[i];
    c.id = static_cast<int>(i);
    c.out.resize(static_cast<size_t>(size));
    c.in.resize(static_cast<size_t>(size));
    auto fd = ConnectBlocking(ep, std::chrono::milliseconds(5000), std::chrono::milliseconds(5000));
    absl::Status s = fd.status();
    if (s.ok()) {
      c.fd = *std::move(fd);
      if (bulk_first > 0) s = BulkEcho(c.fd.get(), bulk_first);
    }
    if (s.ok()) {
      c.Fill();  // the untimed round trip, with blocking calls bounded by the 5 s socket timeouts
      s = WriteAll(c.fd.get(), c.out.data(), c.out.size());
      if (s.ok()) s = ReadExact(c.fd.get(), c.in.data(), c.in.size());
      if (s.ok() && c.in != c.out) s = absl::DataLossError("echo differs from the request");
    }
    if (!s.ok()) {
      std::fprintf(stderr, "connection %zu of %lld: %s\n", i, static_cast<long long>(connections),
                   s.ToString().c_str());
      return 1;
    }
    ++c.seq;
  }

  Shared shared;
  const int64_t start = NowNs();
  const int64_t deadline = start + static_cast<int64_t>(seconds * 1e9);
  const int64_t per_thread = std::max<int64_t>(1, max_requests / threads);
  std::vector<std::thread> workers;
  for (int64_t t = 0; t < threads; ++t) {
    std::vector<Conn*> mine;
    for (size_t i = static_cast<size_t>(t); i < conns.size(); i += static_cast<size_t>(threads)) mine.push_back(&conns[i]);
    if (mine.empty()) continue;
    workers.emplace_back(Drive, std::move(mine), deadline, per_thread, std::ref(shared));
  }
  for (auto& w : workers) w.join();
  // The window ends at the deadline, or earlier when every thread reached its share of --max-requests.
  const double elapsed = static_cast<double>(std::min(NowNs(), deadline) - start) / 1e9;
  const int64_t requests = shared.requests.load();
  std::printf("reqs_per_s=%.0f requests=%lld connections=%lld seconds=%.2f errors=%lld",
              static_cast<double>(requests) / elapsed, static_cast<long long>(requests),
              static_cast<long long>(connections), elapsed, static_cast<long long>(shared.errors.load()));
  if (!shared.first_error.empty()) std::printf(" first_error=\"%s\"", shared.first_error.c_str());
  std::printf("\n");
  return requests > 0 ? 0 : 1;
}

}  // namespace
}  // namespace skproxy::bench

int main(int argc, char** argv) { return skproxy::bench::Main(argc, argv); }
