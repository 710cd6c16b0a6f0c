// ParseHttpStatus, the one parser the health checker has: well-formed status lines, every prefix of them,
// and a bounded run of random and mutated inputs (the CI form of fuzzing it: it must classify everything,
// never read past the input, and only ever return -1, 0 or a code in 100..999).
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "proxy/health_checker.h"

namespace skproxy {
namespace {

TEST(ParseHttpStatus, ReadsTheCode) {
  EXPECT_EQ(ParseHttpStatus("HTTP/1.1 200 OK\r\n"), 200);
  EXPECT_EQ(ParseHttpStatus("HTTP/1.0 503 Service Unavailable\r\n\r\n"), 503);
  EXPECT_EQ(ParseHttpStatus("HTTP/1.1 204\r\n"), 204);  // the reason phrase may be empty
}

TEST(ParseHttpStatus, NeedsMoreOrRefuses) {
  const std::string line = "HTTP/1.1 200 OK\r\n";
  for (size_t n = 0; n < 13; ++n) EXPECT_EQ(ParseHttpStatus(line.substr(0, n)), -1) << n;
  EXPECT_EQ(ParseHttpStatus("SSH-2.0-OpenSSH\r\n"), 0);
  EXPECT_EQ(ParseHttpStatus("HTTP/2 200\r\n"), 0);
  EXPECT_EQ(ParseHttpStatus("HTTP/1.1 20 OK\r\n"), 0);
  EXPECT_EQ(ParseHttpStatus("HTTP/1.1 2000 OK\r\n"), 0);
  EXPECT_EQ(ParseHttpStatus("HTTP/1.1 099 OK\r\n"), 0);
  EXPECT_EQ(ParseHttpStatus("HTTP/1.1  200 OK\r\n"), 0);
  EXPECT_EQ(ParseHttpStatus(std::string_view("HTTP/1.1 2\0000 OK", 15)), 0);
}

TEST(ParseHttpStatus, BoundedFuzz) {
  std::mt19937 random(12345);
  const std::string seeds[] = {"HTTP/1.1 200 OK\r\n", "HTTP/1.0 404 Not Found\r\n", "HTTP/1.1 999\r"};
  for (int i = 0; i < 200000; ++i) {
    std::string input = seeds[i % 3];
    const int mutations = static_cast<int>(random() % 4);
    for (int m = 0; m < mutations; ++m) {
      const size_t at = random() % (input.size() + 1);
      switch (random() % 3) {
        case 0:
          if (at < input.size()) input[at] = static_cast<char>(random());
          break;
        case 1:
          input.insert(at, 1, static_cast<char>(random()));
          break;
        default:
          input.resize(at);
      }
    }
    // A copy on the heap of exactly its size, so a read past the end is caught by a sanitizer build.
    const std::unique_ptr<char[]> exact(new char[input.size()]);
    std::copy(input.begin(), input.end(), exact.get());
    const int status = ParseHttpStatus(std::string_view(exact.get(), input.size()));
    ASSERT_TRUE(status == -1 || status == 0 || (status >= 100 && status <= 999)) << input;
  }
}

}  // namespace
}  // namespace skproxy
