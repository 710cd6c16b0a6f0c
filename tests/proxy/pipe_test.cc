// Both Pipe implementations against the same behaviour, in process: real loopback sockets, a real ring,
// the real verdict program for the kernel path. What the binary adds on top (accept, connect, config) is
// covered by tests/integration.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <vector>
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

// Worker 0's notice ring, and the default receive buffer (1 MiB) for the copy buffer's size.
SockmapPipe::Options PipeOptions(uint64_t gate_limit) { return {gate_limit, 0, 1 << 20}; }

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
  void Build(bool kernel_path, unsigned buffers = 64) {
    if (kernel_path) {
      SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
      auto program = bpf::SockmapProgram::Load({.max_sockets = 64});
      if (!program.ok()) {
        if (geteuid() != 0) GTEST_SKIP() << "the kernel path needs root: " << program.status();
        FAIL() << program.status();
      }
      program_ = *std::move(program);
    }
    auto ring = Ring::Create(256, buffers, 64 * 1024);
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

// The pipes under test: the user-space path, the kernel path, and the kernel path held in user mode from
// the start (a demoted connection: both legs in the sockhash, every byte passed to user space and copied
// through the ring).
enum class TestPath { kUserspace, kSockmap, kHeld };

const char* TestPathName(TestPath path) {
  switch (path) {
    case TestPath::kUserspace: return "userspace";
    case TestPath::kSockmap: return "sockmap";
    case TestPath::kHeld: return "held";
  }
  return "?";
}

class PipeTest : public ::testing::TestWithParam<TestPath>, protected PipeRig {
 protected:
  void SetUp() override { Build(GetParam() != TestPath::kUserspace); }

  void StartPipe(uint64_t gate_limit = 8 << 20) {
    auto on_finish = [this] { finished_ = true; };
    if (GetParam() != TestPath::kUserspace) {
      SockmapPipe::InsertFailure failure;
      std::unique_ptr<SockmapPipe> pipe =
          SockmapPipe::Create(*ring_, *metrics_, *program_, notices_, PipeOptions(gate_limit), std::move(downstream_),
                              std::move(upstream_), on_finish, &failure);
      ASSERT_NE(pipe, nullptr) << failure.status;
      pipe->Start();
      if (GetParam() == TestPath::kHeld) {
        ASSERT_TRUE(pipe->Hold(true));
      }
      pipe_ = std::move(pipe);
    } else {
      pipe_ = std::make_unique<UserspacePipe>(*ring_, *metrics_, std::move(downstream_), std::move(upstream_),
                                              on_finish);
      pipe_->Start();
    }
    ASSERT_EQ(pipe_->kind(), GetParam() == TestPath::kSockmap ? PathKind::kSockmap : PathKind::kUserspace);
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
  if (GetParam() != TestPath::kUserspace) {
    EXPECT_EQ(program_->CountSockets(), 0u);  // left the map once both directions ended
    const auto stats = program_->ReadStats();
    EXPECT_EQ(stats[0][SKP_STAT_REDIRECTED_BYTES] + UserBytes(0), kUp);
    EXPECT_EQ(stats[1][SKP_STAT_REDIRECTED_BYTES] + UserBytes(1), kDown);
    if (GetParam() == TestPath::kHeld) {  // every byte was passed to user space and copied
      EXPECT_EQ(stats[0][SKP_STAT_REDIRECTED_BYTES] + stats[1][SKP_STAT_REDIRECTED_BYTES], 0u);
    }
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
  if (GetParam() == TestPath::kSockmap) {
    const auto stats = program_->ReadStats();
    EXPECT_GT(stats[0][SKP_STAT_GATE_ENTER], 0u) << "the gate never handed over: the test proves nothing";
    EXPECT_GT(UserBytes(0), 0u);
    EXPECT_GT(stats[0][SKP_STAT_REDIRECTED_BYTES], 0u);
  }
}

// A held connection copies through the worker's shared pool like the user-space path: with one buffer for
// both directions the recv finds the pool empty again and again (-ENOBUFS, the bytes wait in the socket)
// and retries; every byte still arrives once, in order.
class HeldPoolTest : public PipeTest {
 protected:
  void SetUp() override { Build(true, /*buffers=*/1); }
};

TEST_P(HeldPoolTest, OneBufferForBothDirectionsLosesNothing) {
  // Whether a recv finds the one buffer taken depends on how the two directions interleave: 8 MiB each
  // way missed it in 1 run of 40; 32 MiB gives it four times the chances.
  constexpr uint64_t kBytes = 32 << 20;
  StartPipe();
  ReadResult at_server, at_client;
  std::thread up_writer([&] { WritePattern(client_.get(), kBytes, true); });
  std::thread down_writer([&] { WritePattern(server_.get(), kBytes, true); });
  std::thread server_reader([&] { at_server = ReadPattern(server_.get()); });
  std::thread client_reader([&] { at_client = ReadPattern(client_.get()); });
  EXPECT_TRUE(RunUntilDone());
  for (auto* t : {&up_writer, &down_writer, &server_reader, &client_reader}) t->join();
  for (const ReadResult* r : {&at_server, &at_client}) {
    EXPECT_EQ(r->bytes, kBytes);
    EXPECT_EQ(r->first_bad, UINT64_MAX);
    EXPECT_TRUE(r->eof);
  }
  EXPECT_EQ(UserBytes(0), kBytes);
  EXPECT_EQ(UserBytes(1), kBytes);
  EXPECT_GT(ring_->buffers().empty_count(), 0u) << "the pool never ran dry: the test proves nothing";
}

INSTANTIATE_TEST_SUITE_P(Held, HeldPoolTest, ::testing::Values(TestPath::kHeld),
                         [](const auto& info) { return std::string(TestPathName(info.param)); });

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
    return SockmapPipe::Create(*ring_, *metrics_, *program_, notices_, PipeOptions(8 << 20), std::move(downstream_),
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

// Many user-space pipes on one ring whose provided-buffer pool is far smaller than what they could read
// at once: recvs meet an empty pool (-ENOBUFS) and must retry without losing or reordering a byte, and a
// connection whose reader stalls may hold only its read-ahead, never the whole pool.
// Parameter: whether the ring may use the limited multishot recv (false: the single-shot loop of kernels
// before 6.17, forced).
class SharedPoolTest : public ::testing::TestWithParam<bool> {
 protected:
  static constexpr unsigned kBufferSize = 16 * 1024;

  struct Leg {
    UniqueFd client, server;
    std::unique_ptr<Pipe> pipe;
  };

  void MakeRing(unsigned buffers) {
    auto ring = Ring::Create(256, buffers, kBufferSize, /*single_shot_recv=*/!GetParam());
    ASSERT_TRUE(ring.ok()) << ring.status();
    ring_ = *std::move(ring);
    metrics_ = std::make_unique<Metrics>(nullptr, nullptr);
  }

  // upstream_sndbuf > 0: the upstream leg's send buffer, so that few bytes fill the path to a stalled reader.
  Leg& AddPipe(int upstream_sndbuf = 0) {
    Leg& leg = legs_.emplace_back();
    UniqueFd downstream, upstream;
    std::tie(leg.client, downstream) = Pair();
    std::tie(upstream, leg.server) = Pair();
    if (upstream_sndbuf > 0) setsockopt(upstream.get(), SOL_SOCKET, SO_SNDBUF, &upstream_sndbuf, sizeof(upstream_sndbuf));
    fcntl(downstream.get(), F_SETFL, O_NONBLOCK);
    fcntl(upstream.get(), F_SETFL, O_NONBLOCK);
    leg.pipe = std::make_unique<UserspacePipe>(*ring_, *metrics_, std::move(downstream), std::move(upstream), [] {});
    leg.pipe->Start();
    return leg;
  }

  // Runs the ring until `until()` holds or the deadline passes; destroys pipes as they finish.
  bool RunUntil(const std::function<bool()>& until, int deadline_s) {
    const auto deadline = Clock::now() + std::chrono::seconds(deadline_s);
    __kernel_timespec tick{0, 20'000'000};  // wakes the loop so the condition and deadline are checked
    while (!until() && Clock::now() < deadline) {
      io_uring_prep_timeout(ring_->PrepareUntracked(), &tick, 0, 0);
      if (!ring_->SubmitAndDispatch().ok()) return false;
      for (Leg& leg : legs_)
        if (leg.pipe != nullptr && leg.pipe->done()) leg.pipe.reset();
    }
    return until();
  }

  std::unique_ptr<Ring> ring_;
  std::unique_ptr<Metrics> metrics_;
  std::deque<Leg> legs_;
};

// 24 connections, both directions 2 MiB each, through 8 buffers of 16 KiB: the pool runs dry again and
// again. Every byte arrives once, in order, and every connection closes.
TEST_P(SharedPoolTest, ExhaustedPoolLosesNothing) {
  constexpr int kConnections = 24;
  constexpr uint64_t kBytes = 2 << 20;
  MakeRing(8);
  std::vector<ReadResult> at_server(kConnections), at_client(kConnections);
  std::vector<std::thread> threads;
  for (int i = 0; i < kConnections; ++i) {
    Leg& leg = AddPipe();
    threads.emplace_back([&leg] { WritePattern(leg.client.get(), kBytes, true); });
    threads.emplace_back([&leg] { WritePattern(leg.server.get(), kBytes, true); });
    threads.emplace_back([&leg, &r = at_server[i]] { r = ReadPattern(leg.server.get(), 0, 60); });
    threads.emplace_back([&leg, &r = at_client[i]] { r = ReadPattern(leg.client.get(), 0, 60); });
  }
  EXPECT_TRUE(RunUntil([&] { return std::all_of(legs_.begin(), legs_.end(), [](const Leg& l) { return !l.pipe; }); },
                       90));
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kConnections; ++i) {
    for (const ReadResult* r : {&at_server[i], &at_client[i]}) {
      EXPECT_EQ(r->bytes, kBytes) << "connection " << i;
      EXPECT_EQ(r->first_bad, UINT64_MAX) << "connection " << i;
      EXPECT_TRUE(r->eof) << "connection " << i;
    }
  }
  EXPECT_EQ(metrics_->UserBytes(0).load(), kConnections * kBytes);
  EXPECT_EQ(metrics_->UserBytes(1).load(), kConnections * kBytes);
  EXPECT_GT(ring_->buffers().empty_count(), 0u) << "the pool never ran dry: the test proves nothing";
}

// Two connections' readers stall: one sender writes in bulk, the other trickles one-byte segments, each of
// which could take a whole buffer. Meanwhile eight other connections move 4 MiB each through the same
// 32-buffer pool: they finish only if each stalled connection holds no more than its read-ahead (bulk) or
// its queued-buffer cap (tiny segments). Then the stalled readers read, and get every byte.
TEST_P(SharedPoolTest, StalledReadersLeaveThePoolToOthers) {
  constexpr int kOthers = 8;
  constexpr uint64_t kOtherBytes = 4 << 20;
  constexpr uint64_t kBulk = 8 << 20;
  constexpr int kTiny = 1000;
  MakeRing(32);
  Leg& bulk = AddPipe();
  const int one = 1, small = 4096;
  Leg& trickle = AddPipe(small);
  setsockopt(trickle.client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(trickle.server.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  std::thread bulk_writer([&] { WritePattern(bulk.client.get(), kBulk, true); });  // blocks until drained
  std::atomic<int> tiny_sent{0};
  std::thread tiny_writer([&] {
    char byte;
    for (int i = 0; i < kTiny; ++i) {
      byte = static_cast<char>(PatternByte(i));
      if (send(trickle.client.get(), &byte, 1, MSG_NOSIGNAL) != 1) return;
      ++tiny_sent;
      std::this_thread::sleep_for(std::chrono::microseconds(500));  // the load: one segment at a time
    }
    shutdown(trickle.client.get(), SHUT_WR);
  });
  for (Leg* leg : {&bulk, &trickle}) shutdown(leg->server.get(), SHUT_WR);
  // Without the cap the trickle would hold a buffer per segment by now, far more than the pool.
  EXPECT_TRUE(RunUntil([&] { return tiny_sent >= kTiny / 2; }, 30));

  std::vector<ReadResult> at_server(kOthers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kOthers; ++i) {
    Leg& leg = AddPipe();
    threads.emplace_back([&leg] { WritePattern(leg.client.get(), kOtherBytes, true); });
    threads.emplace_back([&leg, &r = at_server[i]] { r = ReadPattern(leg.server.get(), 0, 60); });
    shutdown(leg.server.get(), SHUT_WR);
  }
  const auto others_done = [&] {
    return std::all_of(legs_.begin() + 2, legs_.end(), [](const Leg& l) { return !l.pipe; });
  };
  EXPECT_TRUE(RunUntil(others_done, 60)) << "stalled readers starved the other connections of buffers";
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kOthers; ++i) {
    EXPECT_EQ(at_server[i].bytes, kOtherBytes) << "connection " << i;
    EXPECT_EQ(at_server[i].first_bad, UINT64_MAX) << "connection " << i;
  }
  ASSERT_TRUE(bulk.pipe != nullptr && trickle.pipe != nullptr) << "a stalled connection finished early";

  ReadResult at_bulk, at_trickle;
  std::thread bulk_reader([&] { at_bulk = ReadPattern(bulk.server.get(), 0, 60); });
  std::thread trickle_reader([&] { at_trickle = ReadPattern(trickle.server.get(), 0, 60); });
  EXPECT_TRUE(RunUntil([&] { return bulk.pipe == nullptr && trickle.pipe == nullptr; }, 60));
  for (auto* t : {&bulk_writer, &tiny_writer, &bulk_reader, &trickle_reader}) t->join();
  EXPECT_EQ(at_bulk.bytes, kBulk);
  EXPECT_EQ(at_bulk.first_bad, UINT64_MAX);
  EXPECT_TRUE(at_bulk.eof);
  EXPECT_EQ(at_trickle.bytes, static_cast<uint64_t>(kTiny));
  EXPECT_EQ(at_trickle.first_bad, UINT64_MAX);
  EXPECT_TRUE(at_trickle.eof);
}

// An upstream that echoes and, like most servers, reads no more while its write back is blocked.
void EchoUntilEof(int fd, int deadline_s) {
  std::string buf(64 * 1024, '\0');
  const auto deadline = Clock::now() + std::chrono::seconds(deadline_s);
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    const ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN) continue;
    if (n <= 0) {
      if (n == 0) shutdown(fd, SHUT_WR);
      return;
    }
    for (ssize_t done = 0; done < n && Clock::now() < deadline;) {
      const ssize_t w = send(fd, buf.data() + done, static_cast<size_t>(n - done), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w > 0) {
        done += w;
      } else if (w < 0 && errno != EAGAIN) {
        return;
      } else {
        pollfd out{fd, POLLOUT, 0};
        poll(&out, 1, 200);
      }
    }
  }
}

// Echoing upstreams behind a dry pool: once every buffer is held by sends towards upstreams that stopped
// reading because their echo cannot be written back, the echo direction must still read, or those sends
// never complete and the pool never comes back (a worker-wide hang, seen with 1,000 connections through
// the binary's 1024 buffers). Four connections, 4 MiB each, through four buffers.
TEST_P(SharedPoolTest, EchoingUpstreamsDoNotHangADryPool) {
  constexpr int kConnections = 4;
  constexpr uint64_t kBytes = 4 << 20;
  MakeRing(4);
  std::vector<ReadResult> at_client(kConnections);
  std::vector<std::thread> threads;
  for (int i = 0; i < kConnections; ++i) {
    Leg& leg = AddPipe();
    // Small buffers at the upstream: its echo blocks, and it stops reading, early.
    const int small = 32 * 1024;
    setsockopt(leg.server.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(leg.server.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    threads.emplace_back([&leg] { WritePattern(leg.client.get(), kBytes, true); });
    threads.emplace_back([&leg] { EchoUntilEof(leg.server.get(), 60); });
    threads.emplace_back([&leg, &r = at_client[i]] { r = ReadPattern(leg.client.get(), 0, 60); });
  }
  const bool finished = RunUntil(
      [&] { return std::all_of(legs_.begin(), legs_.end(), [](const Leg& l) { return !l.pipe; }); }, 60);
  EXPECT_TRUE(finished) << "the connections hung on the dry pool";
  if (!finished) {
    for (Leg& leg : legs_) shutdown(leg.client.get(), SHUT_RDWR);  // unblocks the writers
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kConnections; ++i) {
    EXPECT_EQ(at_client[i].bytes, kBytes) << "connection " << i;
    EXPECT_EQ(at_client[i].first_bad, UINT64_MAX) << "connection " << i;
    EXPECT_TRUE(at_client[i].eof) << "connection " << i << ", error " << at_client[i].error;
  }
  EXPECT_GT(ring_->buffers().empty_count(), 0u) << "the pool never ran dry: the test proves nothing";
}

// The kernel path's held directions copy through the same pool (SockmapPipe::Receive), so the same
// echoing upstreams behind a dry pool must not hang them either. Four held connections (every byte passed
// to user space and copied through the ring), 4 MiB each, through one 64 KiB buffer: a held direction
// holds at most one, so the pool is dry whenever one send is in flight. The upstream legs' send buffers
// are small, so that a send towards an upstream that stopped reading keeps its buffer, as it does wherever
// the kernel path's large send buffer could not be forced (no CAP_NET_ADMIN) or TCP is under memory
// pressure.
class HeldDryPoolTest : public ::testing::Test, protected PipeRig {
 protected:
  void SetUp() override { Build(true, /*buffers=*/1); }
};

TEST_F(HeldDryPoolTest, EchoingUpstreamsDoNotHangHeldConnections) {
  constexpr int kConnections = 4;
  constexpr uint64_t kBytes = 4 << 20;
  struct Leg {
    UniqueFd client, server;
    std::unique_ptr<SockmapPipe> pipe;
  };
  std::deque<Leg> legs;
  std::vector<ReadResult> at_client(kConnections);
  std::vector<std::thread> threads;
  for (int i = 0; i < kConnections; ++i) {
    Leg& leg = legs.emplace_back();
    UniqueFd downstream, upstream;
    std::tie(leg.client, downstream) = Pair();
    std::tie(upstream, leg.server) = Pair();
    const int small = 32 * 1024, upstream_sndbuf = 64 * 1024;
    setsockopt(upstream.get(), SOL_SOCKET, SO_SNDBUF, &upstream_sndbuf, sizeof(upstream_sndbuf));
    // Small buffers at the upstream: its echo blocks, and it stops reading, early.
    setsockopt(leg.server.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(leg.server.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    fcntl(downstream.get(), F_SETFL, O_NONBLOCK);
    fcntl(upstream.get(), F_SETFL, O_NONBLOCK);
    SockmapPipe::InsertFailure failure;
    leg.pipe = SockmapPipe::Create(*ring_, *metrics_, *program_, notices_, PipeOptions(8 << 20), std::move(downstream),
                                   std::move(upstream), [] {}, &failure);
    ASSERT_NE(leg.pipe, nullptr) << failure.status;
    leg.pipe->Start();
    ASSERT_TRUE(leg.pipe->Hold(true));
  }
  for (int i = 0; i < kConnections; ++i) {  // no ASSERT from here until the threads are joined
    Leg& leg = legs[i];
    threads.emplace_back([&leg] { WritePattern(leg.client.get(), kBytes, true); });
    threads.emplace_back([&leg] { EchoUntilEof(leg.server.get(), 60); });
    threads.emplace_back([&leg, &r = at_client[i]] { r = ReadPattern(leg.client.get(), 0, 60); });
  }
  const auto all_done = [&] { return std::all_of(legs.begin(), legs.end(), [](const Leg& l) { return !l.pipe; }); };
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  __kernel_timespec tick{0, 20'000'000};  // wakes the loop so the condition and deadline are checked
  while (!all_done() && Clock::now() < deadline) {
    io_uring_prep_timeout(ring_->PrepareUntracked(), &tick, 0, 0);
    if (absl::Status s = ring_->SubmitAndDispatch(); !s.ok()) {
      ADD_FAILURE() << s;
      break;
    }
    for (Leg& leg : legs)
      if (leg.pipe != nullptr && leg.pipe->done()) leg.pipe.reset();
  }
  const bool finished = all_done();
  EXPECT_TRUE(finished) << "the held connections hung on the dry pool";
  if (!finished) {
    for (Leg& leg : legs) shutdown(leg.client.get(), SHUT_RDWR);  // unblocks the writers
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kConnections; ++i) {
    EXPECT_EQ(at_client[i].bytes, kBytes) << "connection " << i;
    EXPECT_EQ(at_client[i].first_bad, UINT64_MAX) << "connection " << i;
    EXPECT_TRUE(at_client[i].eof) << "connection " << i << ", error " << at_client[i].error;
  }
  if (finished) {  // every byte both ways went through user space's copy, none through a redirect
    EXPECT_EQ(metrics_->UserBytes(0).load(), kConnections * kBytes);
    EXPECT_EQ(metrics_->UserBytes(1).load(), kConnections * kBytes);
    const auto stats = program_->ReadStats();
    EXPECT_EQ(stats[0][SKP_STAT_REDIRECTED_BYTES] + stats[1][SKP_STAT_REDIRECTED_BYTES], 0u);
  }
  EXPECT_GT(ring_->buffers().empty_count(), 0u) << "the pool never ran dry: the test proves nothing";
}

INSTANTIATE_TEST_SUITE_P(RecvModes, SharedPoolTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Multishot" : "SingleShot"; });

INSTANTIATE_TEST_SUITE_P(Paths, PipeTest, ::testing::Values(TestPath::kSockmap, TestPath::kUserspace, TestPath::kHeld),
                         [](const auto& info) { return std::string(TestPathName(info.param)); });

// In user mode one recv takes what the source's receive buffer holds, bounded for the memory it costs.
TEST(SockmapPipeCopyBuffer, FollowsTheReceiveBufferWithinBounds) {
  constexpr size_t KiB = 1024, MiB = 1024 * KiB;
  const struct {
    uint64_t receive_buffer;
    size_t copy_buffer;
  } cases[] = {{0, 256 * KiB},           {512 * KiB, 512 * KiB}, {1 * MiB, 1 * MiB},
               {3 * MiB, 3 * MiB},       {4 * MiB, 4 * MiB},     {64 * MiB, 4 * MiB},
               {1024 * MiB, 4 * MiB}};
  for (const auto& c : cases)
    EXPECT_EQ(SockmapPipe::CopyBufferSize(c.receive_buffer), c.copy_buffer) << c.receive_buffer;
}

}  // namespace
}  // namespace skproxy
