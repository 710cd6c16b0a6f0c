// The minimum-kernel check, through the binary. This machine's kernel is new enough, so the tests play an
// old one through the SKPROXY_KERNEL_RELEASE test seam (proxy/kernel_version.h): everything else, the BPF
// load that would have worked included, is real.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/integration/test_helpers.h"

namespace skproxy::itest {
namespace {

std::vector<std::string> AsIfOnKernel(const std::string& release) {
  return {FindExecutable("env"), "SKPROXY_KERNEL_RELEASE=" + release};
}

size_t Occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

TEST(StartupChecksTest, SockmapRefusesToStartOnAKernelOlderThanTheMinimum) {
  ProxyConfig c = SimpleProxyConfig("sockmap", {RefusedEndpoint()});
  c.command_prefix = AsIfOnKernel("6.1.0-18-amd64");
  auto proxy = ProxyProcess::Start(c);
  ASSERT_FALSE(proxy.ok()) << "started on a kernel older than 6.2";
  // FailedPrecondition: it exited with status 1 saying the kernel path is unavailable.
  EXPECT_TRUE(ProxyProcess::IsBpfUnavailable(proxy.status())) << proxy.status();
  const std::string message(proxy.status().message());
  EXPECT_NE(message.find("status 1;"), std::string::npos) << message;
  EXPECT_NE(message.find("running kernel 6.1.0-18-amd64 is too old"), std::string::npos) << message;
  EXPECT_NE(message.find("needs Linux 6.2 or newer"), std::string::npos) << message;
}

TEST(StartupChecksTest, AutoFallsBackToUserspaceOnAKernelOlderThanTheMinimum) {
  constexpr int kConnections = 3;
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  ProxyConfig c = SimpleProxyConfig("auto", {echo->endpoint()});
  c.command_prefix = AsIfOnKernel("6.1.0");
  auto proxy = ProxyProcess::Start(c);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_NE((*proxy)->ReadyLine().find("datapath=userspace"), std::string::npos) << (*proxy)->ReadyLine();
  for (int i = 0; i < kConnections; ++i) EXPECT_EQ(ShortEcho((*proxy)->listener(), 1000 + i), "") << i;
  EXPECT_EQ((*proxy)->Metric("skproxy_fallbacks_total", {{"reason", "kernel_too_old"}}), kConnections);
  EXPECT_EQ((*proxy)->Metric("skproxy_fallbacks_total", {{"reason", "kernel_path_unavailable"}}), 0);
  EXPECT_EQ((*proxy)->Metric("skproxy_connections_total", {{"datapath", "userspace"}}), kConnections);
  // The reason is logged once, at start, not per connection.
  const std::string err = (*proxy)->Stderr();
  EXPECT_EQ(Occurrences(err, "kernel path unavailable"), 1u) << err;
  EXPECT_EQ(Occurrences(err, "running kernel 6.1.0 is too old"), 1u) << err;
}

// The seam must not fire by accident: with the real release (new enough here) auto takes the kernel path.
TEST(StartupChecksTest, AutoTakesTheKernelPathOnThisKernel) {
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  if (!RequireSockmap()) GTEST_SKIP() << "not root: the kernel path is not expected to load";
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  auto proxy = ProxyProcess::Start(SimpleProxyConfig("auto", {echo->endpoint()}));
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_NE((*proxy)->ReadyLine().find("datapath=sockmap"), std::string::npos) << (*proxy)->ReadyLine();
  EXPECT_EQ((*proxy)->Stderr().find("too old"), std::string::npos) << (*proxy)->Stderr();
}

}  // namespace
}  // namespace skproxy::itest
