// Ring against the real io_uring: a submit failing on a full SQ, the recv probe, closes from the ring.
#include "proxy/ring.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "gtest/gtest.h"
#include "proxy/kernel_version.h"
#include "tests/proxy/counting_handler.h"

namespace skproxy {
namespace {

// The ring is IORING_SETUP_SINGLE_ISSUER: a submit from any thread but the one that created it fails with
// EEXIST. Preparing more SQEs than the SQ holds from another thread therefore meets a full SQ whose submit
// fails, every time, which is what a persistent submit error looks like to Prepare. It used to retry that
// submit forever; now it holds the SQEs, and the owning thread's next SubmitAndDispatch sends them.
TEST(RingTest, FullSqWithFailingSubmitDoesNotSpin) {
  constexpr unsigned kEntries = 8;
  constexpr int kPrepared = 3 * kEntries;
  auto created = Ring::Create(kEntries, 4, 4096);
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<Ring> ring = *std::move(created);
  CountingHandler handler;

  std::packaged_task<void()> prepare([&] {
    for (int i = 0; i < kPrepared; ++i) io_uring_prep_nop(ring->Prepare(&handler, 1));
  });
  std::future<void> prepared = prepare.get_future();
  std::thread other(std::move(prepare));
  // A deadline, not a sleep: the old code never returns from Prepare, so the thread cannot be joined.
  if (prepared.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    other.detach();
    ring.release();  // still in use by the spinning thread
    FAIL() << "Prepare spins on a full SQ whose submit keeps failing";
  }
  other.join();
  EXPECT_GT(ring->full_submit_errors(), 0u);
  EXPECT_EQ(ring->held(), static_cast<size_t>(kPrepared - kEntries));

  // Back on the owning thread every SQE reaches the kernel, in order, and completes.
  for (int round = 0; round < 100 && handler.completions < kPrepared; ++round) {
    ASSERT_TRUE(ring->SubmitAndDispatch().ok());
  }
  EXPECT_EQ(handler.completions, kPrepared);
  EXPECT_EQ(handler.errors, 0);
  EXPECT_EQ(ring->held(), 0u);
}

// A finished connection's legs close from the ring (Ring::Close): each test hands one end of a socketpair
// to it and watches the other end.
class RingCloseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto created = Ring::Create(8, 4, 4096);
    ASSERT_TRUE(created.ok()) << created.status();
    ring_ = *std::move(created);
    int pair[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    peer_.Reset(pair[1]);
    closed_ = pair[0];
    ring_->Close(UniqueFd(closed_));
  }
  // The handed-over descriptor is gone and the peer reads EOF.
  void ExpectClosed() {
    EXPECT_EQ(fcntl(closed_, F_GETFD), -1);
    EXPECT_EQ(errno, EBADF);
    char byte;
    EXPECT_EQ(recv(peer_.get(), &byte, 1, MSG_DONTWAIT), 0) << "the peer does not see the close";
  }

  std::unique_ptr<Ring> ring_;
  UniqueFd peer_;
  int closed_ = -1;
};

// Not before the next submit, which may still carry SQEs naming the descriptor, and at that submit, with
// no system call of its own.
TEST_F(RingCloseTest, ClosesTheDescriptorAtTheNextSubmit) {
  EXPECT_NE(fcntl(closed_, F_GETFD), -1) << "closed before the submit";
  char byte;
  EXPECT_EQ(recv(peer_.get(), &byte, 1, MSG_DONTWAIT), -1) << "the peer saw the close before the submit";
  ASSERT_TRUE(ring_->SubmitAndDispatch().ok());  // the close's own completion ends the wait
  ExpectClosed();
}

// A worker tears its ring down before its connections: closes still queued then must not leak.
TEST_F(RingCloseTest, DestroyingTheRingRunsTheClosesStillQueued) {
  ring_.reset();
  ExpectClosed();
}

// The user-space path reads with a limited multishot recv where the kernel has it (merged for 6.17), and
// with one single-shot recv per buffer elsewhere: the probe must tell which. Asserted where the answer is
// certain: 6.18 and later have it, kernels before 6.12 lack even the per-recv cap it builds on.
TEST(RingTest, ProbesTheLimitedMultishotRecv) {
  auto version = ParseKernelRelease(RunningKernelRelease());
  ASSERT_TRUE(version.ok()) << version.status();
  auto ring = Ring::Create(8, 4, 4096);
  ASSERT_TRUE(ring.ok()) << ring.status();
  if (!(*version < KernelVersion{6, 18, 0})) {
    EXPECT_TRUE((*ring)->recv_multishot_limit()) << RunningKernelRelease();
  } else if (*version < KernelVersion{6, 12, 0}) {
    EXPECT_FALSE((*ring)->recv_multishot_limit()) << RunningKernelRelease();
  } else {
    GTEST_SKIP() << "kernel " << RunningKernelRelease() << ": either answer may be right";
  }
}

}  // namespace
}  // namespace skproxy
