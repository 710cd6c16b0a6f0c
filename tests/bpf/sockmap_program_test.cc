// The verdict program through real sockets (sk_skb has no BPF_PROG_TEST_RUN): a client, the two legs a
// proxy would hold, and an upstream, on IPv4 and IPv6 loopback. Each fixture row says what goes in and
// which way the bytes must come out.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <bpf/libbpf.h>

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "bpf/loader.h"
#include "bpf/socket_key.h"
#include "config/address.h"
#include "gtest/gtest.h"
#include "proxy/unique_fd.h"
#include "tests/kernel_support.h"

namespace skproxy::bpf {
namespace {

// client <-> downstream (accepted by the "proxy") ; upstream_leg (connected by the "proxy") <-> server
struct Legs {
  UniqueFd client, downstream, upstream_leg, server;
};

UniqueFd Listen(int family) {
  UniqueFd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const SocketAddress any_port = LoopbackAddress(family, 0);
  EXPECT_EQ(bind(fd.get(), any_port.sockaddr_ptr(), any_port.length), 0) << strerror(errno);
  EXPECT_EQ(listen(fd.get(), 4), 0);
  return fd;
}

// A connected pair: (connecting end, accepted end).
std::pair<UniqueFd, UniqueFd> Pair(int family) {
  UniqueFd listener = Listen(family);
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(listener.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  UniqueFd connecting(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  // A port of its own, bound before the connect: a port that connect() picks may be shared with other
  // connections' TIME_WAIT entries (other destinations), and then a later bind to it fails, which
  // ATupleStillHeldByAnEndingConnectionIsNotTakenOver needs to succeed once this end is reset.
  const SocketAddress any_port = LoopbackAddress(family, 0);
  EXPECT_EQ(bind(connecting.get(), any_port.sockaddr_ptr(), any_port.length), 0) << strerror(errno);
  EXPECT_EQ(connect(connecting.get(), reinterpret_cast<sockaddr*>(&ss), len), 0) << strerror(errno);
  UniqueFd accepted(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  return {std::move(connecting), std::move(accepted)};
}

Legs MakeLegs(int family) {
  Legs legs;
  auto [client, downstream] = Pair(family);
  auto [upstream_leg, server] = Pair(family);
  legs.client = std::move(client);
  legs.downstream = std::move(downstream);
  legs.upstream_leg = std::move(upstream_leg);
  legs.server = std::move(server);
  return legs;
}

// Reads exactly n bytes with a deadline; returns what arrived.
std::string ReadN(int fd, size_t n, int timeout_ms = 5000) {
  std::string out;
  char buf[65536];
  while (out.size() < n) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) break;
    ssize_t r = recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

std::string Payload(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7);
  return s;
}

// The records of notice ring 0, as a worker would read them.
class NoticeCollector {
 public:
  explicit NoticeCollector(const SockmapProgram& program)
      : reader_(ring_buffer__new(program.NoticeRingFd(0), &NoticeCollector::Add, this, nullptr)) {}
  ~NoticeCollector() { ring_buffer__free(reader_); }
  // What the ring holds now. The verdict posts before the skb it handles is queued anywhere, so once
  // that skb's bytes have been seen, its notice is already in the ring.
  std::vector<skp_notice> Take() {
    ring_buffer__consume(reader_);
    return std::exchange(records_, {});
  }

 private:
  static int Add(void* self, void* data, size_t size) {
    if (size >= sizeof(skp_notice)) static_cast<NoticeCollector*>(self)->records_.push_back(*static_cast<skp_notice*>(data));
    return 0;
  }
  ring_buffer* reader_;
  std::vector<skp_notice> records_;
};

class SockmapProgramTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { SetUpWith({.max_sockets = 64}); }

  void SetUpWith(const LoadOptions& options) {
    SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
    program_.reset();
    absl::StatusOr<std::unique_ptr<SockmapProgram>> program = SockmapProgram::Load(options);
    if (!program.ok()) {
      // Root that fails to load is a failure (a verifier rejection is EACCES too), never a skip.
      if (geteuid() != 0)
        GTEST_SKIP() << "needs root (CAP_BPF, CAP_NET_ADMIN) to load the verdict: " << program.status();
      FAIL() << "verdict program failed to load on this kernel: " << program.status();
    }
    program_ = *std::move(program);
    legs_ = MakeLegs(GetParam());
    absl::StatusOr<skp_key> down = SocketKey(legs_.downstream.get());
    absl::StatusOr<skp_key> up = SocketKey(legs_.upstream_leg.get());
    ASSERT_TRUE(down.ok() && up.ok());
    keys_ = {*down, *up};
  }

  void Insert(uint64_t gate_limit) {
    Inserted inserted;
    ASSERT_TRUE(program_->Insert(keys_, legs_.downstream.get(), legs_.upstream_leg.get(), gate_limit, 0, &inserted).ok());
    ASSERT_EQ(inserted, Inserted::kBoth);
  }

  uint64_t Stat(int direction, skp_stat stat) { return program_->ReadStats()[direction][stat]; }

  std::unique_ptr<SockmapProgram> program_;
  Legs legs_;
  ConnectionKeys keys_;
};

TEST_P(SockmapProgramTest, KeyMatchesSocketAddresses) {
  sockaddr_storage local{}, remote{};
  socklen_t len = sizeof(local);
  getsockname(legs_.downstream.get(), reinterpret_cast<sockaddr*>(&local), &len);
  len = sizeof(remote);
  getpeername(legs_.downstream.get(), reinterpret_cast<sockaddr*>(&remote), &len);
  EXPECT_EQ(keys_.downstream.family, static_cast<uint32_t>(GetParam()));
  if (GetParam() == AF_INET) {
    EXPECT_EQ(keys_.downstream.local_ip[0], reinterpret_cast<sockaddr_in&>(local).sin_addr.s_addr);
    EXPECT_EQ(keys_.downstream.local_port, ntohs(reinterpret_cast<sockaddr_in&>(local).sin_port));
    EXPECT_EQ(keys_.downstream.remote_port, ntohs(reinterpret_cast<sockaddr_in&>(remote).sin_port));
    EXPECT_EQ(keys_.downstream.local_ip[1], 0u);
  } else {
    EXPECT_EQ(0, memcmp(keys_.downstream.local_ip, &reinterpret_cast<sockaddr_in6&>(local).sin6_addr, 16));
    EXPECT_EQ(keys_.downstream.remote_port, ntohs(reinterpret_cast<sockaddr_in6&>(remote).sin6_port));
  }
  // The two ends of one TCP connection see each other's tuple mirrored.
  absl::StatusOr<skp_key> client = SocketKey(legs_.client.get());
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client->local_port, keys_.downstream.remote_port);
  EXPECT_EQ(client->remote_port, keys_.downstream.local_port);
}

// The rows: how many bytes each way, and the gate limit. A redirect only happens when the key the program
// builds from the skb equals the one user space built, so a mismatch fails every redirect row.
struct Row {
  const char* name;
  size_t to_upstream;
  size_t to_downstream;
  uint64_t gate_limit;
  bool expect_kernel;  // else the gate passes everything to user space
};

const Row kRows[] = {
    {"small_both_ways", 100, 200, 8 << 20, true},
    {"one_megabyte_up", 1 << 20, 0, 8 << 20, true},
    {"one_megabyte_down", 0, 1 << 20, 8 << 20, true},
    {"gate_closed_passes_to_user", 4096, 4096, 1, false},
};

TEST_P(SockmapProgramTest, FixtureRows) {
  for (const Row& row : kRows) {
    SCOPED_TRACE(row.name);
    // Fresh legs per row: a socket is inserted once.
    if (&row != &kRows[0]) SetUp();
    Insert(row.gate_limit);
    const std::string up = Payload(row.to_upstream, 'a');
    const std::string down = Payload(row.to_downstream, 'z');
    const uint64_t redirected_before[2] = {Stat(0, SKP_STAT_REDIRECTED_BYTES), Stat(1, SKP_STAT_REDIRECTED_BYTES)};
    if (!up.empty()) {
      ASSERT_EQ(send(legs_.client.get(), up.data(), up.size(), 0), static_cast<ssize_t>(up.size()));
    }
    if (!down.empty()) {
      ASSERT_EQ(send(legs_.server.get(), down.data(), down.size(), 0), static_cast<ssize_t>(down.size()));
    }
    if (row.expect_kernel) {
      EXPECT_EQ(ReadN(legs_.server.get(), up.size()), up);
      EXPECT_EQ(ReadN(legs_.client.get(), down.size()), down);
      EXPECT_EQ(Stat(0, SKP_STAT_REDIRECTED_BYTES) - redirected_before[0], up.size());
      EXPECT_EQ(Stat(1, SKP_STAT_REDIRECTED_BYTES) - redirected_before[1], down.size());
    } else {
      // Passed: the bytes wait on the leg they arrived on, for user space, and nothing reaches the far end.
      EXPECT_EQ(ReadN(legs_.downstream.get(), up.size()), up);
      EXPECT_EQ(ReadN(legs_.upstream_leg.get(), down.size()), down);
      EXPECT_FALSE(Readable(legs_.server.get(), 100));
      absl::StatusOr<skp_dir> dir = program_->ReadDirection(keys_.downstream);
      ASSERT_TRUE(dir.ok());
      EXPECT_EQ(program_->Passed(keys_.user_slots[0]), up.size());
      EXPECT_EQ(program_->Redirected(keys_.user_slots[0]), 0u);
      EXPECT_TRUE(dir->flags & SKP_F_USER_MODE);
    }
    program_->Remove(keys_);
    EXPECT_EQ(program_->CountSockets(), 0u);
  }
}

// The count /metrics reports is kept as sockets go in and out, without walking the map, and matches the
// map's real content.
TEST_P(SockmapProgramTest, SocketsHeldFollowsInsertAndRemoveWithoutWalkingTheMap) {
  SetUpWith({.max_sockets = 256});
  EXPECT_EQ(program_->SocketsHeld(), 0u);
  std::vector<Legs> more;
  std::vector<ConnectionKeys> more_keys;
  Insert(8 << 20);
  for (int i = 0; i < 20; ++i) {
    more.push_back(MakeLegs(GetParam()));
    absl::StatusOr<skp_key> down = SocketKey(more.back().downstream.get());
    absl::StatusOr<skp_key> up = SocketKey(more.back().upstream_leg.get());
    ASSERT_TRUE(down.ok() && up.ok());
    more_keys.push_back({*down, *up});
    Inserted inserted;
    ASSERT_TRUE(program_->Insert(more_keys.back(), more.back().downstream.get(), more.back().upstream_leg.get(),
                                 8 << 20, 0, &inserted).ok());
  }
  EXPECT_EQ(program_->SocketsHeld(), 42u);
  EXPECT_EQ(program_->CountSockets(), 42u);
  for (int i = 0; i < 10; ++i) program_->Remove(more_keys[i]);
  EXPECT_EQ(program_->SocketsHeld(), 22u);
  EXPECT_EQ(program_->CountSockets(), 22u);
  // Dropping the state of legs about to be closed releases them too (closing takes them out of the map).
  for (int i = 10; i < 20; ++i) {
    program_->RemoveState(more_keys[i]);
    more[i] = Legs{};
  }
  EXPECT_EQ(program_->SocketsHeld(), 2u);
  program_->Remove(keys_);
  program_->Remove(keys_);  // a second release of the same connection changes nothing
  EXPECT_EQ(program_->SocketsHeld(), 0u);
  EXPECT_EQ(program_->max_sockets(), 256u);
}

// Bytes that reached the downstream leg before it was inserted are redirected once the data-ready path runs
// (SO_RCVLOWAT), in order before anything sent later.
TEST_P(SockmapProgramTest, BytesQueuedBeforeInsertionGoFirst) {
  const std::string early = Payload(3000, 'e');
  const std::string late = Payload(5000, 'l');
  ASSERT_EQ(send(legs_.client.get(), early.data(), early.size(), 0), static_cast<ssize_t>(early.size()));
  ASSERT_TRUE(Readable(legs_.downstream.get(), 2000));
  Insert(8 << 20);
  const int one = 1;
  ASSERT_EQ(setsockopt(legs_.downstream.get(), SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one)), 0);
  // No new segment has arrived: only the SO_RCVLOWAT kick can have moved the early bytes.
  EXPECT_EQ(ReadN(legs_.server.get(), early.size()), early);
  ASSERT_EQ(send(legs_.client.get(), late.data(), late.size(), 0), static_cast<ssize_t>(late.size()));
  EXPECT_EQ(ReadN(legs_.server.get(), late.size()), late);
}

// User space read part of the skb at the head of the queue before inserting (the proxy's hand-over does
// this). tcp_read_skb() hands that skb to the verdict whole; only the unread rest may go out.
TEST_P(SockmapProgramTest, PartlyReadSkbIsNotSentTwice) {
  const std::string data = Payload(3000, 'p');
  ASSERT_EQ(send(legs_.client.get(), data.data(), data.size(), 0), 3000);
  ASSERT_TRUE(Readable(legs_.downstream.get(), 2000));
  char head[1000];
  ASSERT_EQ(recv(legs_.downstream.get(), head, sizeof(head), 0), 1000);
  Insert(8 << 20);
  const int one = 1;
  ASSERT_EQ(setsockopt(legs_.downstream.get(), SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one)), 0);
  EXPECT_EQ(ReadN(legs_.server.get(), 2000), data.substr(1000));
  EXPECT_FALSE(Readable(legs_.server.get(), 200)) << "bytes already read by user space went out again";
  EXPECT_EQ(Stat(0, SKP_STAT_TRIMMED_BYTES), 1000u);
}

// With the upstream not reading, the gate redirects until the upstream leg's write queue plus backlog
// reach the limit, then passes the rest to user space: kernel memory held for the connection is bounded.
TEST_P(SockmapProgramTest, GateBoundsWhatWaitsForASlowReader) {
  constexpr uint64_t kLimit = 256 * 1024;
  constexpr size_t kTotal = 4 << 20;
  Insert(kLimit);
  const std::string data = Payload(kTotal, 's');
  // The client's own buffers fill once the gate passes and the downstream leg's receive buffer is full, so
  // send without blocking and stop when the kernel pushes back.
  size_t sent = 0;
  while (sent < kTotal) {
    ssize_t n = send(legs_.client.get(), data.data() + sent, kTotal - sent, MSG_DONTWAIT);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  ASSERT_GT(sent, kLimit);
  // Passed bytes are readable on the downstream leg; wait until the gate has engaged.
  ASSERT_TRUE(Readable(legs_.downstream.get(), 5000));
  absl::StatusOr<skp_dir> dir = program_->ReadDirection(keys_.downstream);
  ASSERT_TRUE(dir.ok());
  EXPECT_TRUE(dir->flags & SKP_F_USER_MODE);
  const uint64_t redirected = program_->Redirected(keys_.user_slots[0]);
  EXPECT_GT(program_->Passed(keys_.user_slots[0]), 0u);
  EXPECT_GT(redirected, 0u);
  // What went to the kernel path stays within the limit plus one skb of slack.
  EXPECT_LE(redirected, kLimit + 65536);
  EXPECT_GE(Stat(0, SKP_STAT_GATE_ENTER), 1u);
}

// User space does not watch a source the verdict redirects. When it stops watching it arms the direction,
// and the verdict posts one notice for the first byte it passes after that, and none otherwise.
TEST_P(SockmapProgramTest, PassPostsOneNoticePerArming) {
  Insert(1);  // the gate is closed: every skb is passed to user space
  NoticeCollector notices(*program_);
  const uint32_t slot = keys_.user_slots[SKP_DOWNSTREAM_TO_UPSTREAM];
  const std::string data = Payload(1000, 'n');
  auto pass_one = [&] {
    ASSERT_EQ(send(legs_.client.get(), data.data(), data.size(), 0), 1000);
    ASSERT_EQ(ReadN(legs_.downstream.get(), data.size()), data);  // passed: waits on the leg it came by
  };
  pass_one();
  EXPECT_TRUE(notices.Take().empty()) << "not armed: user space is watching, no notice is due";
  program_->Arm(slot);
  pass_one();
  std::vector<skp_notice> got = notices.Take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].slot, slot);
  EXPECT_EQ(got[0].kind, static_cast<uint32_t>(SKP_NOTICE_PASSED));
  pass_one();
  EXPECT_TRUE(notices.Take().empty()) << "the notice disarmed the direction";
  EXPECT_EQ(program_->Passed(slot), 3000u);
  EXPECT_EQ(Stat(0, SKP_STAT_NOTICES), 1u);
}

// A trim that cannot remove the whole old head must not forward the skb: its old bytes would reach the
// peer twice. The verdict drops it and everything after it on that direction, and tells user space to
// reset the connection. The trim's reach follows the receive buffer: 2000 bytes (4000 once the kernel
// doubles it) allow one 4095-byte call, and 10,000 bytes were already read.
TEST_P(SockmapProgramTest, TrimFallingShortResetsInsteadOfRepeating) {
  SetUpWith({.max_sockets = 64, .receive_buffer_bytes = 2000});
  const std::string data = Payload(20000, 't');
  ASSERT_EQ(send(legs_.client.get(), data.data(), data.size(), 0), 20000);
  ASSERT_TRUE(Readable(legs_.downstream.get(), 2000));
  ASSERT_EQ(ReadN(legs_.downstream.get(), 10000), data.substr(0, 10000));
  Insert(8 << 20);
  NoticeCollector notices(*program_);
  const int one = 1;
  ASSERT_EQ(setsockopt(legs_.downstream.get(), SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one)), 0);
  EXPECT_EQ(Stat(0, SKP_STAT_TRIM_SHORT), 1u);
  std::vector<skp_notice> got = notices.Take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].slot, keys_.user_slots[SKP_DOWNSTREAM_TO_UPSTREAM]);
  EXPECT_EQ(got[0].kind, static_cast<uint32_t>(SKP_NOTICE_BROKEN));
  // The kernel counts the dropped skb's untrimmed length as consumed, so the socket signals new data only
  // once more than the untrimmed rest (5,905 bytes) has arrived after it.
  ASSERT_EQ(send(legs_.client.get(), data.data(), 10000, 0), 10000);
  EXPECT_FALSE(Readable(legs_.server.get(), 200)) << "bytes of a direction whose trim fell short went out";
  EXPECT_FALSE(Readable(legs_.downstream.get(), 0)) << "and none were passed";
  EXPECT_GE(Stat(0, SKP_STAT_BROKEN_DROPS), 1u);
}

// A 4-tuple outlives the socket it named: a reset leg gives its port back at once while the proxy still
// holds it, and with it its entries in the maps (the sockhash keeps a socket until it is closed), and on
// loopback the kernel also reuses a TIME_WAIT tuple for a new connection. A new connection on such a
// tuple must stay out of the kernel path and leave the old connection's records as they are: overwriting
// them would point the old connection's verdict at the new one's sockets, and the old one's release would
// then delete the new one's state.
TEST_P(SockmapProgramTest, ATupleStillHeldByAnEndingConnectionIsNotTakenOver) {
  Insert(8 << 20);
  sockaddr_storage local{}, remote{};
  socklen_t local_len = sizeof(local), remote_len = sizeof(remote);
  ASSERT_EQ(getsockname(legs_.upstream_leg.get(), reinterpret_cast<sockaddr*>(&local), &local_len), 0);
  ASSERT_EQ(getpeername(legs_.upstream_leg.get(), reinterpret_cast<sockaddr*>(&remote), &remote_len), 0);
  // The upstream resets the old connection; its leg stays open here, in the map.
  const linger reset{1, 0};
  ASSERT_EQ(setsockopt(legs_.server.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), 0);
  legs_.server.Reset();
  pollfd p{legs_.upstream_leg.get(), POLLRDHUP, 0};
  ASSERT_EQ(poll(&p, 1, 5000), 1) << "the reset did not arrive";

  // A new connection from the old leg's local address and port to the same upstream address: the same key.
  const int on = 1;
  UniqueFd listener(socket(GetParam(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)), 0);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&remote), remote_len), 0) << strerror(errno);
  ASSERT_EQ(listen(listener.get(), 4), 0);
  UniqueFd new_upstream(socket(GetParam(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(setsockopt(new_upstream.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)), 0);
  ASSERT_EQ(bind(new_upstream.get(), reinterpret_cast<sockaddr*>(&local), local_len), 0)
      << "the reset leg's port was not given back: " << strerror(errno);
  ASSERT_EQ(connect(new_upstream.get(), reinterpret_cast<sockaddr*>(&remote), remote_len), 0) << strerror(errno);
  UniqueFd new_server(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  auto [new_client, new_downstream] = Pair(GetParam());
  absl::StatusOr<skp_key> down = SocketKey(new_downstream.get());
  absl::StatusOr<skp_key> up = SocketKey(new_upstream.get());
  ASSERT_TRUE(down.ok() && up.ok());
  ASSERT_EQ(memcmp(&*up, &keys_.upstream, sizeof(skp_key)), 0) << "the new upstream leg did not get the old key";
  ConnectionKeys new_keys{*down, *up};

  Inserted inserted = Inserted::kBoth;
  int err = 0;
  EXPECT_FALSE(program_->Insert(new_keys, new_downstream.get(), new_upstream.get(), 8 << 20, 0, &inserted, &err).ok());
  EXPECT_EQ(inserted, Inserted::kNone) << "nothing of the new connection may enter the kernel path";
  EXPECT_EQ(err, EEXIST);
  // The old connection's records are its own still.
  absl::StatusOr<skp_dir> old_up = program_->ReadDirection(keys_.upstream);
  ASSERT_TRUE(old_up.ok()) << old_up.status();
  EXPECT_EQ(memcmp(&old_up->peer, &keys_.downstream, sizeof(skp_key)), 0) << "the old direction was overwritten";
  EXPECT_EQ(old_up->user_slot, keys_.user_slots[SKP_UPSTREAM_TO_DOWNSTREAM]);
  EXPECT_TRUE(program_->ReadDirection(new_keys.downstream).status().code() == absl::StatusCode::kNotFound);
  // The new connection's bytes wait for user space on the leg they arrived on, nowhere else.
  const std::string request = Payload(1000, 'n');
  ASSERT_EQ(send(new_client.get(), request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  EXPECT_EQ(ReadN(new_downstream.get(), request.size()), request);
  EXPECT_EQ(program_->CountSockets(), 2u) << "only the old connection's legs";
  program_->Remove(keys_);
}

INSTANTIATE_TEST_SUITE_P(Families, SockmapProgramTest, ::testing::Values(AF_INET, AF_INET6),
                         [](const auto& info) { return info.param == AF_INET ? "IPv4" : "IPv6"; });

}  // namespace
}  // namespace skproxy::bpf
