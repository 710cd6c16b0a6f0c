// Both Pipe implementations against the same behaviour, in process: real loopback sockets, a real ring,
// the real verdict program for the kernel path. What the binary adds on top (accept, connect, config) is
// covered by tests/integration.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <tuple>
#include <string>
#include <thread>

#include "bpf/loader.h"
#include "gtest/gtest.h"
#include "proxy/sockmap_pipe.h"
#include "proxy/userspace_pipe.h"
#include "tests/kernel_support.h"

namespace skproxy {
namespace {

using Clock = std::chrono::steady_clock;

uint8_t PatternByte(uint64_t offset) { return static_cast<uint8_t>((offset * 2654435761u) >> 13); }

// (connecting end, accepted end) on IPv4 loopback.
std::pair<UniqueFd, UniqueFd> Pair() {
  UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  EXPECT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&sin), len), 0);
  EXPECT_EQ(listen(listener.get(), 1), 0);
  getsockname(listener.get(), reinterpret_cast<sockaddr*>(&sin), &len);
  UniqueFd connecting(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(connect(connecting.get(), reinterpret_cast<sockaddr*>(&sin), len), 0);
  UniqueFd accepted(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  return {std::move(connecting), std::move(accepted)};
}

// Writes `total` pattern bytes (optionally then SHUT_WR).
void WritePattern(int fd, uint64_t total, bool shut) {
  std::string chunk;
  for (uint64_t off = 0; off < total;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(256 * 1024, total - off));
    chunk.resize(n);
    for (size_t i = 0; i < n; ++i) chunk[i] = static_cast<char>(PatternByte(off + i));
    size_t done = 0;
    while (done < n) {
      ssize_t w = send(fd, chunk.data() + done, n - done, MSG_NOSIGNAL);
      if (w <= 0) return;
      done += static_cast<size_t>(w);
    }
    off += n;
  }
  if (shut) shutdown(fd, SHUT_WR);
}

struct ReadResult {
  uint64_t bytes = 0;
  uint64_t first_bad = UINT64_MAX;
  bool eof = false;
  int error = 0;
};

// Reads to EOF (or error, or deadline), checking the pattern; `bytes_per_second` > 0 paces the reader.
ReadResult ReadPattern(int fd, double bytes_per_second = 0, int deadline_s = 60) {
  ReadResult r;
  std::string buf(256 * 1024, '\0');
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::seconds(deadline_s);
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    const size_t want = bytes_per_second > 0 ? 16384 : buf.size();
    ssize_t n = recv(fd, buf.data(), want, 0);
    if (n == 0) {
      r.eof = true;
      break;
    }
    if (n < 0) {
      r.error = errno;
      break;
    }
    for (ssize_t i = 0; i < n && r.first_bad == UINT64_MAX; ++i)
      if (static_cast<uint8_t>(buf[i]) != PatternByte(r.bytes + i)) r.first_bad = r.bytes + i;
    r.bytes += static_cast<uint64_t>(n);
    if (bytes_per_second > 0) {  // the load itself: a reader of limited speed
      const auto due = start + std::chrono::duration<double>(r.bytes / bytes_per_second);
      std::this_thread::sleep_until(due);
    }
  }
  return r;
}

// What a test of one pipe needs: the real program and its notice ring for the kernel path, a ring, metrics,
// and the downstream/upstream legs, whose far ends (client, server) the test drives.
class PipeRig {
 protected:
  // Skips or fails the calling test (check IsSkipped/HasFatalFailure) when the kernel path cannot load.
  void Build(bool kernel_path) {
    if (kernel_path) {
      SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
      auto program = bpf::SockmapProgram::Load({.max_sockets = 64});
      if (!program.ok()) {
        if (geteuid() != 0) GTEST_SKIP() << "the kernel path needs root: " << program.status();
        FAIL() << program.status();
      }
      program_ = *std::move(program);
    }
    auto ring = Ring::Create(256, 64, 64 * 1024);
    ASSERT_TRUE(ring.ok()) << ring.status();
    ring_ = *std::move(ring);
    if (program_ != nullptr) {
      auto reader = NoticeReader::Create(*ring_, *program_, 0, notices_);
      ASSERT_TRUE(reader.ok()) << reader.status();
      notice_reader_ = *std::move(reader);
    }
    metrics_ = std::make_unique<Metrics>(program_.get(), nullptr);
    std::tie(client_, downstream_) = Pair();
    std::tie(upstream_, server_) = Pair();
    // The proxy's legs are non-blocking, the test's client and server block.
    fcntl(downstream_.get(), F_SETFL, O_NONBLOCK);
    fcntl(upstream_.get(), F_SETFL, O_NONBLOCK);
  }

  std::unique_ptr<bpf::SockmapProgram> program_;
  std::unique_ptr<Ring> ring_;
  NoticeTargets notices_;
  std::unique_ptr<NoticeReader> notice_reader_;
  std::unique_ptr<Metrics> metrics_;
  UniqueFd client_, server_, downstream_, upstream_;
};

class PipeTest : public ::testing::TestWithParam<PathKind>, protected PipeRig {
 protected:
  void SetUp() override { Build(GetParam() == PathKind::kSockmap); }

  void StartPipe(uint64_t gate_limit = 8 << 20) {
    auto on_finish = [this] { finished_ = true; };
    if (GetParam() == PathKind::kSockmap) {
      SockmapPipe::InsertFailure failure;
      pipe_ = SockmapPipe::Create(*ring_, *metrics_, *program_, notices_, {gate_limit, 0}, std::move(downstream_),
                                  std::move(upstream_), on_finish, &failure);
      ASSERT_NE(pipe_, nullptr) << failure.status;
    } else {
      pipe_ = std::make_unique<UserspacePipe>(*ring_, *metrics_, std::move(downstream_), std::move(upstream_),
                                              on_finish);
    }
    ASSERT_EQ(pipe_->kind(), GetParam());
    pipe_->Start();
  }

  // Runs the ring until the pipe is done or the deadline passes; returns whether it is done. A done pipe
  // is destroyed, closing both legs, as the worker does.
  bool RunUntilDone(int deadline_s = 60) {
    const auto deadline = Clock::now() + std::chrono::seconds(deadline_s);
    __kernel_timespec tick{0, 20'000'000};  // wakes the loop so the deadline is checked
    while (!pipe_->done() && Clock::now() < deadline) {
      io_uring_prep_timeout(ring_->PrepareUntracked(), &tick, 0, 0);
      if (!ring_->SubmitAndDispatch().ok()) return false;
    }
    if (!pipe_->done()) return false;
    pipe_.reset();
    return true;
  }

  uint64_t UserBytes(int d) { return metrics_->UserBytes(d).load(); }

  std::unique_ptr<Pipe> pipe_;
  bool finished_ = false;
};

TEST_P(PipeTest, BothDirectionsExactThenBothClose) {
  constexpr uint64_t kUp = 16 << 20, kDown = 8 << 20;
  StartPipe();
  ReadResult at_server, at_client;
  std::thread up_writer([&] { WritePattern(client_.get(), kUp, true); });
  std::thread down_writer([&] { WritePattern(server_.get(), kDown, true); });
  std::thread server_reader([&] { at_server = ReadPattern(server_.get()); });
  std::thread client_reader([&] { at_client = ReadPattern(client_.get()); });
  EXPECT_TRUE(RunUntilDone());
  for (auto* t : {&up_writer, &down_writer, &server_reader, &client_reader}) t->join();
  EXPECT_EQ(at_server.bytes, kUp);
  EXPECT_EQ(at_server.first_bad, UINT64_MAX);
  EXPECT_TRUE(at_server.eof);
  EXPECT_EQ(at_client.bytes, kDown);
  EXPECT_EQ(at_client.first_bad, UINT64_MAX);
  EXPECT_TRUE(at_client.eof);
  if (GetParam() == PathKind::kSockmap) {
    EXPECT_EQ(program_->CountSockets(), 0u);  // left the map once both directions ended
    const auto stats = program_->ReadStats();
    EXPECT_EQ(stats[0][SKP_STAT_REDIRECTED_BYTES] + UserBytes(0), kUp);
    EXPECT_EQ(stats[1][SKP_STAT_REDIRECTED_BYTES] + UserBytes(1), kDown);
  } else {
    EXPECT_EQ(UserBytes(0), kUp);
    EXPECT_EQ(UserBytes(1), kDown);
  }
}

TEST_P(PipeTest, HalfCloseThenReply) {
  StartPipe();
  ReadResult request, response;
  // The upstream reads the request to EOF, then replies and closes, as an HTTP/1.0 server would.
  std::thread server([&] {
    request = ReadPattern(server_.get(), 0, 10);
    WritePattern(server_.get(), 4 << 20, true);
  });
  std::thread client([&] {
    WritePattern(client_.get(), 1000, true);
    response = ReadPattern(client_.get(), 0, 20);
  });
  EXPECT_TRUE(RunUntilDone(30));
  server.join();
  client.join();
  EXPECT_EQ(request.bytes, 1000u);
  EXPECT_TRUE(request.eof);  // the FIN was passed on, after the request
  EXPECT_EQ(response.bytes, 4u << 20);
  EXPECT_EQ(response.first_bad, UINT64_MAX);
  EXPECT_TRUE(response.eof);
}

TEST_P(PipeTest, ResetPropagatesAsReset) {
  StartPipe();
  ReadResult at_server;
  std::thread client([&] {
    WritePattern(client_.get(), 4096, false);
    const linger reset{1, 0};
    setsockopt(client_.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    client_.Reset();
  });
  std::thread server([&] { at_server = ReadPattern(server_.get(), 0, 10); });
  EXPECT_TRUE(RunUntilDone(10));
  client.join();
  server.join();
  EXPECT_EQ(at_server.error, ECONNRESET);
  EXPECT_LE(at_server.bytes, 4096u);
  EXPECT_EQ(at_server.first_bad, UINT64_MAX);
}

// A reader at 20 MB/s behind a 1 MiB gate: the kernel path hands over to user space and back, and every
// byte still arrives once, in order.
TEST_P(PipeTest, SlowReaderExact) {
  constexpr uint64_t kTotal = 48 << 20;
  StartPipe(1 << 20);
  ReadResult at_server;
  std::thread writer([&] { WritePattern(client_.get(), kTotal, true); });
  std::thread reader([&] { at_server = ReadPattern(server_.get(), 20e6, 30); });
  std::thread closer([&] {
    // The other direction ends at once, so the pipe finishes when the slow one does.
    shutdown(server_.get(), SHUT_WR);
  });
  EXPECT_TRUE(RunUntilDone(40));
  for (auto* t : {&writer, &reader, &closer}) t->join();
  EXPECT_EQ(at_server.bytes, kTotal);
  EXPECT_EQ(at_server.first_bad, UINT64_MAX);
  EXPECT_TRUE(at_server.eof);
  if (GetParam() == PathKind::kSockmap) {
    const auto stats = program_->ReadStats();
    EXPECT_GT(stats[0][SKP_STAT_GATE_ENTER], 0u) << "the gate never handed over: the test proves nothing";
    EXPECT_GT(UserBytes(0), 0u);
    EXPECT_GT(stats[0][SKP_STAT_REDIRECTED_BYTES], 0u);
  }
}

// Runs `ring` until `pipe` is done or 10 s pass.
bool RunRing(Ring& ring, Pipe& pipe) {
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  __kernel_timespec tick{0, 20'000'000};  // wakes the loop so the deadline is checked
  while (!pipe.done() && Clock::now() < deadline) {
    io_uring_prep_timeout(ring.PrepareUntracked(), &tick, 0, 0);
    if (!ring.SubmitAndDispatch().ok()) return false;
  }
  return pipe.done();
}

class SockmapInsertTest : public ::testing::Test, protected PipeRig {
 protected:
  void SetUp() override { Build(true); }

  std::unique_ptr<Pipe> Create(SockmapPipe::InsertFailure* failure) {
    return SockmapPipe::Create(*ring_, *metrics_, *program_, notices_, {8 << 20, 0}, std::move(downstream_),
                               std::move(upstream_), [] {}, failure);
  }
};

// A client that is already closing cannot go into the sockhash (EOPNOTSUPP on the first leg): Create
// hands both legs back untouched, with the reason, and the user-space path carries the connection.
TEST_F(SockmapInsertTest, ClosingClientFallsBackToUserspaceIntact) {
  WritePattern(client_.get(), 5000, true);  // request, then FIN: the downstream leg is in CLOSE_WAIT
  pollfd p{downstream_.get(), POLLRDHUP, 0};
  ASSERT_EQ(poll(&p, 1, 2000), 1);

  SockmapPipe::InsertFailure failure;
  std::unique_ptr<Pipe> pipe = Create(&failure);
  ASSERT_EQ(pipe, nullptr);
  EXPECT_EQ(failure.reason, "insert_eopnotsupp") << failure.status;
  ASSERT_TRUE(failure.downstream.valid() && failure.upstream.valid());
  EXPECT_EQ(program_->CountSockets(), 0u);

  pipe = std::make_unique<UserspacePipe>(*ring_, *metrics_, std::move(failure.downstream),
                                         std::move(failure.upstream), [] {});
  pipe->Start();
  ReadResult request, response;
  std::thread upstream_side([&] {
    request = ReadPattern(server_.get(), 0, 10);
    WritePattern(server_.get(), 100000, true);
  });
  std::thread client_side([&] { response = ReadPattern(client_.get(), 0, 10); });
  EXPECT_TRUE(RunRing(*ring_, *pipe));
  pipe.reset();
  upstream_side.join();
  client_side.join();
  EXPECT_EQ(request.bytes, 5000u);
  EXPECT_EQ(request.first_bad, UINT64_MAX);
  EXPECT_TRUE(request.eof);
  EXPECT_EQ(response.bytes, 100000u);
  EXPECT_EQ(response.first_bad, UINT64_MAX);
  EXPECT_TRUE(response.eof);
}

// The upstream fails to go in after the downstream did. The verdict may already have passed client bytes
// into the downstream's psock, and taking the downstream out would drop them: the pipe keeps it in and
// copies both directions in user space. Every client byte, sent before and after, reaches the server.
TEST_F(SockmapInsertTest, UpstreamRefusedAfterDownstreamLosesNothing) {
  constexpr uint64_t kRequest = 3 << 20;
  shutdown(server_.get(), SHUT_WR);  // the upstream leg is in CLOSE_WAIT: its insertion fails
  pollfd p{upstream_.get(), POLLRDHUP, 0};
  ASSERT_EQ(poll(&p, 1, 2000), 1);
  std::thread early([&] { WritePattern(client_.get(), kRequest, true); });  // racing the insertion

  SockmapPipe::InsertFailure failure;
  std::unique_ptr<Pipe> pipe = Create(&failure);
  ASSERT_NE(pipe, nullptr) << failure.status;
  EXPECT_EQ(failure.reason, "insert_eopnotsupp") << failure.status;
  EXPECT_EQ(pipe->kind(), PathKind::kUserspace);
  EXPECT_EQ(program_->CountSockets(), 1u);  // the downstream stays in until it closes
  pipe->Start();
  ReadResult request, response;
  std::thread upstream_side([&] { request = ReadPattern(server_.get(), 0, 10); });
  std::thread client_side([&] { response = ReadPattern(client_.get(), 0, 10); });
  EXPECT_TRUE(RunRing(*ring_, *pipe));
  pipe.reset();
  for (auto* t : {&early, &upstream_side, &client_side}) t->join();
  EXPECT_EQ(request.bytes, kRequest);
  EXPECT_EQ(request.first_bad, UINT64_MAX);
  EXPECT_TRUE(request.eof);
  EXPECT_EQ(response.bytes, 0u);
  EXPECT_TRUE(response.eof);
  EXPECT_EQ(program_->CountSockets(), 0u);
  EXPECT_GT(program_->ReadStats()[0][SKP_STAT_PASSED_BYTES], 0u) << "nothing went through the verdict";
}

INSTANTIATE_TEST_SUITE_P(Paths, PipeTest, ::testing::Values(PathKind::kSockmap, PathKind::kUserspace),
                         [](const auto& info) { return std::string(PathKindName(info.param)); });

}  // namespace
}  // namespace skproxy
