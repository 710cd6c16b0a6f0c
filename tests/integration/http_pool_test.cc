// A cluster's http_keepalive through the built binary: Connection: close clients served over one pooled
// upstream connection; Content-Length, chunked and close-delimited bodies arriving byte-exact; request
// bodies; an upstream closing an idle pooled connection; a stale connection's request retried once (and a
// POST not); later requests on a keep-alive client routed by their own Host; a large response streamed
// through bounded memory.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/host_stats.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"

namespace skproxy::itest {
namespace {

// Deterministic body bytes, so a reordered, lost or doubled byte shows.
std::string Body(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 12)) % 251);
  return s;
}

// A chunked encoding of `body` in uneven chunks, with an extension and a trailer.
std::string Chunked(const std::string& body) {
  std::string out;
  size_t at = 0, size = 1;
  while (at < body.size()) {
    const size_t n = std::min(size, body.size() - at);
    out += absl::StrCat(absl::Hex(n), at == 0 ? ";ext=1" : "", "\r\n", body.substr(at, n), "\r\n");
    at += n;
    size = size * 3 + 7;
  }
  out += "0\r\nX-Trailer: t\r\n\r\n";
  return out;
}

constexpr size_t kChunkedBody = 70000;

struct UpstreamOptions {
  bool reset_second_request = false;  // a second request on a connection gets a RST, no answer
  std::atomic<uint64_t>* big_sent = nullptr;  // bytes of /big/ bodies sent so far
};

// Waits, sending nothing, until the peer closes `fd` (or the handler's deadline); records a clean EOF.
void WaitForPeerClose(int fd, ConnStats& stats, Deadline deadline) {
  char buf[4096];
  for (;;) {
    if (PollFd(fd, POLLIN, deadline) == 0) return;
    const ssize_t got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (got < 0 && errno == EAGAIN) continue;
    if (got <= 0) {
      stats.eof = got == 0;
      return;
    }
  }
}

// An HTTP/1.1 keep-alive upstream. By path: /len/N (Content-Length), /chunked, /close (no framing: the body
// ends with the connection), /once (Content-Length, then the server closes without saying so), /big/N
// (Content-Length, sent in 64 KiB pieces), /echo (the request body back), /head (the request head it
// received, as the body), /hop (a response with hop-by-hop fields), /silent (no answer at all), /stall
// (the head and 10 of 100 body bytes, then nothing), anything else: "ok".
TcpServer::Handler HttpUpstream(UpstreamOptions options) {
  return [options](int fd, ConnStats& stats, TcpServer& server) {
    Deadline deadline = server.handler_deadline();
    std::string pending;
    char buf[64 * 1024];
    int requests = 0;
    for (;;) {
      size_t end;
      while ((end = pending.find("\r\n\r\n")) == std::string::npos) {
        if (PollFd(fd, POLLIN, deadline) == 0) return;
        const ssize_t got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (got < 0 && errno == EAGAIN) continue;
        if (got <= 0) {
          stats.eof = got == 0;
          return;
        }
        pending.append(buf, static_cast<size_t>(got));
      }
      const std::string head = pending.substr(0, end + 4);
      pending.erase(0, end + 4);
      if (++requests == 2 && options.reset_second_request) {
        const linger reset{1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
        return;
      }
      size_t length = 0;
      if (const size_t at = head.find("Content-Length: "); at != std::string::npos)
        (void)absl::SimpleAtoi(head.substr(at + 16, head.find("\r\n", at) - at - 16), &length);
      while (pending.size() < length) {
        if (PollFd(fd, POLLIN, deadline) == 0) return;
        const ssize_t got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (got < 0 && errno == EAGAIN) continue;
        if (got <= 0) return;
        pending.append(buf, static_cast<size_t>(got));
      }
      const std::string request_body = pending.substr(0, length);
      pending.erase(0, length);
      const std::string path = head.substr(head.find(' ') + 1, head.find(' ', head.find(' ') + 1) - head.find(' ') - 1);
      std::string reply;
      bool close_after = false;
      if (absl::StartsWith(path, "/len/")) {
        size_t n = 0;
        (void)absl::SimpleAtoi(path.substr(5), &n);
        reply = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", n, "\r\n\r\n", Body(n, 1));
      } else if (path == "/chunked") {
        reply = absl::StrCat("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Chunked(Body(kChunkedBody, 2)));
      } else if (path == "/close") {
        reply = absl::StrCat("HTTP/1.1 200 OK\r\n\r\n", Body(50000, 3));
        close_after = true;
      } else if (path == "/once") {
        reply = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce";
        close_after = true;
      } else if (absl::StartsWith(path, "/big/")) {
        size_t n = 0;
        (void)absl::SimpleAtoi(path.substr(5), &n);
        const std::string piece = Body(64 * 1024, 4);
        const std::string h = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", n, "\r\n\r\n");
        if (SendAll(fd, h.data(), h.size(), deadline).bytes != h.size()) return;
        for (size_t sent = 0; sent < n;) {
          const size_t k = std::min(piece.size(), n - sent);
          if (SendAll(fd, piece.data(), k, deadline).bytes != k) return;
          sent += k;
          if (options.big_sent) options.big_sent->fetch_add(k);
        }
        continue;
      } else if (path == "/echo") {
        reply = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", request_body.size(), "\r\n\r\n", request_body);
      } else if (path == "/head") {
        reply = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", head.size(), "\r\n\r\n", head);
      } else if (path == "/hop") {
        reply = "HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=5\r\n"
                "Upgrade: h2c\r\nX-Kept: k\r\nContent-Length: 2\r\n\r\nok";
      } else if (path == "/silent") {
        WaitForPeerClose(fd, stats, deadline);
        return;
      } else if (path == "/stall") {
        reply = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
        if (SendAll(fd, reply.data(), reply.size(), deadline).bytes != reply.size()) return;
        WaitForPeerClose(fd, stats, deadline);
        return;
      } else {
        reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
      }
      if (SendAll(fd, reply.data(), reply.size(), deadline).bytes != reply.size()) return;
      if (close_after) return;
    }
  };
}

struct Response {
  std::string head, body;
  bool complete = false;
};

// Reads one response off `fd`: the head, then the body by its framing (Content-Length, chunked kept
// encoded as it arrived, or to EOF). Bytes read past it (the next pipelined response) stay in `*carry`.
Response ReadResponse(int fd, Millis timeout = 10s, std::string* carry = nullptr) {
  Response r;
  Deadline deadline = DeadlineIn(timeout);
  std::string data;
  if (carry != nullptr) data.swap(*carry);
  char buf[64 * 1024];
  auto more = [&]() {
    if (PollFd(fd, POLLIN, deadline) == 0) return -1;
    const ssize_t got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (got < 0 && errno == EAGAIN) return 1;
    if (got <= 0) return 0;
    data.append(buf, static_cast<size_t>(got));
    return 1;
  };
  size_t end;
  while ((end = data.find("\r\n\r\n")) == std::string::npos)
    if (more() <= 0) return r;
  r.head = data.substr(0, end + 4);
  data.erase(0, end + 4);
  if (const size_t at = r.head.find("Content-Length: "); at != std::string::npos) {
    size_t n = 0;
    (void)absl::SimpleAtoi(r.head.substr(at + 16, r.head.find("\r\n", at) - at - 16), &n);
    while (data.size() < n)
      if (more() <= 0) return r;
    r.body = data.substr(0, n);
    r.complete = true;
    if (carry != nullptr) *carry = data.substr(n);
    else r.complete = data.size() == n;  // nothing may follow unasked
  } else if (absl::StrContains(r.head, "Transfer-Encoding: chunked")) {
    const std::string last = "\r\n0\r\nX-Trailer: t\r\n\r\n";
    size_t end_at;
    while ((end_at = data.find(last)) == std::string::npos)
      if (more() <= 0) return r;
    r.body = data.substr(0, end_at + last.size());
    r.complete = true;
    if (carry != nullptr) *carry = data.substr(end_at + last.size());
  } else {
    int m;
    while ((m = more()) > 0) {
    }
    r.body = data;
    r.complete = m == 0;
  }
  return r;
}

std::string Get(const std::string& path, const std::string& host = "a", bool close = false) {
  return absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host, "\r\n", close ? "Connection: close\r\n" : "",
                      "\r\n");
}

// Whether the peer closed `fd` (EOF) within `timeout`, with nothing more sent.
bool ClosedCleanly(int fd, Millis timeout = 5s) {
  if (PollFd(fd, POLLIN, DeadlineIn(timeout)) == 0) return false;
  char c;
  return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

ProxyConfig PoolConfig(const TcpServer& upstream, const std::string& keepalive = "{ max_idle: 8 }",
                       const TcpServer* other = nullptr) {
  ProxyConfig c;
  c.listeners = {ListenerSpec{"web", Loopback4(0), ""}};
  c.listeners_and_clusters_yaml = absl::StrCat(R"(
listeners:
  - name: web
    address: "$LISTENER0"
    protocol: http
    cluster: web
)", other ? R"(    routes:
      - name: other
        match: { host: "other.example" }
        cluster: other
)" : "", R"(clusters:
  - name: web
    endpoints: [")", upstream.endpoint().ToString(), R"("]
    http_keepalive: )", keepalive, "\n",
    other ? absl::StrCat("  - name: other\n    endpoints: [\"", other->endpoint().ToString(),
                         "\"]\n    http_keepalive: { max_idle: 8 }\n") : "");
  c.workers = 1;  // one worker, one pool: the tests count connections
  return c;
}

// Adds `line` (e.g. "response_timeout: 500ms") to the cluster "web" of a PoolConfig.
void AddClusterKey(ProxyConfig& config, const std::string& line) {
  const std::string at = "  - name: web\n";
  const size_t where = config.listeners_and_clusters_yaml.find(at, config.listeners_and_clusters_yaml.find("clusters:"));
  config.listeners_and_clusters_yaml.insert(where + at.size(), absl::StrCat("    ", line, "\n"));
}

// Whether `fd` ends with a reset (not a clean close) within `timeout`, whatever it read before.
bool EndsWithReset(int fd, Millis timeout = 10s) {
  Deadline deadline = DeadlineIn(timeout);
  char buf[4096];
  for (;;) {
    if (PollFd(fd, POLLIN, deadline) == 0) return false;
    const ssize_t got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (got > 0 || (got < 0 && errno == EAGAIN)) continue;
    return got < 0 && errno == ECONNRESET;
  }
}

TEST(HttpPoolTest, ConnectionCloseClientsReuseOneUpstreamConnection) {
  auto upstream = StartServer(HttpUpstream({}));
  ASSERT_TRUE(upstream);
  SKPROXY_START_OR_SKIP(proxy, PoolConfig(*upstream));
  constexpr int kRequests = 20;
  for (int i = 0; i < kRequests; ++i) {
    auto fd = Connect(proxy->listener(), 5s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    const std::string request = Get(absl::StrCat("/len/", 100 + i), "a", /*close=*/true);
    ASSERT_EQ(SendAll(fd->get(), request.data(), request.size(), DeadlineIn(5s)).bytes, request.size());
    Response r = ReadResponse(fd->get());
    ASSERT_TRUE(r.complete) << i << ": " << r.head;
    EXPECT_TRUE(absl::StartsWith(r.head, "HTTP/1.1 200 OK\r\n")) << r.head;
    EXPECT_TRUE(absl::StrContains(r.head, "\r\nConnection: close\r\n")) << r.head;
    EXPECT_EQ(r.body, Body(100 + i, 1)) << i;
    EXPECT_TRUE(ClosedCleanly(fd->get())) << "request " << i << ": the proxy kept the client connection open";
  }
  EXPECT_EQ(upstream->accepted(), 1u) << "every request should have reused the first upstream connection";
  EXPECT_EQ(proxy->Metric("skproxy_http_pool_requests_total", {{"cluster", "web"}, {"result", "miss"}}), 1);
  EXPECT_EQ(proxy->Metric("skproxy_http_pool_requests_total", {{"cluster", "web"}, {"result", "hit"}}), kRequests - 1);
  EXPECT_EQ(proxy->Metric("skproxy_http_pool_idle_connections", {{"cluster", "web"}}), 1);
}

TEST(HttpPoolTest, BodiesOfEveryFramingArriveByteExact) {
  auto upstream = StartServer(HttpUpstream({}));
  ASSERT_TRUE(upstream);
  SKPROXY_START_OR_SKIP(proxy, PoolConfig(*upstream));
  auto fd = Connect(proxy->listener(), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  // Keep-alive: several responses on one client connection, the pipelined pair sent in one write.
  const std::string two = Get("/len/200000") + Get("/chunked");
  ASSERT_EQ(SendAll(fd->get(), two.data(), two.size(), DeadlineIn(5s)).bytes, two.size());
  std::string carry;
  Response len = ReadResponse(fd->get(), 10s, &carry);
  ASSERT_TRUE(len.complete) << len.head;
  EXPECT_EQ(len.body, Body(200000, 1));
  EXPECT_FALSE(absl::StrContains(len.head, "Connection:")) << len.head;
  Response chunked = ReadResponse(fd->get(), 10s, &carry);
  ASSERT_TRUE(chunked.complete) << chunked.head;
  EXPECT_EQ(chunked.body, Chunked(Body(kChunkedBody, 2)));
  // A request body larger than the proxy's head buffer streams through, and comes back whole.
  const std::string body = Body(300000, 5);
  const std::string post = absl::StrCat("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: ", body.size(), "\r\n\r\n", body);
  ASSERT_EQ(SendAll(fd->get(), post.data(), post.size(), DeadlineIn(5s)).bytes, post.size());
  Response echo = ReadResponse(fd->get());
  ASSERT_TRUE(echo.complete) << echo.head;
  EXPECT_TRUE(echo.body == body) << "the echoed request body differs";
  // No framing: the body ends with the upstream's close, so the proxy closes the client after it.
  const std::string close = Get("/close");
  ASSERT_EQ(SendAll(fd->get(), close.data(), close.size(), DeadlineIn(5s)).bytes, close.size());
  Response until_close = ReadResponse(fd->get());
  ASSERT_TRUE(until_close.complete) << until_close.head;
  EXPECT_TRUE(absl::StrContains(until_close.head, "\r\nConnection: close\r\n")) << until_close.head;
  EXPECT_EQ(until_close.body, Body(50000, 3));
  // One upstream connection for the framed ones; the close-delimited one was not returned to the pool.
  EXPECT_EQ(upstream->accepted(), 1u);
  EXPECT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_http_pool_idle_connections", {{"cluster", "web"}}) == 0; }, 5s));
}

TEST(HttpPoolTest, UpstreamClosingAnIdleConnectionDoesNotFailTheNextRequest) {
  auto upstream = StartServer(HttpUpstream({}));
  ASSERT_TRUE(upstream);
  SKPROXY_START_OR_SKIP(proxy, PoolConfig(*upstream));
  for (int i = 0; i < 3; ++i) {
    auto fd = Connect(proxy->listener(), 5s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    // /once: the upstream answers with a framed body, then closes the idle connection without warning.
    const std::string request = Get("/once", "a", true);
    ASSERT_EQ(SendAll(fd->get(), request.data(), request.size(), DeadlineIn(5s)).bytes, request.size());
    Response r = ReadResponse(fd->get());
    ASSERT_TRUE(r.complete) << i << ": " << r.head;
    EXPECT_EQ(r.body, "once");
    // The pool saw the FIN and dropped the connection.
    EXPECT_TRUE(WaitFor([&] { return upstream->finished() == static_cast<size_t>(i + 1) &&
                                     proxy->Metric("skproxy_http_pool_idle_connections", {{"cluster", "web"}}) == 0; },
                        5s))
        << "the closed connection stayed in the pool";
  }
  EXPECT_EQ(upstream->accepted(), 3u);
  // A keep-alive client keeps its upstream connection between requests; the upstream closes that one too.
  // The next request is a POST, which must not be sent twice: the proxy sees the close before writing it.
  auto fd = Connect(proxy->listener(), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  const std::string once = Get("/once");
  ASSERT_EQ(SendAll(fd->get(), once.data(), once.size(), DeadlineIn(5s)).bytes, once.size());
  Response r = ReadResponse(fd->get());
  ASSERT_TRUE(r.complete) << r.head;
  ASSERT_TRUE(WaitFor([&] { return upstream->finished() == 4; }, 5s));
  const std::string post = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
  ASSERT_EQ(SendAll(fd->get(), post.data(), post.size(), DeadlineIn(5s)).bytes, post.size());
  Response echoed = ReadResponse(fd->get());
  ASSERT_TRUE(echoed.complete) << echoed.head;
  EXPECT_TRUE(absl::StartsWith(echoed.head, "HTTP/1.1 200")) << echoed.head;
  EXPECT_EQ(echoed.body, "hello");
  EXPECT_EQ(upstream->accepted(), 5u);
  EXPECT_EQ(proxy->Metric("skproxy_http_pool_retries_total", {{"cluster", "web"}}), 0);
}

TEST(HttpPoolTest, RequestOnAStaleConnectionIsRetriedOnceWhenIdempotent) {
  UpstreamOptions options;
  options.reset_second_request = true;
  auto upstream = StartServer(HttpUpstream(options));
  ASSERT_TRUE(upstream);
  SKPROXY_START_OR_SKIP(proxy, PoolConfig(*upstream));
  auto ask = [&](const std::string& request) {
    auto fd = Connect(proxy->listener(), 5s);
    if (!fd.ok()) return Response{};
    SendAll(fd->get(), request.data(), request.size(), DeadlineIn(5s));
    return ReadResponse(fd->get());
  };
  Response first = ask(Get("/", "a", true));
  ASSERT_TRUE(first.complete) << first.head;
  // The pooled connection resets the next request before any response byte: a GET goes again on a new
  // connection, and the client never sees the failure.
  Response second = ask(Get("/len/10", "a", true));
  ASSERT_TRUE(second.complete) << second.head;
  EXPECT_EQ(second.body, Body(10, 1));
  EXPECT_EQ(upstream->accepted(), 2u);
  EXPECT_EQ(proxy->Metric("skproxy_http_pool_retries_total", {{"cluster", "web"}}), 1);
  // A POST is not sent twice: the same failure is a 502.
  Response post = ask("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
  EXPECT_TRUE(absl::StartsWith(post.head, "HTTP/1.1 502")) << post.head;
  EXPECT_EQ(proxy->Metric("skproxy_http_pool_retries_total", {{"cluster", "web"}}), 1);
}

TEST(HttpPoolTest, LaterRequestsAreRoutedByTheirOwnHost) {
  auto web = StartServer(HttpUpstream({}));
  auto other = StartServer(HttpUpstream({}));
  ASSERT_TRUE(web && other);
  SKPROXY_START_OR_SKIP(proxy, PoolConfig(*web, "{ max_idle: 8 }", other.get()));
  auto fd = Connect(proxy->listener(), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  for (const std::string host : {"a", "other.example", "b"}) {
    const std::string request = Get("/", host);
    ASSERT_EQ(SendAll(fd->get(), request.data(), request.size(), DeadlineIn(5s)).bytes, request.size());
    Response r = ReadResponse(fd->get());
    ASSERT_TRUE(r.complete) << host << ": " << r.head;
    EXPECT_EQ(r.body, "ok");
  }
  EXPECT_EQ(web->accepted(), 1u);
  EXPECT_EQ(other->accepted(), 1u);
  EXPECT_EQ(proxy->Metric("skproxy_route_decisions_total", {{"listener", "web"}, {"route", "other"}}), 1);
  EXPECT_EQ(proxy->Metric("skproxy_route_decisions_total", {{"listener", "web"}, {"route", "default"}}), 2);
  // An Upgrade request is not pooled: it is spliced to a connection of its own, as without a pool.
  const std::string upgrade = "GET /len/5 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n";
  ASSERT_EQ(SendAll(fd->get(), upgrade.data(), upgrade.size(), DeadlineIn(5s)).bytes, upgrade.size());
  Response spliced = ReadResponse(fd->get());
  ASSERT_TRUE(spliced.complete) << spliced.head;
  EXPECT_EQ(spliced.body, Body(5, 1));
  EXPECT_EQ(web->accepted(), 2u);
}

TEST(HttpPoolTest, ListenerIdleTimeoutClosesAnIdleClientAndPoolsItsUpstream) {
  auto upstream = StartServer(HttpUpstream({}));
  ASSERT_TRUE(upstream);
  ProxyConfig config = PoolConfig(*upstream);
  const std::string at = "    cluster: web\n";
  config.listeners_and_clusters_yaml.insert(config.listeners_and_clusters_yaml.find(at) + at.size(),
                                            "    idle_timeout: 300ms\n");
  SKPROXY_START_OR_SKIP(proxy, config);
  auto fd = Connect(proxy->listener(), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  const std::string request = Get("/");
  ASSERT_EQ(SendAll(fd->get(), request.data(), request.size(), DeadlineIn(5s)).bytes, request.size());
  Response r = ReadResponse(fd->get());
  ASSERT_TRUE(r.complete) << r.head;
  // The keep-alive client says nothing more: the listener's idle_timeout closes it, and the upstream
  // connection it kept goes to the pool, where the next client finds it.
  EXPECT_TRUE(ClosedCleanly(fd->get(), 5s)) << "the idle client was not closed";
  EXPECT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_idle_timeouts_total", {{"listener", "web"}}) == 1 &&
                                   proxy->Metric("skproxy_http_pool_idle_connections", {{"cluster", "web"}}) == 1; },
                      5s));
  auto next = Connect(proxy->listener(), 5s);
  ASSERT_TRUE(next.ok()) << next.status();
  ASSERT_EQ(SendAll(next->get(), request.data(), request.size(), DeadlineIn(5s)).bytes, request.size());
  Response again = ReadResponse(next->get());
  ASSERT_TRUE(again.complete) << again.head;
  EXPECT_EQ(upstream->accepted(), 1u);
}

TEST(HttpPoolTest, LargeResponseStreamsThroughBoundedMemory) {
  std::atomic<uint64_t> sent{0};
  UpstreamOptions options;
  options.big_sent = &sent;
  auto upstream = StartServer(HttpUpstream(options));
  ASSERT_TRUE(upstream);
  SKPROXY_START_OR_SKIP(proxy, PoolConfig(*upstream));
  const uint64_t rss_before = ProcessRssBytes(proxy->pid());
  constexpr size_t kBig = 64 * MiB;
  auto fd = Connect(proxy->listener(), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  const std::string request = Get(absl::StrCat("/big/", kBig));
  ASSERT_EQ(SendAll(fd->get(), request.data(), request.size(), DeadlineIn(5s)).bytes, request.size());
  // The client reads nothing yet: the upstream must stall well short of the whole body, because the proxy
  // holds at most its buffer, not the response.
  uint64_t last = 0;
  ASSERT_TRUE(WaitFor([&] {
    const uint64_t now = sent.load();
    const bool stalled = now > 0 && now == last;
    last = now;
    return stalled;
  }, 20s, 300ms)) << "the upstream never stalled";
  EXPECT_LT(sent.load(), kBig) << "the whole body left the upstream while the client read nothing";
  const uint64_t rss_stalled = ProcessRssBytes(proxy->pid());
  EXPECT_LT(rss_stalled, rss_before + 16 * MiB) << "the proxy holds the response in memory";
  Response r = ReadResponse(fd->get(), 60s);
  ASSERT_TRUE(r.complete) << r.head;
  ASSERT_EQ(r.body.size(), kBig);
  const std::string piece = Body(64 * 1024, 4);
  bool exact = true;
  for (size_t at = 0; at < kBig && exact; at += piece.size()) exact = r.body.compare(at, piece.size(), piece) == 0;
  EXPECT_TRUE(exact) << "the body differs from what the upstream sent";
}

// response_timeout: an upstream that takes a request and never answers gets 504 (not a client left hanging
// until some idle timeout), its connection is closed rather than pooled, and the next request goes over a new
// one; one that stalls after part of a response resets the client, which must not take the part for whole.
TEST(HttpPoolTest, ResponseTimeoutAnswers504BeforeAResponseAndResetsAfter) {
  auto upstream = StartServer(HttpUpstream({}));
  ASSERT_TRUE(upstream);
  ProxyConfig config = PoolConfig(*upstream);
  const std::string log = absl::StrCat(::testing::TempDir(), "skproxy-pool-timeout-", getpid(), ".log");
  unlink(log.c_str());
  config.access_log = log;
  AddClusterKey(config, "response_timeout: 500ms");
  SKPROXY_START_OR_SKIP(proxy, config);
  {
    auto fd = Connect(proxy->listener(), 5s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    const std::string request = Get("/silent");
    const auto start = Clock::now();
    ASSERT_EQ(SendAll(fd->get(), request.data(), request.size(), DeadlineIn(5s)).bytes, request.size());
    Response r = ReadResponse(fd->get(), 10s);
    ASSERT_TRUE(r.complete) << "no answer within 10 s: " << r.head;
    EXPECT_TRUE(absl::StartsWith(r.head, "HTTP/1.1 504 ")) << r.head;
    EXPECT_TRUE(absl::StrContains(r.head, "\r\nConnection: close\r\n")) << r.head;
    EXPECT_GE(Clock::now() - start, 500ms) << "answered before response_timeout";
    EXPECT_TRUE(ClosedCleanly(fd->get()));
  }
  // The upstream connection was closed by the proxy, not kept.
  ASSERT_TRUE(upstream->WaitForFinished(1, 5s));
  EXPECT_TRUE(upstream->Finished()[0].eof);
  EXPECT_EQ(proxy->Metric("skproxy_http_pool_idle_connections", {{"cluster", "web"}}), 0);
  EXPECT_EQ(proxy->Metric("skproxy_upstream_response_timeouts_total", {{"cluster", "web"}, {"stage", "before_response"}}), 1);
  EXPECT_EQ(proxy->Metric("skproxy_local_responses_total", {{"listener", "web"}, {"status", "504"}}), 1);
  // Not retried on another connection: the upstream has the request.
  EXPECT_EQ(upstream->accepted(), 1u);
  EXPECT_EQ(proxy->Metric("skproxy_http_pool_retries_total", {{"cluster", "web"}}), 0);

  // After part of a response: the client gets those bytes and then a reset.
  {
    auto fd = Connect(proxy->listener(), 5s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    const std::string request = Get("/stall");
    ASSERT_EQ(SendAll(fd->get(), request.data(), request.size(), DeadlineIn(5s)).bytes, request.size());
    EXPECT_TRUE(EndsWithReset(fd->get())) << "a cut response ended without a reset";
  }
  ASSERT_TRUE(upstream->WaitForFinished(2, 5s));
  EXPECT_EQ(proxy->Metric("skproxy_upstream_response_timeouts_total", {{"cluster", "web"}, {"stage", "mid_response"}}), 1);

  // A slow answer within the timeout is not cut, and the pool goes on with a new connection.
  {
    auto fd = Connect(proxy->listener(), 5s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    const std::string request = Get("/len/10", "a", true);
    ASSERT_EQ(SendAll(fd->get(), request.data(), request.size(), DeadlineIn(5s)).bytes, request.size());
    Response r = ReadResponse(fd->get());
    ASSERT_TRUE(r.complete) << r.head;
    EXPECT_EQ(r.body, Body(10, 1));
  }
  EXPECT_EQ(upstream->accepted(), 3u);
  auto lines = [&] {
    std::vector<std::string> out;
    std::ifstream in(log);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  };
  ASSERT_TRUE(WaitFor([&] { return lines().size() == 3; }, 10s)) << lines().size();
  int timed_out = 0;
  for (const std::string& line : lines()) timed_out += absl::StrContains(line, "\"end\":\"response_timeout\"");
  EXPECT_EQ(timed_out, 2) << absl::StrJoin(lines(), "\n");
}

// RFC 9110 7.6.1: what the Connection header names, and the hop-by-hop fields, stop at the proxy, in both
// directions; the body's framing is untouched.
TEST(HttpPoolTest, HopByHopFieldsStopAtTheProxy) {
  auto upstream = StartServer(HttpUpstream({}));
  ASSERT_TRUE(upstream);
  SKPROXY_START_OR_SKIP(proxy, PoolConfig(*upstream));
  for (const std::string connection : {"close, X-Secret", "keep-alive, X-Secret"}) {
    auto fd = Connect(proxy->listener(), 5s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    const std::string request = absl::StrCat(
        "GET /head HTTP/1.1\r\nHost: a\r\nConnection: ", connection, "\r\nX-Secret: s\r\n"
        "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nX-Kept: k\r\n\r\n");
    ASSERT_EQ(SendAll(fd->get(), request.data(), request.size(), DeadlineIn(5s)).bytes, request.size());
    Response seen = ReadResponse(fd->get());
    ASSERT_TRUE(seen.complete) << seen.head;
    EXPECT_EQ(seen.body, "GET /head HTTP/1.1\r\nHost: a\r\nX-Kept: k\r\nTE: trailers\r\n\r\n")
        << connection << ": the upstream saw another head";
  }
  auto fd = Connect(proxy->listener(), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  // A body whose Content-Length the Connection header names arrives whole: framing fields are never dropped.
  const std::string post =
      "POST /echo HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, X-Secret\r\nX-Secret: s\r\n"
      "Content-Length: 5\r\n\r\nhello";
  ASSERT_EQ(SendAll(fd->get(), post.data(), post.size(), DeadlineIn(5s)).bytes, post.size());
  Response echo = ReadResponse(fd->get());
  ASSERT_TRUE(echo.complete) << echo.head;
  EXPECT_EQ(echo.body, "hello");
  // The response's hop-by-hop fields, and the one its Connection header names, do not reach the client.
  const std::string hop = Get("/hop");
  ASSERT_EQ(SendAll(fd->get(), hop.data(), hop.size(), DeadlineIn(5s)).bytes, hop.size());
  Response r = ReadResponse(fd->get());
  ASSERT_TRUE(r.complete) << r.head;
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nX-Kept: k\r\nContent-Length: 2\r\n\r\n");
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(upstream->accepted(), 1u);
}

// A client connection that starts on the pool and falls back to the splice (an HTTP/1.0 request, which the
// pool does not take) is one connection: counted once in skproxy_connections_total, and not active once
// closed.
TEST(HttpPoolTest, AConnectionThatFallsBackToTheSpliceIsCountedOnce) {
  auto upstream = StartServer(HttpUpstream({}));
  ASSERT_TRUE(upstream);
  SKPROXY_START_OR_SKIP(proxy, PoolConfig(*upstream));
  {
    auto fd = Connect(proxy->listener(), 5s);
    ASSERT_TRUE(fd.ok()) << fd.status();
    const std::string pooled = Get("/len/3");
    ASSERT_EQ(SendAll(fd->get(), pooled.data(), pooled.size(), DeadlineIn(5s)).bytes, pooled.size());
    Response first = ReadResponse(fd->get());
    ASSERT_TRUE(first.complete) << first.head;
    const std::string spliced = "GET /len/4 HTTP/1.0\r\n\r\n";
    ASSERT_EQ(SendAll(fd->get(), spliced.data(), spliced.size(), DeadlineIn(5s)).bytes, spliced.size());
    Response second = ReadResponse(fd->get());
    ASSERT_TRUE(second.complete) << second.head;
    EXPECT_EQ(second.body, Body(4, 1));
    EXPECT_EQ(upstream->accepted(), 2u) << "the HTTP/1.0 request should have been spliced on a connection of its own";
  }
  const LabelFilter userspace{{"listener", "web"}, {"datapath", "userspace"}};
  const LabelFilter sockmap{{"listener", "web"}, {"datapath", "sockmap"}};
  EXPECT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_connections_active", userspace) == 0 &&
                                   proxy->Metric("skproxy_connections_active", sockmap) == 0; }, 10s))
      << "still active: " << proxy->Metric("skproxy_connections_active", userspace) << " / "
      << proxy->Metric("skproxy_connections_active", sockmap);
  EXPECT_EQ(proxy->Metric("skproxy_connections_total", userspace) + proxy->Metric("skproxy_connections_total", sockmap), 1);
}

}  // namespace
}  // namespace skproxy::itest
