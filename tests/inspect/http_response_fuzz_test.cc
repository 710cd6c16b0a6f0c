// Runs the keep-alive pool's fuzz entry point in every CI run without a fuzzing build: over seeds (responses
// of each framing, requests) and a bounded number of deterministic mutations of them. A crash or a broken
// invariant aborts the test. The real fuzzer: see tests/inspect/CMakeLists.txt.
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/inspect/fuzz_input.h"

namespace skproxy {
namespace {

std::vector<std::string> Seeds() {
  return {
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n3\r\nabc\r\n0\r\nT: x\r\n\r\nextra",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n1\r\na\r\n0\r\n\r\n",
      "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
      "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nbody to close",
      "HTTP/1.1 304\n\n",
      "GET /p HTTP/1.1\r\nHost: a\r\nConnection: close, x\r\nKeep-Alive: 5\r\nContent-Length: 3\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nConnection: x-a, Content-Length, te\r\nX-A: 1\r\nTE: trailers, gzip\r\n"
      "Content-Length: 2\r\n\r\nab",
      "HTTP/1.1 200 OK\r\nConnection: x-b,transfer-encoding\r\nX-B: 2\r\nUpgrade: h2c\r\nTransfer-Encoding: chunked\r\n"
      "\r\n1\r\nz\r\n0\r\n\r\n",
  };
}

TEST(HttpResponseFuzzCorpus, SeedsWithEverySplit) {
  for (const std::string& seed : Seeds())
    for (int split = 0; split < 64; ++split) RunFuzzInput(static_cast<uint8_t>(split), seed);
}

// Byte flips, truncations, insertions and digit damage, for at most a few seconds.
TEST(HttpResponseFuzzCorpus, BoundedMutations) {
  std::mt19937 rng(20261201);
  const auto stop = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  const std::vector<std::string> seeds = Seeds();
  const std::string alphabet = "\r\n:;, 0123456789abcdefxHTTP/1.-";
  int runs = 0;
  for (; runs < 20000 && std::chrono::steady_clock::now() < stop; ++runs) {
    std::string s = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const size_t at = rng() % s.size();
      switch (rng() % 4) {
        case 0: s[at] = static_cast<char>(rng()); break;
        case 1: s.resize(at); break;
        case 2: s.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
        case 3: s[at] = alphabet[rng() % alphabet.size()]; break;
      }
    }
    RunFuzzInput(static_cast<uint8_t>(rng()), s);
  }
  EXPECT_GT(runs, 100);
}

}  // namespace
}  // namespace skproxy
