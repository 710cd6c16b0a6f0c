// 64-byte ping-pong over one TCP connection: the latency a proxy adds per message.
//   skproxy_bench_pingpong server ADDR [--threads 1] [--max-seconds 3600]
//   skproxy_bench_pingpong client ADDR [--count 20000] [--warmup 1000] [--size 64] [--max-seconds 60]
// The client prints one line: "p50_us=.. p99_us=.. mean_us=.. count=..". Round trips before the
// warm-up count are not timed (first-packet and cache effects belong to neither proxy).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

#include "bench/echo_server.h"
#include "bench/net_util.h"

namespace skproxy::bench {
namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: skproxy_bench_pingpong server ADDR [--threads N] [--max-seconds S]\n"
               "       skproxy_bench_pingpong client ADDR [--count N] [--warmup N] [--size BYTES] "
               "[--max-seconds S]\n");
  return 2;
}

int Client(const SocketAddress& ep, const Flags& flags) {
  const int64_t count = flags.Int("--count", 20000);
  const int64_t warmup = flags.Int("--warmup", 1000);
  const int64_t size = flags.Int("--size", 64);
  const double max_seconds = flags.Double("--max-seconds", 60);
  if (count < 1 || warmup < 0 || size < 1 || size > 65536) return Usage();
  const int64_t deadline = NowNs() + static_cast<int64_t>(max_seconds * 1e9);

  auto fd = ConnectBlocking(ep, std::chrono::milliseconds(5000), std::chrono::milliseconds(5000));
  if (!fd.ok()) {
    std::fprintf(stderr, "connect: %s\n", fd.status().ToString().c_str());
    return 1;
  }
  std::vector<char> out(static_cast<size_t>(size)), in(static_cast<size_t>(size));
  std::vector<double> us;
  us.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < warmup + count; ++i) {
    if (NowNs() > deadline) {
      std::fprintf(stderr, "deadline of %.0f s reached after %lld round trips\n", max_seconds,
                   static_cast<long long>(i));
      return 1;
    }
    // A distinct pattern per message, so an echo of the wrong (stale) message is caught.
    std::memset(out.data(), static_cast<int>('a' + i % 26), out.size());
    const int64_t t0 = NowNs();
    if (auto s = WriteAll(fd->get(), out.data(), out.size()); !s.ok()) {
      std::fprintf(stderr, "round trip %lld: %s\n", static_cast<long long>(i), s.ToString().c_str());
      return 1;
    }
    if (auto s = ReadExact(fd->get(), in.data(), in.size()); !s.ok()) {
      std::fprintf(stderr, "round trip %lld: %s\n", static_cast<long long>(i), s.ToString().c_str());
      return 1;
    }
    const int64_t t1 = NowNs();
    if (in != out) {
      std::fprintf(stderr, "round trip %lld: echo differs from what was sent\n", static_cast<long long>(i));
      return 1;
    }
    if (i >= warmup) us.push_back(static_cast<double>(t1 - t0) / 1000.0);
  }
  double sum = 0;
  for (double v : us) sum += v;
  std::sort(us.begin(), us.end());
  auto pct = [&us](double p) {
    size_t idx = static_cast<size_t>(p * static_cast<double>(us.size() - 1) + 0.5);
    return us[std::min(idx, us.size() - 1)];
  };
  std::printf("p50_us=%.1f p99_us=%.1f mean_us=%.1f count=%zu\n", pct(0.50), pct(0.99),
              sum / static_cast<double>(us.size()), us.size());
  return 0;
}

int Main(int argc, char** argv) {
  if (argc < 3) return Usage();
  const std::string_view mode = argv[1];
  auto ep = ParseSocketAddress(argv[2]);
  if (!ep.ok()) {
    std::fprintf(stderr, "%s\n", ep.status().ToString().c_str());
    return 2;
  }
  Flags flags(argc, argv, 3);
  if (mode == "server") {
    if (auto s = flags.OnlyKnown({"--threads", "--max-seconds"}); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return Usage();
    }
    EchoServerOptions options;
    options.mode = EchoMode::kStream;
    options.threads = static_cast<int>(flags.Int("--threads", 1));
    options.max_seconds = flags.Double("--max-seconds", 3600);
    if (auto s = RunEchoServer(*ep, options); !s.ok()) {
      std::fprintf(stderr, "server: %s\n", s.ToString().c_str());
      return 1;
    }
    return 0;
  }
  if (mode == "client") {
    if (auto s = flags.OnlyKnown({"--count", "--warmup", "--size", "--max-seconds"}); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return Usage();
    }
    return Client(*ep, flags);
  }
  return Usage();
}

}  // namespace
}  // namespace skproxy::bench

int main(int argc, char** argv) { return skproxy::bench::Main(argc, argv); }
