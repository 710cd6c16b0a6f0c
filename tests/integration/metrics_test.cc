// /metrics through the built binary: the connect latency histogram counts every upstream connect that
// succeeded (and no failed one), and the README documents exactly the metric families /metrics exposes.
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"

namespace skproxy::itest {
namespace {

constexpr char kConnectDuration[] = "skproxy_upstream_connect_duration_seconds";

// A cluster with a refused endpoint next to a live one: every client connection ends up connected once
// (the refused pick is retried on the other), so the histogram must count exactly one per connection.
TEST(MetricsTest, ConnectDurationCountsEverySuccessfulConnect) {
  constexpr int kConnections = 6;
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig("userspace", {RefusedEndpoint(), echo->endpoint()}));
  const LabelFilter backend = {{"cluster", "backend"}};
  EXPECT_EQ(proxy->Metric(absl::StrCat(kConnectDuration, "_count"), backend), 0);
  for (int i = 0; i < kConnections; ++i) ASSERT_EQ(ShortEcho(proxy->listener(), 1000, 5s), "") << "connection " << i;
  EXPECT_EQ(proxy->Metric(absl::StrCat(kConnectDuration, "_count"), backend), kConnections);
  EXPECT_GT(proxy->Metric("skproxy_upstream_connect_failures_total", backend), 0)
      << "the refused endpoint was never tried: the test proves nothing about failures";
  // Every observation lies in (0, 10 s]: the +Inf and 10 s buckets hold them all, the sum is positive.
  EXPECT_EQ(proxy->Metric(absl::StrCat(kConnectDuration, "_bucket"), {{"cluster", "backend"}, {"le", "10"}}),
            kConnections);
  EXPECT_EQ(proxy->Metric(absl::StrCat(kConnectDuration, "_bucket"), {{"cluster", "backend"}, {"le", "+Inf"}}),
            kConnections);
  const double sum = proxy->Metric(absl::StrCat(kConnectDuration, "_sum"), backend);
  EXPECT_GT(sum, 0);
  EXPECT_LT(sum, 10.0 * kConnections);
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

// A metric family's name: a histogram's series (_bucket, _sum, _count) belong to the family they extend.
std::string FamilyOf(const std::string& name) {
  absl::string_view family = name;
  for (const char* suffix : {"_bucket", "_sum", "_count"})
    if (absl::ConsumeSuffix(&family, suffix)) break;
  return std::string(family);
}

// Families exposed only after a fault no test traffic should cause: a data-path syscall failing
// (skproxy_pipe_errors_total), running out of descriptors or memory (skproxy_resource_errors_total), a
// kernel-path connection that could not go into the sockhash (skproxy_fallbacks_total). prometheus-cpp
// prints a labelled family only once one of its series exists, and these get theirs on the first fault.
const std::set<std::string> kNeedFaults = {"skproxy_pipe_errors_total", "skproxy_resource_errors_total",
                                           "skproxy_fallbacks_total"};

// Every family /metrics exposes is in the README, and every skproxy_* name the README mentions (anywhere:
// prose, tables, examples) is exposed. With the kernel path on, so that its families exist too.
TEST(MetricsTest, ReadmeAndMetricsListTheSameNames) {
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  if (geteuid() != 0) GTEST_SKIP() << "not root: the kernel path's metrics need BPF";
  std::ifstream file(std::string(SKPROXY_SOURCE_DIR) + "/README.md");
  ASSERT_TRUE(file) << "cannot read README.md";
  std::stringstream text;
  text << file.rdbuf();
  const std::string readme = text.str();
  std::set<std::string> documented;
  const std::regex name("skproxy_[a-z_]+");
  for (auto it = std::sregex_iterator(readme.begin(), readme.end(), name); it != std::sregex_iterator(); ++it) {
    const std::string found = it->str();
    if (found.back() == '_') continue;  // a prefix ("skproxy_endpoint_*"), not a name
    documented.insert(FamilyOf(found));
  }
  ASSERT_FALSE(documented.empty());

  // A tcp listener and an http one, on auto: bulk moves into the kernel (switches), the http listener routes
  // a request and answers a malformed one itself (route decisions, local responses, inspection failures).
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  ProxyConfig config = SimpleProxyConfig("auto", {echo->endpoint()});
  config.promote_after = "64KiB";
  config.listeners.push_back(ListenerSpec{"edge", Loopback4(0), "backend", false, "protocol: http\n"});
  // A host-name endpoint (through /etc/hosts), for the DNS families.
  config.clusters.push_back(
      ClusterSpec{"named", "2s", {}, absl::StrCat("endpoints: [\"localhost:", echo->endpoint().port(), "\"]\n")});
  SKPROXY_START_OR_SKIP(proxy, config);
  {
    auto fd = Connect(proxy->listener(0), 2s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    EchoResult r = EchoExchange(fd->get(), NextStreamId(), 4 * MiB, DeadlineIn(30s));
    ASSERT_EQ(r.recv.bytes, 4 * MiB) << r.Describe();
  }
  EXPECT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_datapath_switches_total") > 0; }, 5s))
      << "the bulk echo was never moved into the kernel";
  {
    auto fd = Connect(proxy->listener(1), 2s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    const std::string bad = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
    ASSERT_EQ(SendAll(fd->get(), bad.data(), bad.size(), DeadlineIn(5s)).bytes, bad.size());
    char status[12] = {};
    ASSERT_EQ(RecvExact(fd->get(), status, sizeof(status), DeadlineIn(5s)).bytes, sizeof(status));
    EXPECT_EQ(std::string(status, sizeof(status)), "HTTP/1.1 400");
  }
  EXPECT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_local_responses_total") > 0; }, 5s));

  absl::StatusOr<MetricSamples> samples = proxy->Metrics();
  ASSERT_TRUE(samples.ok()) << samples.status();
  std::set<std::string> exposed;
  for (const auto& [key, value] : *samples) {
    absl::StatusOr<SampleKey> sample = SplitSample(key);
    ASSERT_TRUE(sample.ok()) << sample.status();
    exposed.insert(FamilyOf(sample->name));
  }
  std::set<std::string> undocumented, missing;
  for (const std::string& family : exposed)
    if (!documented.count(family)) undocumented.insert(family);
  for (const std::string& family : documented)
    if (!exposed.count(family) && !kNeedFaults.count(family)) missing.insert(family);
  EXPECT_TRUE(undocumented.empty()) << "exposed by /metrics, not in README.md: " << absl::StrJoin(undocumented, ", ");
  EXPECT_TRUE(missing.empty()) << "in README.md, not exposed by /metrics: " << absl::StrJoin(missing, ", ");
  for (const std::string& family : kNeedFaults)
    EXPECT_TRUE(documented.count(family)) << family << " is exposed after a fault but not in README.md";
}

}  // namespace
}  // namespace skproxy::itest
