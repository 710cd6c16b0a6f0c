// Running out of file descriptors, through the binary: the proxy's RLIMIT_NOFILE is lowered (prlimit(2) on
// the running process) so that exactly one descriptor is left. The next client takes it on accept, and the
// socket() for its upstream fails with EMFILE. That is the proxy's shortage, not the upstream's: it must be
// counted as a resource error, not as a connect failure, and the client closed at once, not left hanging.
#include <dirent.h>
#include <sys/resource.h>

#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/integration/test_helpers.h"

namespace skproxy::itest {
namespace {

std::set<int> OpenFds(pid_t pid) {
  std::set<int> fds;
  const std::string path = absl::StrCat("/proc/", pid, "/fd");
  if (DIR* d = opendir(path.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') fds.insert(std::atoi(e->d_name));
    closedir(d);
  }
  return fds;
}

// The RLIMIT_NOFILE under which the process can open exactly `spare` more descriptors: the kernel hands out
// the lowest free number and refuses numbers at or above the limit, so count the free numbers below it.
rlim_t LimitLeaving(const std::set<int>& open, int spare) {
  for (rlim_t limit = 1; limit < 1 << 20; ++limit) {
    const long below = std::distance(open.begin(), open.lower_bound(static_cast<int>(limit)));
    if (static_cast<long>(limit) - below == spare) return limit;
  }
  return 0;
}

// Sends `text` and reads the same bytes back.
bool Echoes(int fd, const std::string& text) {
  Deadline deadline = DeadlineIn(5s);
  if (SendAll(fd, text.data(), text.size(), deadline).bytes != text.size()) return false;
  std::string got(text.size(), '\0');
  return RecvExact(fd, got.data(), got.size(), deadline).bytes == text.size() && got == text;
}

TEST(ResourceLimitsTest, UpstreamSocketEmfileIsCountedAndClosesTheClient) {
  constexpr int kHeld = 3;  // connections that keep their two descriptors (client leg, upstream leg)
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  ProxyConfig c = SimpleProxyConfig("userspace", {echo->endpoint()});
  c.workers = 1;
  SKPROXY_START(proxy, baseline_fds, c);

  rlimit original{};
  ASSERT_EQ(prlimit(proxy->pid(), RLIMIT_NOFILE, nullptr, &original), 0) << strerror(errno);
  const rlim_t limit = LimitLeaving(OpenFds(proxy->pid()), 2 * kHeld + 1);
  ASSERT_GT(limit, 0u);
  // Only the soft limit: the proxy raised it to the hard one at start and never looks again, and raising it
  // back afterwards needs no privilege (a container's root may lack CAP_SYS_RESOURCE).
  rlimit tight{limit, original.rlim_max};
  ASSERT_EQ(prlimit(proxy->pid(), RLIMIT_NOFILE, &tight, nullptr), 0) << strerror(errno);

  std::vector<UniqueFd> held;
  for (int i = 0; i < kHeld; ++i) {
    auto fd = Connect(proxy->listener(), 5s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    ASSERT_TRUE(Echoes(fd->get(), "held " + std::to_string(i))) << "connection " << i << " under the limit";
    held.push_back(std::move(*fd));
  }
  // One descriptor left: accept takes it, socket() for the upstream fails. Nothing is sent, so a clean
  // close reaches the client as EOF (unread bytes would turn it into a reset).
  auto starved = Connect(proxy->listener(), 5s);
  ASSERT_TRUE(starved.ok()) << starved.status();
  CloseResult closed = WaitForPeerClose(starved->get(), DeadlineIn(5s));
  EXPECT_TRUE(closed.closed) << "the client whose upstream socket() failed was left hanging";
  EXPECT_FALSE(closed.reset);

  // The proxy goes on serving what it holds.
  for (int i = 0; i < kHeld; ++i) EXPECT_TRUE(Echoes(held[i].get(), "again")) << "connection " << i;

  // Room again for the admin listener's accept, then read the counters.
  ASSERT_EQ(prlimit(proxy->pid(), RLIMIT_NOFILE, &original, nullptr), 0) << strerror(errno);
  auto m = proxy->Metrics();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(SumMetric(*m, "skproxy_resource_errors_total", {{"reason", "emfile"}}), 1);
  EXPECT_EQ(SumMetric(*m, "skproxy_upstream_connect_failures_total"), 0)
      << "a descriptor shortage in the proxy was blamed on the upstream";
  EXPECT_EQ(SumMetric(*m, "skproxy_connections_total"), kHeld);

  held.clear();
  starved->Reset();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

}  // namespace
}  // namespace skproxy::itest
