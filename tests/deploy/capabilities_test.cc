// The capabilities the README names, tried for real: skproxy started as an unprivileged user holding
// exactly those (setpriv, as systemd's AmbientCapabilities and the image's file capabilities give them)
// loads the kernel path, forces its socket buffers and moves a bulk connection through the sockhash; and
// each one the README calls necessary is: without it, --datapath sockmap refuses to start.
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/deploy/readme_capabilities.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"
#include "tests/kernel_support.h"

namespace skproxy::itest {
namespace {

const std::string kReadme = std::string(SKPROXY_SOURCE_DIR) + "/README.md";

// setpriv as nobody with `caps` (names without CAP_) ambient, inheritable and bounding, nothing else.
std::vector<std::string> AsNobodyWith(const std::set<std::string>& caps) {
  std::vector<std::string> names;
  for (const std::string& c : caps) names.push_back("+" + absl::AsciiStrToLower(c));
  const std::string list = names.empty() ? "-all" : "-all," + absl::StrJoin(names, ",");
  return {FindExecutable("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=" + list,
          "--ambient-caps=" + list, "--bounding-set=" + list, "--"};
}

class CapabilitiesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
    if (geteuid() != 0) GTEST_SKIP() << "not root: cannot hand out capabilities";
    if (FindExecutable("setpriv").empty()) GTEST_SKIP() << "setpriv (package util-linux) is not installed";
    caps_ = ReadmeCapabilities(kReadme);
    ASSERT_FALSE(caps_.empty()) << "README.md names no capabilities";
  }
  std::set<std::string> caps_;
};

TEST_F(CapabilitiesTest, TheNamedOnesRunTheKernelPathAsNobody) {
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  ProxyConfig config = SimpleProxyConfig("sockmap", {echo->endpoint()});
  config.command_prefix = AsNobodyWith(caps_);
  auto proxy = ProxyProcess::Start(config);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_NE((*proxy)->ReadyLine().find("datapath=sockmap"), std::string::npos) << (*proxy)->ReadyLine();
  auto fd = Connect((*proxy)->listener(), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EchoResult r = EchoExchange(fd->get(), NextStreamId(), 16 * MiB, DeadlineIn(60s), /*compute_sha=*/true);
  EXPECT_EQ(r.recv.bytes, 16 * MiB) << r.Describe();
  EXPECT_EQ(r.sha_received, r.sha_sent);
  fd->Reset();
  auto m = (*proxy)->Metrics();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GT(ReadByteCounters(*m).kernel_d2u, 0);
  // Every socket option the kernel path sets took: a missing capability would show as a warning here.
  EXPECT_EQ((*proxy)->Stderr().find("buffer of"), std::string::npos) << (*proxy)->Stderr();
}

TEST_F(CapabilitiesTest, EachNecessaryOneIsNeeded) {
  for (const std::string& missing : {"BPF", "PERFMON", "NET_ADMIN"}) {
    ASSERT_TRUE(caps_.count(missing)) << "the README does not name CAP_" << missing;
    std::set<std::string> fewer = caps_;
    fewer.erase(missing);
    ProxyConfig config = SimpleProxyConfig("sockmap", {RefusedEndpoint()});
    config.command_prefix = AsNobodyWith(fewer);
    auto proxy = ProxyProcess::Start(config);
    EXPECT_FALSE(proxy.ok()) << "started without CAP_" << missing;
    EXPECT_TRUE(!proxy.ok() && ProxyProcess::IsBpfUnavailable(proxy.status()))
        << "without CAP_" << missing << ": " << (proxy.ok() ? "started" : proxy.status().ToString());
  }
}

}  // namespace
}  // namespace skproxy::itest
