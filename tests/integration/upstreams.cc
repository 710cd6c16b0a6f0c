#include "tests/integration/upstreams.h"

#include <endian.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace skproxy::itest {

std::string ConnStats::Describe() const {
  return absl::StrCat("conn #", index, ": in ", bytes_in, " out ", bytes_out, eof ? " eof" : " no-eof",
                      error ? absl::StrCat(" error=", strerror(error)) : "", timed_out ? " TIMED OUT" : "",
                      " pattern: ", pattern.empty() ? "-" : pattern);
}

absl::StatusOr<std::unique_ptr<TcpServer>> TcpServer::Start(Options options, Handler handler) {
  std::unique_ptr<TcpServer> s(new TcpServer());
  s->options_ = options;
  s->handler_ = std::move(handler);
  s->hold_ = options.hold_accepts;
  SocketAddress address = options.address.family() != 0 ? options.address : LoopbackAddress(options.family, 0);
  auto fd = Listen(address, options.backlog, options.socket);
  if (!fd.ok()) return fd.status();
  s->listener_ = std::move(*fd);
  s->endpoint_ = address;
  s->endpoint_.set_port(LocalPort(s->listener_.get()));
  s->accept_thread_ = std::thread([srv = s.get()] { srv->AcceptLoop(); });
  return s;
}

TcpServer::~TcpServer() { Stop(); }

void TcpServer::ReleaseAccepts() {
  std::lock_guard<std::mutex> lock(mu_);
  hold_ = false;
  cv_.notify_all();
}

size_t TcpServer::accepted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return accepted_;
}

size_t TcpServer::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_.size();
}

bool TcpServer::WaitForFinished(size_t n, Millis timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return finished_.size() >= n; });
}

std::vector<ConnStats> TcpServer::Finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ConnStats> out = finished_;
  std::sort(out.begin(), out.end(), [](const ConnStats& a, const ConnStats& b) { return a.index < b.index; });
  return out;
}

void TcpServer::AcceptLoop() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !hold_ || stopping_; });
  }
  while (!stopping_) {
    int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      break;  // Stop() shut the listener down
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      close(fd);
      break;
    }
    uint64_t index = accepted_++;
    live_[fd] = index;
    threads_.emplace_back([this, fd, index] {
      ConnStats stats;
      stats.index = index;
      stats.accepted = Clock::now();
      handler_(fd, stats, *this);
      stats.ended = Clock::now();
      std::lock_guard<std::mutex> lock(mu_);
      live_.erase(fd);
      close(fd);
      finished_.push_back(std::move(stats));
      cv_.notify_all();
    });
  }
}

void TcpServer::Stop() {
  if (stopping_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  // On Linux shutdown() of a listening socket wakes a blocked accept() with EINVAL.
  shutdown(listener_.get(), SHUT_RDWR);
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [fd, index] : live_) shutdown(fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  listener_.Reset();
}

namespace {
void RecordRead(ConnStats& stats, const IoResult& r, const PatternChecker* checker) {
  stats.bytes_in += r.bytes;
  stats.eof = r.eof;
  if (r.error) stats.error = r.error;
  if (r.timed_out) stats.timed_out = true;
  if (checker) {
    stats.first_bad = checker->first_bad();
    stats.pattern = checker->Describe();
    stats.received_stream_id = checker->id().value_or(0);
  }
}
void RecordWrite(ConnStats& stats, const IoResult& r) {
  stats.bytes_out += r.bytes;
  if (r.error) stats.error = r.error;
  if (r.timed_out) stats.timed_out = true;
}
}  // namespace

TcpServer::Handler EchoHandler(EchoOptions options) {
  return [options](int fd, ConnStats& stats, TcpServer& server) {
    if (options.reset_on_close) {
      linger l{1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    Deadline deadline = server.handler_deadline();
    std::vector<uint8_t> buf(256 * KiB);
    PatternChecker checker;
    for (;;) {
      ssize_t got = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (got > 0) {
        if (options.check_pattern) checker.Feed(buf.data(), got);
        stats.bytes_in += got;
        server.bytes_in += got;
        IoResult w = SendAll(fd, buf.data(), got, deadline);
        RecordWrite(stats, w);
        server.bytes_out += w.bytes;
        if (w.bytes != static_cast<size_t>(got)) break;
        continue;
      }
      if (got == 0) {
        stats.eof = true;
        shutdown(fd, SHUT_WR);
        break;
      }
      if (errno != EAGAIN && errno != EINTR) {
        stats.error = errno;
        break;
      }
      if (PollFd(fd, POLLIN, deadline) == 0) {
        stats.timed_out = true;
        break;
      }
    }
    if (options.check_pattern) {
      stats.first_bad = checker.first_bad();
      stats.pattern = checker.Describe();
      stats.received_stream_id = checker.id().value_or(0);
    }
  };
}

TcpServer::Handler SinkHandler(SinkOptions options) {
  return [options](int fd, ConnStats& stats, TcpServer& server) {
    PatternChecker checker;
    Sha256 sha;
    IoResult r = ReadStream(fd, &checker, server.handler_deadline(), options.pacing, &server.bytes_in,
                            options.sha ? &sha : nullptr, UINT64_MAX, &server.stopping());
    RecordRead(stats, r, &checker);
    if (options.sha) stats.sha_in = sha.FinalHex();
  };
}

TcpServer::Handler SourceHandler(SourceOptions options) {
  return [options](int fd, ConnStats& stats, TcpServer& server) {
    Deadline deadline = server.handler_deadline();
    stats.sent_stream_id = NextStreamId();
    IoResult w = SendPattern(fd, stats.sent_stream_id, 0, options.bytes, deadline, options.rate, &server.bytes_out,
                             &server.stopping());
    RecordWrite(stats, w);
    if (w.bytes != options.bytes) return;
    shutdown(fd, SHUT_WR);
    // Wait for the peer's EOF so that close() does not reset bytes still on their way.
    IoResult r = ReadStream(fd, nullptr, deadline, {}, &server.bytes_in, nullptr, UINT64_MAX, &server.stopping());
    RecordRead(stats, r, nullptr);
  };
}

TcpServer::Handler KillHandler(KillOptions options) {
  return [options](int fd, ConnStats& stats, TcpServer& server) {
    Deadline deadline = server.handler_deadline();
    if (options.send_before > 0) {
      stats.sent_stream_id = NextStreamId();
      RecordWrite(stats, SendPattern(fd, stats.sent_stream_id, 0, options.send_before, deadline, 0,
                                     &server.bytes_out));
    }
    if (options.read_before > 0) {
      PatternChecker checker;
      IoResult r = ReadStream(fd, &checker, deadline, {}, &server.bytes_in, nullptr, options.read_before,
                              &server.stopping());
      RecordRead(stats, r, &checker);
    }
    if (options.reset) {
      linger l{1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    // Returning closes the socket (ConnStats::ended is the moment of the kill).
  };
}

TcpServer::Handler ReplyAfterEofHandler(ReplyAfterEofOptions options) {
  return [options](int fd, ConnStats& stats, TcpServer& server) {
    Deadline deadline = server.handler_deadline();
    PatternChecker checker;
    Sha256 sha;
    ReadPacing pacing;
    pacing.rate = options.read_rate;
    IoResult r = ReadStream(fd, &checker, deadline, pacing, &server.bytes_in, &sha, UINT64_MAX, &server.stopping());
    RecordRead(stats, r, &checker);
    if (!r.eof) return;
    std::string head = sha.FinalRaw();
    stats.sha_in = HexEncode(head);
    uint64_t len = htole64(r.bytes);
    head.append(reinterpret_cast<const char*>(&len), 8);
    IoResult w = SendAll(fd, head.data(), head.size(), deadline);
    RecordWrite(stats, w);
    if (w.bytes != head.size()) return;
    stats.sent_stream_id = NextStreamId();
    w = SendPattern(fd, stats.sent_stream_id, 0, options.reply_bytes, deadline, 0, &server.bytes_out);
    RecordWrite(stats, w);
  };
}

TcpServer::Handler HalfCloseFirstHandler(uint64_t bytes) {
  return [bytes](int fd, ConnStats& stats, TcpServer& server) {
    Deadline deadline = server.handler_deadline();
    stats.sent_stream_id = NextStreamId();
    IoResult w = SendPattern(fd, stats.sent_stream_id, 0, bytes, deadline, 0, &server.bytes_out);
    RecordWrite(stats, w);
    if (w.bytes != bytes) return;
    shutdown(fd, SHUT_WR);
    PatternChecker checker;
    IoResult r = ReadStream(fd, &checker, deadline, {}, &server.bytes_in, nullptr, UINT64_MAX, &server.stopping());
    RecordRead(stats, r, &checker);
  };
}

std::unique_ptr<TcpServer> StartServer(TcpServer::Handler handler, int family, SocketOptions socket,
                                       bool hold_accepts, int backlog) {
  TcpServer::Options o;
  o.family = family;
  o.socket = socket;
  o.hold_accepts = hold_accepts;
  o.backlog = backlog;
  auto s = TcpServer::Start(o, std::move(handler));
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return nullptr;
  return std::move(*s);
}

}  // namespace skproxy::itest
