// Operating the process: SIGTERM drains (in-flight streams finish byte-exact; what outlives drain_timeout is
// reset, never ended with a FIN), a worker whose event loop fails takes its listeners down and /ready says
// so, the admin endpoints answer as documented, and the sockhash gauge follows the connections.
#include <signal.h>
#include <sys/socket.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/integration/connections_page.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"

namespace skproxy::itest {
namespace {

class OperationsTest : public ::testing::TestWithParam<std::string> {
 protected:
  const std::string& datapath() const { return GetParam(); }
};

int ReadyStatus(const ProxyProcess& proxy) {
  auto r = HttpRequest(proxy.admin(), "GET", "/ready", "", 2s);
  return r.ok() ? r->status : -1;
}

// A client that reads one whole pattern stream from the proxy, then closes.
struct StreamReader {
  std::atomic<uint64_t> progress{0};
  PatternChecker checker;
  std::future<IoResult> result;

  void Start(const SocketAddress& listener, Millis timeout) {
    result = std::async(std::launch::async, [this, listener, timeout] {
      auto fd = Connect(listener, 5s);
      if (!fd.ok()) return IoResult{0, false, ECONNREFUSED, false};
      IoResult r = ReadStream(fd->get(), &checker, DeadlineIn(timeout), {}, &progress);
      if (r.eof) shutdown(fd->get(), SHUT_WR);
      return r;
    });
  }
};

// SIGTERM with transfers in flight: the listener stops accepting at once, /ready turns 503, every stream
// still finishes byte-exact with its EOF, and the process exits 0 once they are done.
TEST_P(OperationsTest, DrainLetsInFlightTransfersFinishByteExact) {
  constexpr uint64_t kBytes = 12 * MiB;
  constexpr int kStreams = 3;
  auto source = StartServer(SourceHandler({.bytes = kBytes, .rate = 4.0 * MiB}));
  ASSERT_TRUE(source);
  ProxyConfig config = SimpleProxyConfig(datapath(), {source->endpoint()});
  config.drain_timeout = "60s";
  SKPROXY_START(proxy, baseline_fds, config);
  ASSERT_EQ(ReadyStatus(*proxy), 200);

  StreamReader readers[kStreams];
  for (auto& reader : readers) reader.Start(proxy->listener(), 60s);
  for (auto& reader : readers)
    ASSERT_TRUE(WaitFor([&] { return reader.progress.load() > 512 * KiB; }, 20s)) << "no bytes before SIGTERM";

  proxy->Signal(SIGTERM);
  EXPECT_TRUE(WaitFor([&] { return ReadyStatus(*proxy) == 503; }, 3s)) << "/ready must turn 503 while draining";
  EXPECT_TRUE(WaitFor([&] { return !Connect(proxy->listener(), 1s).ok(); }, 3s))
      << "a draining proxy must stop accepting";

  for (auto& reader : readers) {
    IoResult r = reader.result.get();
    EXPECT_WHOLE_STREAM(r, reader.checker, kBytes);
  }
  absl::StatusOr<int> status = proxy->WaitForExit(20s);
  ASSERT_TRUE(status.ok()) << status.status() << "\n" << proxy->StderrTail();
  EXPECT_EQ(*status, 0) << proxy->StderrTail();
  EXPECT_NE(proxy->Stderr().find("drained, every connection finished"), std::string::npos) << proxy->StderrTail();
}

// What is still running when drain_timeout passes is reset on both sides: the client sees ECONNRESET, not
// an EOF that would make a cut stream look complete, and the upstream sees its peer go away too.
TEST_P(OperationsTest, DrainTimeoutResetsWhatIsLeftNeverAFin) {
  constexpr uint64_t kBytes = 256 * MiB;  // at 1 MiB/s: far from done when the drain ends
  auto source = StartServer(SourceHandler({.bytes = kBytes, .rate = 1.0 * MiB}));
  ASSERT_TRUE(source);
  ProxyConfig config = SimpleProxyConfig(datapath(), {source->endpoint()});
  config.drain_timeout = "1s";
  SKPROXY_START(proxy, baseline_fds, config);

  StreamReader reader;
  reader.Start(proxy->listener(), 30s);
  ASSERT_TRUE(WaitFor([&] { return reader.progress.load() > 64 * KiB; }, 20s));
  const auto signalled = Clock::now();
  proxy->Signal(SIGTERM);
  IoResult r = reader.result.get();
  EXPECT_FALSE(r.eof) << "a stream cut by the drain must not end with a FIN: " << r.Describe();
  EXPECT_EQ(r.error, ECONNRESET) << r.Describe();
  EXPECT_LT(r.bytes, kBytes);
  EXPECT_TRUE(reader.checker.ok()) << reader.checker.Describe();
  EXPECT_GE(SecondsSince(signalled), 0.9) << "reset before drain_timeout";
  absl::StatusOr<int> status = proxy->WaitForExit(10s);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, 0) << proxy->StderrTail();
  EXPECT_NE(proxy->Stderr().find("drain timeout: 1 connections reset"), std::string::npos) << proxy->StderrTail();
  ASSERT_TRUE(source->WaitForFinished(1, 10s));
  ConnStats upstream = source->Finished()[0];
  EXPECT_NE(upstream.error, 0) << "the upstream must see a reset: " << upstream.Describe();
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// One JSON line per connection, with its bytes exact, and a fresh file after SIGUSR1 (logrotate).
TEST_P(OperationsTest, AccessLogHasALinePerConnectionAndReopensOnSigusr1) {
  constexpr uint64_t kBytes = 2 * MiB;
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  ProxyConfig config = SimpleProxyConfig(datapath(), {echo->endpoint()});
  const std::string path = absl::StrCat(::testing::TempDir(), "skproxy-access-", getpid(), "-", datapath(), ".log");
  unlink(path.c_str());
  unlink((path + ".1").c_str());
  config.access_log = path;
  // "web" (tcp) also closes idle connections; "edge" (http) routes /api/ to route "api", the rest to its default.
  config.listeners[0].extra = "idle_timeout: 1s\n";
  config.listeners.push_back(ListenerSpec{"edge", Loopback4(0), "backend", false,
                                          "protocol: http\nroutes:\n  - name: api\n"
                                          "    match: { path_prefix: \"/api/\" }\n    cluster: backend\n"});
  SKPROXY_START(proxy, baseline_fds, config);
  for (int i = 0; i < 3; ++i) {
    auto fd = Connect(proxy->listener(), 2s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    EchoResult r = EchoExchange(fd->get(), NextStreamId(), kBytes, DeadlineIn(60s));
    ASSERT_EQ(r.recv.bytes, kBytes) << r.Describe();
  }
  ASSERT_TRUE(WaitFor([&] { return ReadLines(path).size() == 3; }, 10s)) << ReadLines(path).size();
  for (const std::string& line : ReadLines(path)) {
    EXPECT_EQ(line.front(), '{') << line;
    EXPECT_EQ(line.back(), '}') << line;
    for (const std::string& field :
         {std::string("\"listener\":\"web\""), std::string("\"cluster\":\"backend\""),
          absl::StrCat("\"endpoint\":\"", echo->endpoint().ToString(), "\""),
          absl::StrCat("\"upstream\":\"", echo->endpoint().ToString(), "\""), std::string("\"route\":null"),
          absl::StrCat("\"bytes_downstream_to_upstream\":", kBytes),
          absl::StrCat("\"bytes_upstream_to_downstream\":", kBytes), std::string("\"end\":\"client_close\""),
          std::string("\"client\":\"127.0.0.1:"), std::string("\"start\":\"20")}) {
      EXPECT_NE(line.find(field), std::string::npos) << field << " missing in " << line;
    }
  }
  ASSERT_EQ(rename(path.c_str(), (path + ".1").c_str()), 0);
  proxy->Signal(SIGUSR1);
  // The reopen happens on the writer thread: a connection made after it lands in the new file. Until the
  // signal is handled a line may still go to the renamed file, so keep making connections until one does.
  ASSERT_TRUE(WaitFor(
      [&] {
        EXPECT_EQ(ShortEcho(proxy->listener(), 1000, 5s), "");
        return !ReadLines(path).empty();
      },
      10s, 100ms));
  EXPECT_GE(ReadLines(path + ".1").size(), 3u);
  EXPECT_NE(ReadLines(path)[0].find("\"bytes_downstream_to_upstream\":1000"), std::string::npos) << ReadLines(path)[0];

  // The route an http listener chose: by name, or "default".
  auto line_with = [&](const std::string& a, const std::string& b) -> std::string {
    for (const std::string& line : ReadLines(path))
      if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) return line;
    return "";
  };
  for (const std::string& target : {std::string("/api/users"), std::string("/")}) {
    auto fd = Connect(proxy->listener(1), 2s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    const std::string request = absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: example.com\r\n\r\n");
    ASSERT_EQ(SendAll(fd->get(), request.data(), request.size(), DeadlineIn(5s)).bytes, request.size());
    std::string echoed(request.size(), '\0');
    ASSERT_EQ(RecvExact(fd->get(), echoed.data(), echoed.size(), DeadlineIn(5s)).bytes, request.size());
    EXPECT_EQ(echoed, request);
  }
  for (const char* route : {"\"route\":\"api\"", "\"route\":\"default\""}) {
    EXPECT_TRUE(WaitFor([&] { return !line_with("\"listener\":\"edge\"", route).empty(); }, 10s))
        << route << " missing; log:\n" << absl::StrJoin(ReadLines(path), "\n");
    EXPECT_NE(line_with(route, "\"upstream\":\"" + echo->endpoint().ToString() + "\"").find("\"cluster\":\"backend\""),
              std::string::npos);
  }

  // A connection the idle timeout closed ends with "timeout".
  auto idle = Connect(proxy->listener(0), 2s);
  ASSERT_TRUE(idle.ok()) << idle.status();
  char byte = 'x';
  ASSERT_EQ(send(idle->get(), &byte, 1, 0), 1);
  ASSERT_EQ(RecvExact(idle->get(), &byte, 1, DeadlineIn(5s)).bytes, 1u);
  EXPECT_TRUE(WaitForPeerClose(idle->get(), DeadlineIn(5s)).closed) << "idle_timeout did not close the connection";
  EXPECT_TRUE(WaitFor([&] { return !line_with("\"end\":\"timeout\"", "\"bytes_downstream_to_upstream\":1,").empty(); }, 10s))
      << absl::StrJoin(ReadLines(path), "\n");
}

// The status page in a real browser: headless Chromium loads "/" from a proxy carrying traffic, runs the
// page's script for a few (virtual) seconds, and the rendered DOM must show what the script computed.
TEST(StatusPageTest, RendersLiveGraphsAndTablesInHeadlessChromium) {
  std::string chromium = FindExecutable("chromium");
  if (chromium.empty()) chromium = FindExecutable("chromium-browser");
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (deploy/install-deps.sh installs it)";
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig("sockmap", {echo->endpoint()}));
  auto page = HttpRequest(proxy->admin(), "GET", "/", "", 2s);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->headers.find("content-type: text/html"), std::string::npos);
  EXPECT_EQ(page->body.find("<script src"), std::string::npos) << "the page must be self-contained";
  EXPECT_EQ(page->body.find("<link"), std::string::npos) << "the page must be self-contained";

  // Two connections stay open; bulk echoes run on other connections while the browser watches.
  std::vector<UniqueFd> open;
  for (int i = 0; i < 2; ++i) {
    auto fd = Connect(proxy->listener(), 2s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    open.push_back(std::move(*fd));
  }
  std::atomic<bool> stop{false};
  std::thread traffic([&] {
    const Deadline end = DeadlineIn(60s);
    while (!stop.load() && Clock::now() < end) {
      auto fd = Connect(proxy->listener(), 2s);
      if (!fd.ok()) break;
      EchoExchange(fd->get(), NextStreamId(), 32 * MiB, DeadlineIn(20s));
    }
  });
  ASSERT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_connections_active") >= 3; }, 5s));
  CommandResult browser = RunCommand(
      {chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
       "--user-data-dir=" + ::testing::TempDir() + "skproxy-chromium-" + std::to_string(getpid()),
       "--virtual-time-budget=8000", "--dump-dom", absl::StrCat("http://", proxy->admin().ToString(), "/")},
      90s);
  stop = true;
  traffic.join();
  ASSERT_EQ(browser.exit_code, 0) << browser.Describe();
  const std::string& dom = browser.out;
  auto attribute = [&](const std::string& id, const std::string& name) -> std::string {
    size_t at = dom.find("id=\"" + id + "\"");
    if (at == std::string::npos) return "<no element " + id + ">";
    size_t end = dom.find('>', at);
    size_t a = dom.find(name + "=\"", at);
    if (a == std::string::npos || a > end) return "<no " + name + ">";
    a += name.size() + 2;
    return dom.substr(a, dom.find('"', a) - a);
  };
  EXPECT_GE(std::atoi(attribute("updates", "data-count").c_str()), 3) << "the script must have refreshed the page";
  EXPECT_EQ(attribute("ready", "data-ready"), "true");
  // Connections open: "kernel / user", at least the two idle ones plus the bulk one.
  const std::string conns = attribute("g-conns", "data-last");
  EXPECT_GE(std::atof(conns.c_str()) + std::atof(conns.substr(conns.find('/') + 1).c_str()), 2) << conns;
  const std::string rates = attribute("g-bytes", "data-last");
  EXPECT_NE(rates.find("/s"), std::string::npos) << rates;
  // The last sample may fall between two bulk echoes; the graph's peak must show the bytes moved.
  const std::string peak = attribute("g-bytes", "data-peak");
  EXPECT_NE(peak.find("/s"), std::string::npos) << peak;
  EXPECT_NE(peak.substr(0, 5), "0 B/s") << "bytes moved while the page watched must show: " << peak;
  EXPECT_NE(dom.find("<td>backend</td><td>" + echo->endpoint().ToString() + "</td><td>1</td><td>healthy</td>"),
            std::string::npos)
      << "cluster table missing the endpoint, its weight or its health:\n" << dom.substr(0, 4000);
  EXPECT_NE(dom.find("<td>web</td><td>" + proxy->listener().ToString() + "</td>"), std::string::npos);
}

// Sends `n` bytes in 64 KiB round trips through an echo upstream and reads each back; the connection stays open.
::testing::AssertionResult EchoRoundTrips(int fd, uint64_t n) {
  std::string chunk(64 * KiB, 'c'), back(64 * KiB, '\0');
  for (uint64_t done = 0; done < n; done += chunk.size()) {
    IoResult sent = SendAll(fd, chunk.data(), chunk.size(), DeadlineIn(10s));
    if (sent.bytes != chunk.size()) return ::testing::AssertionFailure() << "send: " << sent.Describe();
    IoResult got = RecvExact(fd, back.data(), back.size(), DeadlineIn(10s));
    if (got.bytes != back.size()) return ::testing::AssertionFailure() << "echo: " << got.Describe();
  }
  return ::testing::AssertionSuccess();
}

// GET /connections lists every open connection, on either worker, with its listener, cluster, client,
// upstream endpoint, data path and exact bytes each way; bytes and age grow; a cursor pages through all of
// them in accept order within the limit; a bad query is a 400.
TEST_P(OperationsTest, ConnectionsListsOpenConnectionsPaged) {
  constexpr uint64_t kFirst = 64 * KiB;
  auto web_echo = StartServer(EchoHandler());
  auto api_echo = StartServer(EchoHandler());
  ASSERT_TRUE(web_echo && api_echo);
  ProxyConfig config = SimpleProxyConfig(datapath(), {web_echo->endpoint()});
  config.workers = 2;
  config.listeners.push_back(ListenerSpec{"api", Loopback4(0), "apis"});
  config.clusters.push_back(ClusterSpec{"apis", "2s", {api_echo->endpoint()}});
  SKPROXY_START(proxy, baseline_fds, config);

  struct Client {
    UniqueFd fd;
    std::string listener, cluster, endpoint, local;
  };
  std::vector<Client> clients;
  for (int i = 0; i < 5; ++i) {
    const bool web = i < 3;
    auto fd = Connect(proxy->listener(web ? 0 : 1), 2s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    ASSERT_TRUE(EchoRoundTrips(fd->get(), kFirst));
    sockaddr_storage local{};
    socklen_t length = sizeof(local);
    ASSERT_EQ(getsockname(fd->get(), reinterpret_cast<sockaddr*>(&local), &length), 0);
    clients.push_back({std::move(*fd), web ? "web" : "api", web ? "backend" : "apis",
                       (web ? web_echo : api_echo)->endpoint().ToString(),
                       SocketAddressFrom(reinterpret_cast<sockaddr*>(&local), length).ToString()});
  }

  auto find = [](const ConnectionsPage& page, const std::string& client) -> std::string {
    for (const std::string& c : page.connections)
      if (JsonField(c, "client") == client) return c;
    return "";
  };
  // Per data path: on the kernel path the echo (upstream to client) is all redirected; the client's first
  // bytes may reach the proxy before its socket is in the sockhash and then cross in user space
  // (docs/kernel-datapath.md), so only their total is exact. On the user-space path every byte is user space's.
  auto bytes_are = [&](const std::string& c, uint64_t n) {
    const std::string per_path =
        datapath() == "sockmap"
            ? absl::StrCat(",\"upstream_to_downstream\":", n, "},\"user_bytes\":")
            : absl::StrCat("\"user_bytes\":{\"downstream_to_upstream\":", n, ",\"upstream_to_downstream\":", n, "}");
    return JsonField(c, "bytes_downstream_to_upstream") == absl::StrCat(n) &&
           JsonField(c, "bytes_upstream_to_downstream") == absl::StrCat(n) && c.find(per_path) != std::string::npos;
  };
  ConnectionsPage all;
  // The kernel's counts are read as the verdict left them: wait until every echo is counted.
  EXPECT_TRUE(WaitFor(
      [&] {
        all = GetConnections(proxy->admin());
        if (all.connections.size() != clients.size()) return false;
        for (const Client& client : clients)
          if (!bytes_are(find(all, client.local), kFirst)) return false;
        return true;
      },
      5s))
      << all.body;
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(all.total, "5") << all.body;
  EXPECT_EQ(all.next_after, "null") << all.body;
  for (const Client& client : clients) {
    const std::string c = find(all, client.local);
    ASSERT_FALSE(c.empty()) << client.local << " not listed:\n" << all.body;
    EXPECT_EQ(JsonField(c, "listener"), client.listener) << c;
    EXPECT_EQ(JsonField(c, "cluster"), client.cluster) << c;
    EXPECT_EQ(JsonField(c, "upstream"), client.endpoint) << c;
    EXPECT_EQ(JsonField(c, "datapath"), datapath()) << c;
    EXPECT_EQ(JsonField(c, "state"), "piping") << c;
    EXPECT_TRUE(bytes_are(c, kFirst)) << c;
    EXPECT_TRUE(JsonField(c, "worker") == "0" || JsonField(c, "worker") == "1") << c;
    // An idle connection waits for its peers in both directions: what it waits on is listed (on the kernel
    // path, after the verdict's counts, a hang-up poll on each source and nothing pending).
    const std::string operations = JsonField(c, "operations");
    const size_t u2d = operations.find("; u2d:");
    ASSERT_NE(u2d, std::string::npos) << c;
    for (const std::string& direction : {operations.substr(0, u2d), operations.substr(u2d)}) {
      const std::string waits = datapath() == "sockmap" ? "pending=0 poll_rdhup" : "recv queued=0/0";
      EXPECT_TRUE(absl::EndsWith(direction, waits)) << "not waiting on \"" << waits << "\": " << c;
      if (datapath() == "sockmap") EXPECT_NE(direction.find(" redirected="), std::string::npos) << c;
    }
  }

  // More bytes on one connection: its counts and its age grow, the others' counts stay.
  const std::string before = find(all, clients[0].local);
  ASSERT_TRUE(EchoRoundTrips(clients[0].fd.get(), 1 * MiB));
  ConnectionsPage later;
  EXPECT_TRUE(WaitFor(
      [&] {
        later = GetConnections(proxy->admin());
        return bytes_are(find(later, clients[0].local), kFirst + 1 * MiB);
      },
      5s))
      << later.body;
  EXPECT_GT(std::atof(JsonField(find(later, clients[0].local), "age_s").c_str()),
            std::atof(JsonField(before, "age_s").c_str()));
  EXPECT_TRUE(bytes_are(find(later, clients[1].local), kFirst)) << later.body;

  // Pages of two, by cursor: every connection once, in id order, none longer than the limit.
  std::vector<uint64_t> ids_all;
  for (const std::string& c : all.connections) ids_all.push_back(std::stoull(JsonField(c, "id")));
  ASSERT_EQ(ids_all.size(), 5u);
  ASSERT_TRUE(std::is_sorted(ids_all.begin(), ids_all.end()));
  std::vector<uint64_t> ids_paged;
  std::string query = "?limit=2";
  for (int pages = 0; pages < 10; ++pages) {
    ConnectionsPage page = GetConnections(proxy->admin(), query);
    ASSERT_EQ(page.status, 200) << page.body;
    EXPECT_EQ(page.total, "5");
    EXPECT_LE(page.connections.size(), 2u) << page.body;
    for (const std::string& c : page.connections) ids_paged.push_back(std::stoull(JsonField(c, "id")));
    if (page.next_after == "null") break;
    EXPECT_EQ(page.next_after, JsonField(page.connections.back(), "id"));
    query = "?limit=2&after=" + page.next_after;
  }
  EXPECT_EQ(ids_paged, ids_all);
  EXPECT_EQ(GetConnections(proxy->admin(), "?limit=1000").connections.size(), 5u);
  EXPECT_EQ(GetConnections(proxy->admin(), absl::StrCat("?after=", ids_all[2])).connections.size(), 2u);

  for (const char* bad : {"?limit=0", "?limit=1001", "?limit=ten", "?limit=", "?after=-1", "?after=x",
                                 "?offset=3", "?limit=5&bogus"}) {
    ConnectionsPage page = GetConnections(proxy->admin(), bad);
    EXPECT_EQ(page.status, 400) << bad << ": " << page.body;
  }
  auto post = HttpRequest(proxy->admin(), "POST", "/connections", "", 2s);
  ASSERT_TRUE(post.ok()) << post.status();
  EXPECT_EQ(post->status, 405);

  clients.clear();
  EXPECT_TRUE(WaitFor([&] { return GetConnections(proxy->admin()).total == "0"; }, 10s)) << GetConnections(proxy->admin()).body;
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

INSTANTIATE_TEST_SUITE_P(Datapaths, OperationsTest, ::testing::Values("sockmap", "userspace"), DatapathParamName);

// A worker whose ring fails (injected) closes its SO_REUSEPORT listeners: the kernel then sends every new
// connection to the other worker, none waits in a queue nobody drains; /ready turns 503 and the log says so.
TEST(WorkerFailureTest, FailedWorkerClosesItsListenersAndReadyTurnsFalse) {
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  ProxyConfig config = SimpleProxyConfig("userspace", {echo->endpoint()});
  config.workers = 2;
  config.env = {"SKPROXY_FAULT_WORKER_RING=1"};
  SKPROXY_START(proxy, baseline_fds, config);
  EXPECT_TRUE(WaitFor([&] { return proxy->Stderr().find("worker 1 failed") != std::string::npos; }, 5s))
      << proxy->StderrTail();
  auto ready = HttpRequest(proxy->admin(), "GET", "/ready", "", 2s);
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->status, 503);
  EXPECT_NE(ready->body.find("1 worker(s) failed"), std::string::npos) << ready->body;
  // With its listener still in the group, about half of these would hang in its accept queue.
  for (int i = 0; i < 40; ++i) {
    std::string error = ShortEcho(proxy->listener(), 4096, 3s);
    ASSERT_EQ(error, "") << "connection " << i;
  }
  EXPECT_EQ(proxy->Metric("skproxy_workers_failed"), 1);
  EXPECT_EQ(proxy->Metric("skproxy_ready"), 0);
  absl::StatusOr<int> status = proxy->Stop(10s);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, 0);
}

TEST(AdminTest, EndpointsStatusesAndMethods) {
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig("userspace", {echo->endpoint()}));
  auto healthz = HttpRequest(proxy->admin(), "GET", "/healthz", "", 2s);
  ASSERT_TRUE(healthz.ok()) << healthz.status();
  EXPECT_EQ(healthz->status, 200);
  EXPECT_EQ(healthz->body, "ok\n");
  EXPECT_EQ(ReadyStatus(*proxy), 200);
  EXPECT_EQ(proxy->Metric("skproxy_ready"), 1);
  EXPECT_EQ(proxy->Metric("skproxy_draining"), 0);
  auto unknown = HttpRequest(proxy->admin(), "GET", "/no/such/path", "", 2s);
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_EQ(unknown->status, 404);
  auto wrong = HttpRequest(proxy->admin(), "POST", "/metrics", "x", 2s);
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  EXPECT_EQ(wrong->status, 405);
  EXPECT_NE(wrong->headers.find("allow: get"), std::string::npos) << wrong->headers;
  auto metrics = HttpRequest(proxy->admin(), "GET", "/metrics", "", 2s);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->headers.find("content-type: text/plain; version=0.0.4"), std::string::npos) << metrics->headers;
  EXPECT_TRUE(ParseMetrics(metrics->body).ok());
}

// skproxy_sockmap_entries is two per kernel-path connection while they are open, and 0 once they closed.
TEST(SockmapGaugeTest, EntriesFollowConnectionsWithoutAWalk) {
  constexpr int kConnections = 20;
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  SKPROXY_START(proxy, baseline_fds, SimpleProxyConfig("sockmap", {echo->endpoint()}));
  EXPECT_EQ(proxy->Metric("skproxy_sockmap_capacity"), 65536);
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kConnections; ++i) {
    auto fd = Connect(proxy->listener(), 2s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    char byte = 'x';
    ASSERT_EQ(send(fd->get(), &byte, 1, 0), 1);
    IoResult r = RecvExact(fd->get(), &byte, 1, DeadlineIn(5s));
    ASSERT_EQ(r.bytes, 1u) << r.Describe();
    clients.push_back(std::move(*fd));
  }
  EXPECT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_sockmap_entries") == 2 * kConnections; }, 5s))
      << proxy->Metric("skproxy_sockmap_entries");
  clients.clear();
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

}  // namespace
}  // namespace skproxy::itest
