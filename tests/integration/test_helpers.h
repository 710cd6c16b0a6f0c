// Pieces shared by the integration test files: the data-path parameter, proxy start with an fd baseline,
// and a short-connection echo that reports the first bytes exactly.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/upstreams.h"

namespace skproxy::itest {

inline std::string DatapathParamName(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

// SKPROXY_START without its check that the ready line names the configured data path (for `auto`, which
// names the path it resolved to).
#define SKPROXY_START_ANY_PATH(proxy, baseline_fds, cfg)              \
  SKPROXY_START_OR_SKIP(proxy, cfg);                                  \
  int baseline_fds = 0;                                               \
  {                                                                   \
    auto fds_ = proxy->FdCount();                                     \
    ASSERT_TRUE(fds_.ok()) << fds_.status();                          \
    baseline_fds = *fds_;                                             \
  }                                                                   \
  (void)baseline_fds  /* a test that does not compare descriptors */

// Starts `config` into `proxy` (skipping when BPF cannot be loaded) and records its fd count right after
// "ready" as `baseline_fds`, before any connection or scrape.
#define SKPROXY_START(proxy, baseline_fds, cfg)                       \
  SKPROXY_START_ANY_PATH(proxy, baseline_fds, cfg);                   \
  EXPECT_NE(proxy->ReadyLine().find("datapath=" + proxy->config().datapath), std::string::npos) \
      << "ready line: " << proxy->ReadyLine();

#define EXPECT_PROXY_IDLE(proxy, baseline_fds)                                         \
  do {                                                                                 \
    absl::Status idle_ = WaitForProxyIdle(*proxy, baseline_fds);                       \
    EXPECT_TRUE(idle_.ok()) << idle_ << "\nproxy stderr:\n" << proxy->StderrTail();    \
  } while (0)

// A stream read to its end: exactly `expected_bytes`, ended by EOF, every byte in the counter pattern.
#define EXPECT_WHOLE_STREAM(r, checker, expected_bytes)         \
  do {                                                          \
    EXPECT_EQ((r).bytes, (expected_bytes)) << (r).Describe();   \
    EXPECT_TRUE((r).eof) << (r).Describe();                     \
    EXPECT_TRUE((checker).ok()) << (checker).Describe();        \
  } while (0)

inline std::string HexHead(const uint8_t* p, size_t n, size_t max = 16) {
  std::string s;
  char b[4];
  for (size_t i = 0; i < n && i < max; i++) {
    snprintf(b, sizeof b, "%02x ", p[i]);
    s += b;
  }
  return s;
}

// One short connection: connect, write n pattern bytes at once (before anything could have been read or
// connected upstream), SHUT_WR, read the echo to EOF, compare every byte. Empty string on success.
inline std::string ShortEcho(const SocketAddress& ep, uint64_t n, Millis timeout = 10s) {
  Deadline deadline = DeadlineIn(timeout);
  auto fd = Connect(ep, timeout);
  if (!fd.ok()) return std::string(fd.status().message());
  uint32_t id = NextStreamId();
  std::vector<uint8_t> want(n), got(n + 1);
  FillPattern(id, 0, want.data(), n);
  IoResult w = SendAll(fd->get(), want.data(), n, deadline);
  if (w.bytes != n) return "send: " + w.Describe();
  shutdown(fd->get(), SHUT_WR);
  IoResult r = RecvExact(fd->get(), got.data(), n + 1, deadline);
  if (r.bytes != n || !r.eof) return absl::StrCat("echo of ", n, " bytes: got ", r.Describe());
  for (uint64_t i = 0; i < n; i++) {
    if (got[i] != want[i])
      return absl::StrCat("byte ", i, " of ", n, " differs; first bytes got [", HexHead(got.data(), n),
                          "] want [", HexHead(want.data(), n), "]");
  }
  return "";
}

// Bytes moved per direction, from the proxy's counters.
struct ByteCounters {
  double kernel_d2u = 0, user_d2u = 0, kernel_u2d = 0, user_u2d = 0;
  double d2u() const { return kernel_d2u + user_d2u; }
  double u2d() const { return kernel_u2d + user_u2d; }
  std::string Describe() const {
    return absl::StrCat("downstream_to_upstream kernel=", kernel_d2u, " user=", user_d2u,
                        "; upstream_to_downstream kernel=", kernel_u2d, " user=", user_u2d);
  }
};
inline ByteCounters ReadByteCounters(const MetricSamples& m) {
  ByteCounters c;
  c.kernel_d2u = SumMetric(m, "skproxy_bytes_total", {{"direction", "downstream_to_upstream"}, {"path", "kernel"}});
  c.user_d2u = SumMetric(m, "skproxy_bytes_total", {{"direction", "downstream_to_upstream"}, {"path", "user"}});
  c.kernel_u2d = SumMetric(m, "skproxy_bytes_total", {{"direction", "upstream_to_downstream"}, {"path", "kernel"}});
  c.user_u2d = SumMetric(m, "skproxy_bytes_total", {{"direction", "upstream_to_downstream"}, {"path", "user"}});
  return c;
}

}  // namespace skproxy::itest
