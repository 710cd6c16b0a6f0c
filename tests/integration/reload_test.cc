// Reload (SIGHUP and POST /reload) under load: long bulk streams and a stream of short connections on both
// data paths go through ten reloads (listeners added and removed, a listener moved to another cluster) and
// one bad reload in the middle; every byte is checked, nothing fails, and the bad config changes nothing.
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"

namespace skproxy::itest {
namespace {

class ReloadTest : public ::testing::TestWithParam<std::string> {
 protected:
  const std::string& datapath() const { return GetParam(); }
};

double Reloads(const ProxyProcess& proxy, const char* result) {
  return proxy.Metric("skproxy_reloads_total", {{"result", result}});
}

TEST_P(ReloadTest, TenReloadsUnderLoadLoseNothing) {
  constexpr uint64_t kLongBytes = 24 * MiB;
  constexpr int kLongStreams = 4;
  auto source = StartServer(SourceHandler({.bytes = kLongBytes, .rate = 4.0 * MiB}));
  auto echo_a = StartServer(EchoHandler());
  auto echo_b = StartServer(EchoHandler());
  ASSERT_TRUE(source && echo_a && echo_b);
  ProxyConfig config;
  config.datapath = datapath();
  config.listeners = {{"bulk", Loopback4(0), "bulk"}, {"short", Loopback4(0), "a"}};
  config.clusters = {{"bulk", "2s", {source->endpoint()}}, {"a", "2s", {echo_a->endpoint()}},
                     {"b", "2s", {echo_b->endpoint()}}};
  SKPROXY_START(proxy, baseline_fds, config);
  const ProxyConfig base = proxy->config();  // with the ports picked at start
  const SocketAddress extra_address = Loopback4(PickFreePort());

  // Long streams, each reading every byte of its pattern.
  std::atomic<uint64_t> progress[kLongStreams] = {};
  PatternChecker checkers[kLongStreams];
  std::vector<std::future<IoResult>> longs;
  for (int i = 0; i < kLongStreams; ++i) {
    longs.push_back(std::async(std::launch::async, [&, i] {
      auto fd = Connect(base.listeners[0].address, 5s);
      if (!fd.ok()) return IoResult{0, false, ECONNREFUSED, false};
      IoResult r = ReadStream(fd->get(), &checkers[i], DeadlineIn(90s), {}, &progress[i]);
      if (r.eof) shutdown(fd->get(), SHUT_WR);
      return r;
    }));
  }
  // Short connections back to back, each echoing 64 KiB checked byte for byte.
  std::atomic<bool> stop{false};
  std::atomic<int> shorts{0};
  std::vector<std::string> short_errors;
  std::thread short_thread([&] {
    while (!stop.load()) {
      std::string error = ShortEcho(base.listeners[1].address, 64 * KiB, 10s);
      if (!error.empty()) short_errors.push_back(error);
      ++shorts;
    }
  });
  for (auto& p : progress) ASSERT_TRUE(WaitFor([&] { return p.load() > 256 * KiB; }, 20s));

  for (int reload = 1; reload <= 10; ++reload) {
    ProxyConfig next = base;
    // Odd reloads add the "extra" listener, even ones remove it again; "short" moves between clusters.
    if (reload % 2 == 1) next.listeners.push_back({"extra", extra_address, "a"});
    next.listeners[1].cluster = reload % 2 == 1 ? "b" : "a";
    if (reload == 5) {
      // A bad config: refused with its FILE:LINE: key: error, and the one in force stays.
      auto before = HttpRequest(proxy->admin(), "GET", "/config", "", 2s);
      ASSERT_TRUE(before.ok());
      // A third listener naming a cluster that does not exist, inserted at the end of the listeners list.
      std::string bad = next.ToYaml();
      bad.insert(bad.find("clusters:\n"), "  - name: broken\n    address: \"127.0.0.1:1\"\n    cluster: nowhere\n");
      auto refused = proxy->PostReload(bad);
      ASSERT_TRUE(refused.ok()) << refused.status();
      EXPECT_EQ(refused->status, 400);
      EXPECT_NE(refused->body.find(absl::StrCat(proxy->config_path(), ":")), std::string::npos) << refused->body;
      EXPECT_NE(refused->body.find(": listeners[3].cluster: no cluster named 'nowhere'"), std::string::npos)
          << refused->body;
      EXPECT_EQ(Reloads(*proxy, "failure"), 1);
      EXPECT_EQ(proxy->Metric("skproxy_last_reload_success"), 0);
      auto after = HttpRequest(proxy->admin(), "GET", "/config", "", 2s);
      ASSERT_TRUE(after.ok());
      EXPECT_EQ(after->body, before->body) << "a refused reload must change nothing";
    }
    ASSERT_TRUE(proxy->WriteConfigFile(next.ToYaml()).ok());
    if (reload % 2 == 0) {
      proxy->Signal(SIGHUP);
      ASSERT_TRUE(WaitFor([&] { return Reloads(*proxy, "success") == reload; }, 10s))
          << "SIGHUP reload " << reload << " not applied\n" << proxy->StderrTail();
    } else {
      auto r = HttpRequest(proxy->admin(), "POST", "/reload", "", 10s);
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_EQ(r->status, 200) << r->body;
    }
    // What the new config says holds for new connections.
    if (reload % 2 == 1) {
      EXPECT_EQ(ShortEcho(extra_address, 4 * KiB, 5s), "") << "listener added by reload " << reload;
      const size_t b_before = echo_b->accepted();
      EXPECT_EQ(ShortEcho(base.listeners[1].address, 4 * KiB, 5s), "");
      EXPECT_GT(echo_b->accepted(), b_before) << "listener 'short' moved to cluster b by reload " << reload;
    } else {
      EXPECT_TRUE(WaitFor([&] { return !Connect(extra_address, 1s).ok(); }, 3s))
          << "listener removed by reload " << reload << " still accepts";
    }
  }
  EXPECT_EQ(Reloads(*proxy, "success"), 10);
  EXPECT_EQ(proxy->Metric("skproxy_last_reload_success"), 1);

  for (int i = 0; i < kLongStreams; ++i) {
    IoResult r = longs[i].get();
    EXPECT_WHOLE_STREAM(r, checkers[i], kLongBytes);
  }
  stop = true;
  short_thread.join();
  EXPECT_GT(shorts.load(), 10);
  EXPECT_TRUE(short_errors.empty()) << short_errors.size() << " short connections failed, first: "
                                    << short_errors.front();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

INSTANTIATE_TEST_SUITE_P(Datapaths, ReloadTest, ::testing::Values("sockmap", "userspace"), DatapathParamName);

TEST(ReloadRefusalTest, RestartOnlyKeysAreRefused) {
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig("userspace", {echo->endpoint()}));
  ProxyConfig next = proxy->config();
  next.workers = 3;
  auto r = proxy->PostReload(next.ToYaml());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 409);
  EXPECT_NE(r->body.find("workers: cannot change on reload"), std::string::npos) << r->body;
  auto get = HttpRequest(proxy->admin(), "GET", "/reload", "", 2s);
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->status, 405);
  auto config = HttpRequest(proxy->admin(), "GET", "/config", "", 2s);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->status, 200);
  EXPECT_NE(config->headers.find("content-type: application/json"), std::string::npos);
  EXPECT_NE(config->body.find("\"workers\": 0"), std::string::npos) << config->body;
  EXPECT_NE(config->body.find("\"drain_timeout_seconds\": 30"), std::string::npos) << config->body;
  EXPECT_EQ(ShortEcho(proxy->listener(), 4 * KiB, 5s), "");
}

}  // namespace
}  // namespace skproxy::itest
