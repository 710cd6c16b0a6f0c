// New connections per second: each cycle connects, sends one small request, reads the response and the
// server's FIN, then closes. The server closes first, so TIME_WAIT lands on the listening sides and the
// client's ephemeral ports stay free for the whole run.
//   skproxy_bench_connrate server ADDR [--threads 2] [--size 64] [--max-seconds 3600]   (echo once, close)
//   skproxy_bench_connrate client ADDR [--seconds 5] [--workers 4] [--max-conns 1000000] [--size 64]
// The client prints one line: "conns_per_s=.. ok=.. errors=.. seconds=.." (+ first_error="..").
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/echo_server.h"
#include "bench/net_util.h"

namespace skproxy::bench {
namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: skproxy_bench_connrate server ADDR [--threads N] [--size BYTES] [--max-seconds S]\n"
               "       skproxy_bench_connrate client ADDR [--seconds S] [--workers K] [--max-conns N] "
               "[--size BYTES]\n");
  return 2;
}

struct Shared {
  std::atomic<int64_t> started{0};
  std::atomic<int64_t> ok{0};
  std::atomic<int64_t> errors{0};
  std::mutex mu;
  std::string first_error;

  void Fail(const absl::Status& s) {
    errors.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.empty()) first_error = s.ToString();
  }
};

absl::Status OneCycle(const SocketAddress& ep, const std::vector<char>& request, std::vector<char>& response) {
  auto fd = ConnectBlocking(ep, std::chrono::milliseconds(2000), std::chrono::milliseconds(2000));
  if (!fd.ok()) return fd.status();
  if (auto s = WriteAll(fd->get(), request.data(), request.size()); !s.ok()) return s;
  if (auto s = ReadExact(fd->get(), response.data(), response.size()); !s.ok()) return s;
  if (response != request) return absl::DataLossError("response differs from the request");
  return ReadUntilEof(fd->get());
}

int Client(const SocketAddress& ep, const Flags& flags) {
  const double seconds = flags.Double("--seconds", 5);
  const int64_t workers = flags.Int("--workers", 4);
  const int64_t max_conns = flags.Int("--max-conns", 1'000'000);
  const int64_t size = flags.Int("--size", 64);
  if (seconds <= 0 || seconds > 600 || workers < 1 || workers > 256 || max_conns < 1 || size < 1 || size > 65536) {
    return Usage();
  }
  if (auto s = RaiseNofileLimit(static_cast<uint64_t>(workers) + 256); !s.ok()) {
    std::fprintf(stderr, "warning: %s\n", s.ToString().c_str());
  }
  Shared shared;
  const int64_t start = NowNs();
  const int64_t deadline = start + static_cast<int64_t>(seconds * 1e9);
  std::vector<std::thread> threads;
  for (int64_t w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      std::vector<char> request(static_cast<size_t>(size), static_cast<char>('A' + w % 26));
      std::vector<char> response(request.size());
      while (NowNs() < deadline && shared.started.fetch_add(1, std::memory_order_relaxed) < max_conns) {
        if (auto s = OneCycle(ep, request, response); s.ok()) {
          shared.ok.fetch_add(1, std::memory_order_relaxed);
        } else {
          shared.Fail(s);
          // Back off briefly so a refused port does not turn into a hot loop of failures.
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = static_cast<double>(NowNs() - start) / 1e9;
  const int64_t ok = shared.ok.load();
  std::printf("conns_per_s=%.0f ok=%lld errors=%lld seconds=%.2f", static_cast<double>(ok) / elapsed,
              static_cast<long long>(ok), static_cast<long long>(shared.errors.load()), elapsed);
  if (!shared.first_error.empty()) std::printf(" first_error=\"%s\"", shared.first_error.c_str());
  std::printf("\n");
  return ok > 0 ? 0 : 1;
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
    if (auto s = flags.OnlyKnown({"--threads", "--size", "--max-seconds"}); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return Usage();
    }
    EchoServerOptions options;
    options.mode = EchoMode::kOnce;
    options.threads = static_cast<int>(flags.Int("--threads", 2));
    options.once_size = static_cast<size_t>(std::max<int64_t>(1, flags.Int("--size", 64)));
    options.max_seconds = flags.Double("--max-seconds", 3600);
    if (auto s = RunEchoServer(*ep, options); !s.ok()) {
      std::fprintf(stderr, "server: %s\n", s.ToString().c_str());
      return 1;
    }
    return 0;
  }
  if (mode == "client") {
    if (auto s = flags.OnlyKnown({"--seconds", "--workers", "--max-conns", "--size"}); !s.ok()) {
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
