// L7 listeners through the built binary: http routing (curl), every status skproxy answers itself, tls
// routing on SNI (openssl s_client, and a real hello sent one byte per segment), the PROXY protocol in
// (from a load balancer) and out (to upstreams, IPv4 and IPv6), and a routed bulk transfer that still
// reaches the kernel path.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/inspect/client_hello.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"
#include "tests/kernel_support.h"

namespace skproxy::itest {
namespace {

// What an upstream was sent, connection by connection.
struct Seen {
  std::mutex mu;
  std::vector<std::string> first_bytes;  // per connection, up to the end of the first HTTP head / all read
  void Add(std::string s) {
    std::lock_guard<std::mutex> lock(mu);
    first_bytes.push_back(std::move(s));
  }
  std::vector<std::string> Get() {
    std::lock_guard<std::mutex> lock(mu);
    return first_bytes;
  }
};

// A keep-alive HTTP/1.1 server that answers every request head with its own name as the body, and
// records the bytes of each connection's first head (with whatever came before it, e.g. a PROXY header).
TcpServer::Handler HttpNamed(std::string name, Seen* seen) {
  return [name, seen](int fd, ConnStats& stats, TcpServer& server) {
    Deadline deadline = server.handler_deadline();
    std::string pending;
    bool first = true;
    char buf[16 * 1024];
    for (;;) {
      size_t end;
      while ((end = pending.find("\r\n\r\n")) != std::string::npos) {
        if (first && seen) seen->Add(pending.substr(0, end + 4));
        first = false;
        pending.erase(0, end + 4);
        const std::string reply =
            absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", name.size() + 1, "\r\n\r\n", name, "\n");
        if (SendAll(fd, reply.data(), reply.size(), deadline).bytes != reply.size()) return;
      }
      if (PollFd(fd, POLLIN, deadline) == 0) return;
      const ssize_t got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (got <= 0) {
        stats.eof = got == 0;
        return;
      }
      pending.append(buf, static_cast<size_t>(got));
    }
  };
}

// Reads what arrives until `bytes` are in, EOF or 10 s, records it, then echoes it back and echoes on.
TcpServer::Handler RecordAndEcho(size_t bytes, Seen* seen) {
  return [bytes, seen](int fd, ConnStats& stats, TcpServer& server) {
    std::string got(bytes, '\0');
    IoResult r = RecvExact(fd, got.data(), bytes, DeadlineIn(10s));
    got.resize(r.bytes);
    seen->Add(got);
    SendAll(fd, got.data(), got.size(), DeadlineIn(10s));
    EchoHandler()(fd, stats, server);
  };
}

// Sends `request` on a fresh connection and reads the answer until the proxy closes.
struct Answer {
  std::string bytes;
  bool closed = false;
  bool reset = false;
};
Answer Ask(const SocketAddress& listener, const std::string& request, bool shut_write = false,
           Millis timeout = 10s) {
  Answer a;
  auto fd = Connect(listener, 5s);
  if (!fd.ok()) return a;
  SendAll(fd->get(), request.data(), request.size(), DeadlineIn(timeout));
  if (shut_write) shutdown(fd->get(), SHUT_WR);
  Deadline deadline = DeadlineIn(timeout);
  char buf[4096];
  for (;;) {
    if (PollFd(fd->get(), POLLIN, deadline) == 0) return a;
    const ssize_t got = recv(fd->get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (got > 0) {
      a.bytes.append(buf, static_cast<size_t>(got));
      continue;
    }
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    a.closed = true;
    a.reset = got < 0;
    return a;
  }
}

std::string StatusLine(const std::string& response) { return response.substr(0, response.find("\r\n")); }

ListenerSpec Listener(const std::string& name) { return ListenerSpec{name, Loopback4(0), ""}; }

class L7Test : public ::testing::Test {
 protected:
  void SetUp() override {
    web_ = StartServer(HttpNamed("web", &web_seen_));
    api_ = StartServer(HttpNamed("api", &api_seen_));
    ASSERT_TRUE(web_ && api_);
  }
  // An http listener "web" ($LISTENER0) with routes, and "strict" ($LISTENER1) without a default.
  ProxyConfig HttpConfig(const std::string& extra_cluster_yaml = "", const std::string& inspect = "") {
    ProxyConfig c;
    c.listeners = {Listener("web"), Listener("strict")};
    c.listeners_and_clusters_yaml = absl::StrCat(R"(
listeners:
  - name: web
    address: "$LISTENER0"
    protocol: http
    cluster: web
    x_forwarded_for: true
)", inspect, R"(
    routes:
      - name: api
        match: { host: "api.example.com", path_prefix: "/v1/" }
        cluster: api
      - name: wildcard
        match: { host: "*.example.com" }
        cluster: web
  - name: strict
    address: "$LISTENER1"
    protocol: http
    routes:
      - match: { host: "only.example.com" }
        cluster: web
clusters:
  - { name: web, endpoints: [")", web_->endpoint().ToString(), R"("] }
  - { name: api, endpoints: [")", api_->endpoint().ToString(), R"("] }
)", extra_cluster_yaml);
    return c;
  }

  std::unique_ptr<TcpServer> web_, api_;
  Seen web_seen_, api_seen_;
};

TEST_F(L7Test, CurlIsRoutedOnHostAndPathAndKeepsItsUpstream) {
  const std::string curl = FindExecutable("curl");
  if (curl.empty()) GTEST_SKIP() << "curl not installed";
  SKPROXY_START(proxy, baseline, HttpConfig());
  const std::string base = absl::StrCat("http://", proxy->listener(0).ToString());
  struct Case {
    std::string host, path, want;
  };
  for (const Case& c : std::vector<Case>{{"api.example.com", "/v1/users", "api"},
                                         {"API.example.com:9999", "/v1/", "api"},
                                         {"api.example.com", "/v2/", "web"},
                                         {"www.example.com", "/v1/", "web"},
                                         {"other.org", "/", "web"}}) {
    CommandResult r = RunCommand({curl, "-sS", "--max-time", "10", "-H", "Host: " + c.host, base + c.path}, 15s);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    EXPECT_EQ(r.out, c.want + "\n") << c.host << c.path;
  }
  // Two requests on one keep-alive connection: the second goes where the first went (HAProxy tcp-mode
  // content switching does the same), whatever its Host.
  CommandResult two = RunCommand({curl, "-sS", "--max-time", "10", "-H", "Host: api.example.com",
                                  base + "/v1/a", "--next", "-H", "Host: other.org", base + "/"}, 15s);
  EXPECT_EQ(two.out, "api\napi\n") << two.Describe();
  // X-Forwarded-For was appended, with the client's address.
  ASSERT_FALSE(api_seen_.Get().empty());
  EXPECT_TRUE(absl::StrContains(api_seen_.Get()[0], "\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n")) << api_seen_.Get()[0];
  EXPECT_EQ(proxy->Metric("skproxy_route_decisions_total", {{"listener", "web"}, {"route", "api"}}), 3);
  EXPECT_EQ(proxy->Metric("skproxy_route_decisions_total", {{"listener", "web"}, {"route", "wildcard"}}), 2);
  EXPECT_EQ(proxy->Metric("skproxy_route_decisions_total", {{"listener", "web"}, {"route", "default"}}), 1);
  EXPECT_PROXY_IDLE(proxy, baseline);
}

// With the kernel path forced, the routed connection goes into the sockhash once the upstream answered:
// requests and their answers still arrive whole.
TEST_F(L7Test, RoutedConnectionsOnTheForcedKernelPath) {
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  ProxyConfig config = HttpConfig();
  config.datapath = "sockmap";
  SKPROXY_START(proxy, baseline, config);
  const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\napi\n";
  std::vector<UniqueFd> open;
  for (int i = 0; i < 3; ++i) {
    auto fd = Connect(proxy->listener(0), 5s);
    ASSERT_TRUE(fd.ok());
    // Two requests: the first is read by the inspector, the second after the insert, by the kernel path.
    // The connections stay open until the end (their count on the kernel path is checked).
    for (const char* path : {"/v1/x", "/v1/y"}) {
      const std::string request = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
      ASSERT_EQ(SendAll(fd->get(), request.data(), request.size(), DeadlineIn(5s)).bytes, request.size());
      std::string got(answer.size(), '\0');
      ASSERT_EQ(RecvExact(fd->get(), got.data(), got.size(), DeadlineIn(5s)).bytes, answer.size());
      EXPECT_EQ(got, answer);
    }
    open.push_back(std::move(*fd));
  }
  ASSERT_EQ(api_seen_.Get().size(), 3u);
  EXPECT_TRUE(absl::EndsWith(api_seen_.Get()[0], "\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n")) << api_seen_.Get()[0];
  // Each starts on the io_uring path (an upstream that ends before answering gets a 502 there) and moves
  // into the kernel path at the upstream's first byte.
  EXPECT_EQ(proxy->Metric("skproxy_datapath_switches_total", {{"to", "kernel"}}), 3);
  EXPECT_EQ(proxy->Metric("skproxy_connections_active", {{"listener", "web"}, {"datapath", "sockmap"}}), 3);
  open.clear();
  EXPECT_PROXY_IDLE(proxy, baseline);
}

// Each status skproxy sends itself, checked as a whole HTTP/1.1 response that closes the connection.
void ExpectLocalResponse(ProxyProcess& proxy, const Answer& a, int status, const std::string& listener = "web") {
  EXPECT_EQ(StatusLine(a.bytes).substr(0, 12), absl::StrCat("HTTP/1.1 ", status)) << a.bytes;
  EXPECT_TRUE(absl::StrContains(a.bytes, "\r\nConnection: close\r\n")) << a.bytes;
  EXPECT_TRUE(a.closed) << "the proxy did not close after " << status;
  EXPECT_FALSE(a.reset) << "the response was followed by a reset";
  EXPECT_EQ(proxy.Metric("skproxy_local_responses_total", {{"listener", listener}, {"status", std::to_string(status)}}),
            1);
}

TEST_F(L7Test, Status400ForAMalformedHead) {
  SKPROXY_START(proxy, baseline, HttpConfig());
  ExpectLocalResponse(*proxy, Ask(proxy->listener(0), "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
  EXPECT_EQ(proxy->Metric("skproxy_inspection_failures_total", {{"listener", "web"}, {"reason", "http_malformed"}}), 1);
  EXPECT_TRUE(web_seen_.Get().empty());
  EXPECT_PROXY_IDLE(proxy, baseline);
}

TEST_F(L7Test, Status431ForAHeadOverMaxBytes) {
  SKPROXY_START(proxy, baseline, HttpConfig("", "    inspect: { max_bytes: 2KiB }\n"));
  const std::string request = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(8000, 'x') + "\r\n\r\n";
  ExpectLocalResponse(*proxy, Ask(proxy->listener(0), request), 431);
  EXPECT_PROXY_IDLE(proxy, baseline);
}

TEST_F(L7Test, Status408ForAHeadNotCompleteInTime) {
  SKPROXY_START(proxy, baseline, HttpConfig("", "    inspect: { timeout: 500ms }\n"));
  const auto start = Clock::now();
  ExpectLocalResponse(*proxy, Ask(proxy->listener(0), "GET / HTTP/1.1\r\nHost: slow"), 408);
  EXPECT_GE(Clock::now() - start, 450ms);
  EXPECT_EQ(proxy->Metric("skproxy_inspection_failures_total", {{"listener", "web"}, {"reason", "timeout"}}), 1);
  EXPECT_PROXY_IDLE(proxy, baseline);
}

TEST_F(L7Test, Status404WhenNoRouteAndNoDefault) {
  SKPROXY_START(proxy, baseline, HttpConfig());
  ExpectLocalResponse(*proxy, Ask(proxy->listener(1), "GET / HTTP/1.1\r\nHost: else.example.com\r\n\r\n"), 404,
                      "strict");
  EXPECT_EQ(proxy->Metric("skproxy_route_decisions_total", {{"listener", "strict"}, {"route", "none"}}), 1);
  EXPECT_PROXY_IDLE(proxy, baseline);
}

TEST_F(L7Test, Status502WhenTheUpstreamRefuses) {
  ProxyConfig config = HttpConfig();
  const std::string refused = RefusedEndpoint().ToString();
  config.listeners_and_clusters_yaml =
      absl::StrReplaceAll(config.listeners_and_clusters_yaml, {{web_->endpoint().ToString(), refused}});
  SKPROXY_START(proxy, baseline, config);
  ExpectLocalResponse(*proxy, Ask(proxy->listener(0), "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 502);
  EXPECT_PROXY_IDLE(proxy, baseline);
}

// An upstream that reads the request head (to its blank line) and then does `then` with the socket.
TcpServer::Handler ReadHeadThen(std::function<void(int fd)> then) {
  return [then](int fd, ConnStats& stats, TcpServer& server) {
    std::string head;
    char c;
    while (!absl::EndsWith(head, "\r\n\r\n")) {
      if (RecvExact(fd, &c, 1, server.handler_deadline()).bytes != 1) return;
      head.push_back(c);
    }
    stats.bytes_in = head.size();
    then(fd);
  };
}

void ResetOnClose(int fd) {
  const linger reset{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
}

// The request was written, then the upstream went away without a byte of response: the client gets a 502
// (HAProxy's "server closed the connection without sending a response"), whether the upstream reset or
// closed cleanly, on every data path.
class NoResponseTest : public L7Test, public ::testing::WithParamInterface<std::tuple<std::string, bool>> {};

TEST_P(NoResponseTest, Status502WhenTheUpstreamEndsBeforeAnswering) {
  const auto& [datapath, reset] = GetParam();
  if (datapath != "userspace") {
    SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  }
  auto silent = StartServer(ReadHeadThen([reset = reset](int fd) {
    if (reset) ResetOnClose(fd);
  }));
  ASSERT_TRUE(silent);
  ProxyConfig config = HttpConfig();
  config.datapath = datapath;
  config.listeners_and_clusters_yaml = absl::StrReplaceAll(config.listeners_and_clusters_yaml,
                                                           {{web_->endpoint().ToString(), silent->endpoint().ToString()}});
  SKPROXY_START_ANY_PATH(proxy, baseline, config);
  ExpectLocalResponse(*proxy, Ask(proxy->listener(0), "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 502);
  ASSERT_TRUE(silent->WaitForFinished(1, 5s));
  EXPECT_GT(silent->Finished()[0].bytes_in, 0u);  // the head did reach it
  // Not a connect failure: the endpoint answered the connect.
  EXPECT_EQ(proxy->Metric("skproxy_upstream_connect_failures_total", {{"cluster", "web"}}), 0);
  EXPECT_PROXY_IDLE(proxy, baseline);
}

// Once the upstream has sent a byte, its end is the client's: the bytes it sent, then a reset (or a clean
// close), and no status made up by skproxy.
TEST_P(NoResponseTest, EndAfterPartOfAResponseIsPassedOn) {
  const auto& [datapath, reset] = GetParam();
  if (datapath != "userspace") {
    SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  }
  const std::string partial = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart";
  auto halfway = StartServer(ReadHeadThen([&partial, reset = reset](int fd) {
    SendAll(fd, partial.data(), partial.size(), DeadlineIn(5s));
    if (reset) ResetOnClose(fd);
  }));
  ASSERT_TRUE(halfway);
  ProxyConfig config = HttpConfig();
  config.datapath = datapath;
  config.listeners_and_clusters_yaml = absl::StrReplaceAll(config.listeners_and_clusters_yaml,
                                                           {{web_->endpoint().ToString(), halfway->endpoint().ToString()}});
  SKPROXY_START_ANY_PATH(proxy, baseline, config);
  const Answer a = Ask(proxy->listener(0), "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(a.bytes, partial);
  EXPECT_TRUE(a.closed);
  EXPECT_EQ(a.reset, reset) << (reset ? "the upstream's reset was not passed on" : "a clean close became a reset");
  EXPECT_EQ(proxy->Metric("skproxy_local_responses_total", {{"listener", "web"}, {"status", "502"}}), 0);
  EXPECT_PROXY_IDLE(proxy, baseline);
}

INSTANTIATE_TEST_SUITE_P(
    DatapathsAndEnds, NoResponseTest,
    ::testing::Combine(::testing::Values("userspace", "auto", "sockmap"), ::testing::Bool()),
    [](const ::testing::TestParamInfo<std::tuple<std::string, bool>>& info) {
      return absl::StrCat(std::get<0>(info.param), std::get<1>(info.param) ? "Reset" : "Close");
    });

// A spliced request's upstream that takes the request and says nothing: once the cluster's response_timeout
// passed with no byte moved, the client gets 504 (HAProxy's `timeout server`, Envoy's route timeout) and the
// upstream leg is closed, on every data path (the wait happens on the io_uring path on all of them).
class ResponseTimeoutTest : public L7Test, public ::testing::WithParamInterface<std::string> {
 protected:
  // HttpConfig with cluster web pointing at `upstream`, its response_timeout set.
  ProxyConfig TimeoutConfig(const TcpServer& upstream, const std::string& timeout) {
    ProxyConfig config = HttpConfig();
    config.datapath = GetParam();
    config.listeners_and_clusters_yaml = absl::StrReplaceAll(
        config.listeners_and_clusters_yaml,
        {{absl::StrCat("{ name: web, endpoints: [\"", web_->endpoint().ToString(), "\"] }"),
          absl::StrCat("{ name: web, response_timeout: ", timeout, ", endpoints: [\"", upstream.endpoint().ToString(),
                       "\"] }")}});
    return config;
  }
};

TEST_P(ResponseTimeoutTest, Status504WhenTheUpstreamDoesNotAnswerInTime) {
  if (GetParam() != "userspace") {
    SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  }
  auto silent = StartServer(ReadHeadThen([](int fd) {
    char c;
    // Until the proxy closes its side (the handler's deadline is the bound).
    while (PollFd(fd, POLLIN, DeadlineIn(20s)) > 0 && recv(fd, &c, 1, MSG_DONTWAIT) > 0) {
    }
  }));
  ASSERT_TRUE(silent);
  SKPROXY_START_ANY_PATH(proxy, baseline, TimeoutConfig(*silent, "500ms"));
  const auto start = Clock::now();
  ExpectLocalResponse(*proxy, Ask(proxy->listener(0), "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 504);
  EXPECT_GE(Clock::now() - start, 500ms) << "answered before response_timeout";
  ASSERT_TRUE(silent->WaitForFinished(1, 5s)) << "the upstream leg was not closed";
  EXPECT_GT(silent->Finished()[0].bytes_in, 0u);  // the head did reach it
  EXPECT_EQ(proxy->Metric("skproxy_upstream_response_timeouts_total", {{"cluster", "web"}, {"stage", "before_response"}}),
            1);
  EXPECT_EQ(proxy->Metric("skproxy_local_responses_total", {{"listener", "web"}, {"status", "502"}}), 0);
  EXPECT_PROXY_IDLE(proxy, baseline);
}

// The timer runs only while nothing moves: an upload that takes several timeouts to arrive, answered only at
// its end, is not cut.
TEST_P(ResponseTimeoutTest, AnUploadThatKeepsMovingIsNotCut) {
  if (GetParam() != "userspace") {
    SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  }
  constexpr size_t kPieces = 8;
  auto reader = StartServer(ReadHeadThen([](int fd) {
    std::string body(kPieces, '\0');
    if (RecvExact(fd, body.data(), body.size(), DeadlineIn(20s)).bytes != body.size()) return;
    const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    SendAll(fd, reply.data(), reply.size(), DeadlineIn(5s));
  }));
  ASSERT_TRUE(reader);
  SKPROXY_START_ANY_PATH(proxy, baseline, TimeoutConfig(*reader, "400ms"));
  auto fd = Connect(proxy->listener(0), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  const std::string head = absl::StrCat("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ", kPieces, "\r\n\r\n");
  ASSERT_EQ(SendAll(fd->get(), head.data(), head.size(), DeadlineIn(5s)).bytes, head.size());
  // One byte every 200 ms: 1.6 s in all, four times the timeout, never 400 ms without a byte.
  for (size_t i = 0; i < kPieces; ++i) {
    // Paces the upload (the proxy must see a slow sender); nothing waits on the proxy here.
    ASSERT_EQ(PollFd(fd->get(), POLLIN, DeadlineIn(200ms)), 0) << "the proxy answered mid-upload";
    ASSERT_EQ(SendAll(fd->get(), "x", 1, DeadlineIn(5s)).bytes, 1u);
  }
  std::string reply(40, '\0');
  const IoResult got = RecvExact(fd->get(), reply.data(), reply.size(), DeadlineIn(5s));
  reply.resize(got.bytes);
  EXPECT_TRUE(absl::StartsWith(reply, "HTTP/1.1 200 OK")) << reply;
  EXPECT_EQ(proxy->Metric("skproxy_upstream_response_timeouts_total", {{"cluster", "web"}, {"stage", "before_response"}}),
            0);
  fd->Reset();
  EXPECT_PROXY_IDLE(proxy, baseline);
}

INSTANTIATE_TEST_SUITE_P(Datapaths, ResponseTimeoutTest, ::testing::Values("userspace", "auto", "sockmap"));

TEST_F(L7Test, Status504WhenTheConnectTimesOut) {
  // A listener whose accept queue is full drops further SYNs: connecting to it times out.
  auto full = StartServer(EchoHandler(), AF_INET, {}, /*hold_accepts=*/true, /*backlog=*/0);
  ASSERT_TRUE(full);
  std::vector<UniqueFd> fillers;
  for (int i = 0; i < 4; ++i) {
    auto fd = Connect(full->endpoint(), 300ms);
    if (fd.ok()) fillers.push_back(std::move(*fd));
  }
  ProxyConfig config = HttpConfig();
  config.listeners_and_clusters_yaml = absl::StrReplaceAll(
      config.listeners_and_clusters_yaml,
      {{absl::StrCat("{ name: web, endpoints: [\"", web_->endpoint().ToString(), "\"] }"),
        absl::StrCat("{ name: web, connect_timeout: 300ms, endpoints: [\"", full->endpoint().ToString(), "\"] }")}});
  SKPROXY_START(proxy, baseline, config);
  ExpectLocalResponse(*proxy, Ask(proxy->listener(0), "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 504);
  full->ReleaseAccepts();
  fillers.clear();
  full->Stop();
  EXPECT_PROXY_IDLE(proxy, baseline);
}

TEST_F(L7Test, Status503WhenTheClusterHasNoHealthyEndpoint) {
  // The web cluster's one endpoint refuses, and its health check takes it out after one failure.
  ProxyConfig config = HttpConfig();
  const std::string refused = RefusedEndpoint().ToString();
  config.listeners_and_clusters_yaml = absl::StrReplaceAll(
      config.listeners_and_clusters_yaml,
      {{absl::StrCat("{ name: web, endpoints: [\"", web_->endpoint().ToString(), "\"] }"),
        absl::StrCat("{ name: web, endpoints: [\"", refused, "\"], health_check: { type: tcp, interval: 100ms, ",
                     "timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1 } }")}});
  SKPROXY_START(proxy, baseline, config);
  ASSERT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_cluster_healthy_endpoints", {{"cluster", "web"}}) == 0; },
                      10s));
  ExpectLocalResponse(*proxy, Ask(proxy->listener(0), "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 503);
  EXPECT_EQ(proxy->Metric("skproxy_inspection_failures_total", {{"listener", "web"}, {"reason", "no_healthy_endpoint"}}),
            1);
  // The api cluster is healthy: its route still answers from its upstream.
  const Answer api =
      Ask(proxy->listener(0), "GET /v1/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n", /*shut_write=*/true);
  EXPECT_TRUE(absl::EndsWith(api.bytes, "\r\n\r\napi\n")) << api.bytes;
  EXPECT_PROXY_IDLE(proxy, baseline);
}

TEST_F(L7Test, BulkAfterRoutingStillReachesTheKernelPath) {
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
  if (!RequireSockmap()) GTEST_SKIP() << "not root: the kernel path is not expected to load";
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  ProxyConfig config = HttpConfig();
  config.datapath = "auto";
  config.listeners_and_clusters_yaml =
      absl::StrReplaceAll(config.listeners_and_clusters_yaml, {{api_->endpoint().ToString(), echo->endpoint().ToString()}});
  SKPROXY_START_OR_SKIP(proxy, config);
  auto baseline = proxy->FdCount();
  ASSERT_TRUE(baseline.ok()) << baseline.status();
  auto fd = Connect(proxy->listener(0), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  const std::string head = "PUT /v1/upload HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
  ASSERT_EQ(SendAll(fd->get(), head.data(), head.size(), DeadlineIn(5s)).bytes, head.size());
  // The echo returns the head as the upstream got it: with X-Forwarded-For.
  const std::string want = "PUT /v1/upload HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n";
  std::string got(want.size(), '\0');
  ASSERT_EQ(RecvExact(fd->get(), got.data(), got.size(), DeadlineIn(5s)).bytes, want.size());
  EXPECT_EQ(got, want);
  constexpr uint64_t kBulk = 64 * MiB;
  EchoResult r = EchoExchange(fd->get(), NextStreamId(), kBulk, DeadlineIn(120s), /*compute_sha=*/true);
  EXPECT_EQ(r.recv.bytes, kBulk) << r.Describe();
  EXPECT_EQ(r.first_bad, -1) << r.Describe();
  EXPECT_EQ(r.sha_received, r.sha_sent);
  EXPECT_GE(proxy->Metric("skproxy_datapath_switches_total", {{"to", "kernel"}}), 1);
  EXPECT_GT(proxy->Metric("skproxy_bytes_total", {{"path", "kernel"}}), 0);
  fd->Reset();
  EXPECT_PROXY_IDLE(proxy, *baseline);
}

class TlsRoutingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = StartServer(RecordAndEcho(5, &a_seen_));
    b_ = StartServer(RecordAndEcho(5, &b_seen_));
    ASSERT_TRUE(a_ && b_);
  }
  ProxyConfig Config(const std::string& default_cluster) {
    ProxyConfig c;
    c.listeners = {Listener("tls")};
    c.listeners_and_clusters_yaml = absl::StrCat(R"(
listeners:
  - name: tls
    address: "$LISTENER0"
    protocol: tls
    inspect: { timeout: 2s }
)", default_cluster, R"(
    routes:
      - { name: a, match: { sni: "a.example.com" }, cluster: a }
      - { name: b, match: { sni: "*.b.example.com" }, cluster: b }
clusters:
  - { name: a, endpoints: [")", a_->endpoint().ToString(), R"("] }
  - { name: b, endpoints: [")", b_->endpoint().ToString(), R"("] }
)");
    return c;
  }
  std::unique_ptr<TcpServer> a_, b_;
  Seen a_seen_, b_seen_;
};

TEST_F(TlsRoutingTest, OpensslSClientIsRoutedOnSni) {
  const std::string openssl = FindExecutable("openssl");
  if (openssl.empty()) GTEST_SKIP() << "openssl not installed";
  SKPROXY_START(proxy, baseline, Config(""));
  for (const auto& [sni, seen] : {std::pair{"a.example.com", &a_seen_}, std::pair{"X.B.example.com", &b_seen_}}) {
    // No server answers the hello (the upstream echoes it): s_client fails, after its hello went through.
    RunCommand({openssl, "s_client", "-connect", proxy->listener(0).ToString(), "-servername", sni}, 15s);
    ASSERT_EQ(seen->Get().size(), 1u) << sni;
    EXPECT_EQ(seen->Get()[0].substr(0, 2), "\x16\x03") << "the upstream got the hello unchanged";
  }
  EXPECT_EQ(proxy->Metric("skproxy_route_decisions_total", {{"listener", "tls"}, {"route", "a"}}), 1);
  EXPECT_EQ(proxy->Metric("skproxy_route_decisions_total", {{"listener", "tls"}, {"route", "b"}}), 1);
  EXPECT_PROXY_IDLE(proxy, baseline);
}

TEST_F(TlsRoutingTest, HelloSentOneBytePerSegmentArrivesWholeAndInOrder) {
  SKPROXY_START(proxy, baseline, Config(""));
  const std::string hello = OpenSslClientHello("a.example.com");
  auto fd = Connect(proxy->listener(0), 5s);
  ASSERT_TRUE(fd.ok());
  for (char c : hello) ASSERT_EQ(SendAll(fd->get(), &c, 1, DeadlineIn(5s)).bytes, 1u);
  std::string echo(hello.size(), '\0');
  ASSERT_EQ(RecvExact(fd->get(), echo.data(), echo.size(), DeadlineIn(10s)).bytes, hello.size());
  EXPECT_TRUE(echo == hello) << "the upstream did not get the hello byte for byte";
  fd->Reset();
  EXPECT_EQ(a_seen_.Get().size(), 1u);
  EXPECT_PROXY_IDLE(proxy, baseline);
}

TEST_F(TlsRoutingTest, NoMatchClosesWithoutDefaultAndMalformedIsCounted) {
  SKPROXY_START(proxy, baseline, Config(""));
  Answer none = Ask(proxy->listener(0), OpenSslClientHello("c.example.com"));
  EXPECT_TRUE(none.closed && none.bytes.empty());
  Answer plain = Ask(proxy->listener(0), "GET / HTTP/1.1\r\n\r\n");  // not TLS: the default, which is none
  EXPECT_TRUE(plain.closed && plain.bytes.empty());
  Answer bad = Ask(proxy->listener(0), std::string("\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", 10));
  EXPECT_TRUE(bad.closed && bad.bytes.empty());
  EXPECT_EQ(proxy->Metric("skproxy_route_decisions_total", {{"listener", "tls"}, {"route", "none"}}), 2);
  EXPECT_EQ(proxy->Metric("skproxy_inspection_failures_total", {{"listener", "tls"}, {"reason", "tls_malformed"}}), 1);
  EXPECT_TRUE(a_seen_.Get().empty() && b_seen_.Get().empty());
  EXPECT_PROXY_IDLE(proxy, baseline);
}

TEST_F(TlsRoutingTest, NoSniGoesToTheDefaultAndATimeoutCloses) {
  SKPROXY_START(proxy, baseline, Config("    cluster: b\n"));
  const std::string hello = OpenSslClientHello("");
  auto fd = Connect(proxy->listener(0), 5s);
  ASSERT_TRUE(fd.ok());
  ASSERT_EQ(SendAll(fd->get(), hello.data(), hello.size(), DeadlineIn(5s)).bytes, hello.size());
  std::string echo(hello.size(), '\0');
  ASSERT_EQ(RecvExact(fd->get(), echo.data(), echo.size(), DeadlineIn(10s)).bytes, hello.size());
  EXPECT_TRUE(echo == hello);
  fd->Reset();
  // Half a hello, then nothing: closed at inspect.timeout (Envoy's policy), not sent to the default.
  const auto start = Clock::now();
  Answer slow = Ask(proxy->listener(0), hello.substr(0, hello.size() / 2));
  EXPECT_TRUE(slow.closed);
  EXPECT_GE(Clock::now() - start, 1900ms);
  EXPECT_EQ(proxy->Metric("skproxy_inspection_failures_total", {{"listener", "tls"}, {"reason", "timeout"}}), 1);
  EXPECT_EQ(b_seen_.Get().size(), 1u);
  EXPECT_PROXY_IDLE(proxy, baseline);
}

// PROXY protocol to upstreams: the test upstream reads the header the proxy wrote, and checks it names
// the client's and the listener's addresses, for v1 and v2 over IPv4 and IPv6.
class ProxyProtocolOutTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(ProxyProtocolOutTest, UpstreamReadsTheClientAddress) {
  const auto [version, family] = GetParam();
  Seen seen;
  const size_t header_size = version == "v1" ? 0 : (family == AF_INET ? 28 : 52);
  auto upstream = StartServer(
      [&](int fd, ConnStats& stats, TcpServer& server) {
        std::string got;
        char c;
        if (header_size > 0) {
          got.resize(header_size);
          got.resize(RecvExact(fd, got.data(), header_size, DeadlineIn(10s)).bytes);
        } else {
          while (!absl::EndsWith(got, "\r\n") && RecvExact(fd, &c, 1, DeadlineIn(10s)).bytes == 1) got.push_back(c);
        }
        seen.Add(got);
        EchoHandler()(fd, stats, server);
      },
      family);
  ASSERT_TRUE(upstream);
  ProxyConfig config;
  config.listeners = {ListenerSpec{"tcp", LoopbackAddress(family, 0), ""}};
  config.listeners_and_clusters_yaml = absl::StrCat(R"(
listeners:
  - { name: tcp, address: "$LISTENER0", cluster: up }
clusters:
  - { name: up, proxy_protocol: )", version, R"(, endpoints: [")", upstream->endpoint().ToString(), R"("] }
)");
  SKPROXY_START(proxy, baseline, config);
  auto fd = Connect(proxy->listener(0), 5s);
  ASSERT_TRUE(fd.ok());
  const uint16_t client_port = LocalPort(fd->get());
  const std::string payload = "after the header";
  ASSERT_EQ(SendAll(fd->get(), payload.data(), payload.size(), DeadlineIn(5s)).bytes, payload.size());
  std::string echo(payload.size(), '\0');
  ASSERT_EQ(RecvExact(fd->get(), echo.data(), echo.size(), DeadlineIn(10s)).bytes, payload.size());
  EXPECT_EQ(echo, payload);
  ASSERT_EQ(seen.Get().size(), 1u);
  const std::string header = seen.Get()[0];
  const uint16_t listener_port = proxy->listener(0).port();
  if (version == "v1") {
    const std::string ip = family == AF_INET ? "127.0.0.1" : "::1";
    EXPECT_EQ(header, absl::StrCat("PROXY ", family == AF_INET ? "TCP4 " : "TCP6 ", ip, " ", ip, " ", client_port,
                                   " ", listener_port, "\r\n"));
  } else {
    // proxy-protocol.txt 2.2, written out by hand: signature, PROXY command, TCP over the family, length,
    // source and destination address, source and destination port.
    std::string want("\r\n\r\n\0\r\nQUIT\n", 12);
    want += '\x21';
    want += family == AF_INET ? '\x11' : '\x21';
    want += std::string{'\0', static_cast<char>(family == AF_INET ? 12 : 36)};
    std::string ip(family == AF_INET ? 4 : 16, '\0');
    if (family == AF_INET) {
      const in_addr a{htonl(INADDR_LOOPBACK)};
      std::memcpy(ip.data(), &a, 4);
    } else {
      ip[15] = 1;
    }
    want += ip + ip;
    want += std::string{static_cast<char>(client_port >> 8), static_cast<char>(client_port & 0xff),
                        static_cast<char>(listener_port >> 8), static_cast<char>(listener_port & 0xff)};
    EXPECT_TRUE(header == want) << HexHead(reinterpret_cast<const uint8_t*>(header.data()), header.size(), 64);
  }
  fd->Reset();
  EXPECT_PROXY_IDLE(proxy, baseline);
}

INSTANTIATE_TEST_SUITE_P(Versions, ProxyProtocolOutTest,
                         ::testing::Combine(::testing::Values("v1", "v2"), ::testing::Values(AF_INET, AF_INET6)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + (std::get<1>(info.param) == AF_INET ? "_ipv4" : "_ipv6");
                         });

// PROXY protocol from a load balancer: the header's client address is the one X-Forwarded-For names;
// a connection without the header is closed and counted.
TEST_F(L7Test, ListenerRequiringProxyProtocolUsesItsAddressAndClosesWithoutIt) {
  ProxyConfig config = HttpConfig();
  config.listeners_and_clusters_yaml = absl::StrReplaceAll(
      config.listeners_and_clusters_yaml, {{"    x_forwarded_for: true\n", "    x_forwarded_for: true\n    proxy_protocol: v1\n"}});
  SKPROXY_START(proxy, baseline, config);
  Answer routed = Ask(proxy->listener(0),
                      "PROXY TCP4 198.51.100.7 203.0.113.1 40000 80\r\nGET /v1/ HTTP/1.1\r\nHost: api.example.com\r\n"
                      "Connection: close\r\n\r\n",
                      /*shut_write=*/true);
  EXPECT_TRUE(absl::EndsWith(routed.bytes, "\r\n\r\napi\n")) << routed.bytes;
  ASSERT_EQ(api_seen_.Get().size(), 1u);
  EXPECT_EQ(api_seen_.Get()[0],
            "GET /v1/ HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n");
  Answer missing = Ask(proxy->listener(0), "GET /v1/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
  EXPECT_TRUE(missing.closed);
  EXPECT_EQ(missing.bytes, "");
  Answer bad = Ask(proxy->listener(0), "PROXY TCP4 1.2.3.4 nonsense\r\nGET / HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(bad.closed);
  EXPECT_EQ(proxy->Metric("skproxy_inspection_failures_total", {{"listener", "web"}, {"reason", "proxy_protocol_missing"}}),
            1);
  EXPECT_EQ(proxy->Metric("skproxy_inspection_failures_total",
                          {{"listener", "web"}, {"reason", "proxy_protocol_malformed"}}),
            1);
  EXPECT_EQ(api_seen_.Get().size(), 1u);
  EXPECT_PROXY_IDLE(proxy, baseline);
}

}  // namespace
}  // namespace skproxy::itest
