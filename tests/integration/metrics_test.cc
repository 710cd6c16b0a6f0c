// /metrics through the built binary: the connect latency histogram counts every upstream connect that
// succeeded (and no failed one).
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

}  // namespace
}  // namespace skproxy::itest
