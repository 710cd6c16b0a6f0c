// Runs the inspect fuzz entry point in every CI run without a fuzzing build: over seeds (real hellos,
// requests, PROXY headers) and a bounded number of deterministic mutations of them. A crash or a broken
// invariant aborts the test. The real fuzzer: see tests/inspect/CMakeLists.txt.
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "config/config.h"
#include "gtest/gtest.h"
#include "tests/inspect/fuzz_input.h"
#include "proxy/inspect/proxy_protocol.h"
#include "tests/inspect/client_hello.h"

namespace skproxy {
namespace {

std::vector<std::string> Seeds() {
  const SocketAddress a = *ParseSocketAddress("192.0.2.1:1"), b = *ParseSocketAddress("[2001:db8::1]:2");
  return {
      "GET /p/x HTTP/1.1\r\nHost: www.a.com\r\n\r\n",
      "POST http://x.a.com:80/p?q HTTP/1.1\r\nHost: y\r\nContent-Length: 3\r\n\r\nabc",
      "CONNECT x.a.com:443 HTTP/1.1\r\nHost: x.a.com:443\r\n\r\n",
      "GET / HTTP/1.0\n\n",
      itest::OpenSslClientHello("x.a.com"),
      itest::OpenSslClientHello(""),
      itest::OpenSslClientHello("b.a.com", 3000),
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\nHost: q.a.com\r\n\r\n",
      "PROXY TCP6 ::1 ::2 1 2\r\nGET / HTTP/1.1\r\nHost: q.a.com\r\n\r\n",
      "PROXY UNKNOWN\r\n",
      BuildProxyHeader(config::ProxyProtocolVersion::kV2, a, a) + itest::OpenSslClientHello("x.a.com"),
      BuildProxyHeader(config::ProxyProtocolVersion::kV2, b, b),
      BuildProxyHeader(config::ProxyProtocolVersion::kV2, a, b),
  };
}

TEST(InspectFuzzCorpus, SeedsWithEverySplit) {
  for (const std::string& seed : Seeds())
    for (int split = 0; split < 64; split += 7) RunFuzzInput(static_cast<uint8_t>(split), seed);
}

// Byte flips, truncations, insertions and length-field damage: a fixed number of inputs (the same ones every
// run, from the seed), so the sanitized build (tests/run-sanitized.sh, several times slower) checks as many
// as the ordinary one. The time bound only stops a hang.
TEST(InspectFuzzCorpus, BoundedMutations) {
  constexpr int kRuns = 20000;
  std::mt19937 rng(20261201);
  const auto stop = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  const std::vector<std::string> seeds = Seeds();
  int runs = 0;
  for (; runs < kRuns && std::chrono::steady_clock::now() < stop; ++runs) {
    std::string s = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const size_t at = rng() % s.size();
      switch (rng() % 4) {
        case 0: s[at] = static_cast<char>(rng()); break;
        case 1: s.resize(at); break;
        case 2: s.insert(at, 1 + rng() % 8, static_cast<char>(rng())); break;
        case 3: s[at] = static_cast<char>(0xff); break;
      }
    }
    RunFuzzInput(static_cast<uint8_t>(rng()), s);
  }
  EXPECT_EQ(runs, kRuns) << "stopped by the time bound";
}

}  // namespace
}  // namespace skproxy
