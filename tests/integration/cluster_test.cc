// Clusters through the binary: each load-balancing policy's spread over 1,000 connections (weights
// respected; the consistent hashes keep a client on one endpoint and move few clients when an endpoint
// leaves), active health checks taking an endpoint out and back (tcp and http), passive ejection, host-name
// endpoints resolved through /etc/hosts and through a DNS server the test runs on loopback, the idle timeout
// on both data paths, and max_connections of a listener and of a cluster.
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "tests/integration/test_helpers.h"

namespace skproxy::itest {
namespace {

// An upstream that says who it is: one byte, its id, then it waits for the client to close.
TcpServer::Handler IdHandler(char id) {
  return [id](int fd, ConnStats&, TcpServer& server) {
    if (SendAll(fd, &id, 1, server.handler_deadline()).bytes != 1) return;
    WaitForPeerClose(fd, server.handler_deadline());
  };
}

SocketAddress Ip4(const std::string& ip, uint16_t port) {
  auto a = ParseSocketAddress(absl::StrCat(ip, ":", port), /*allow_port_zero=*/true);
  return *a;
}

// A connection to `to`, from `source` when given (a loopback address such as 127.0.1.7: the consistent
// hashes look at the client's IP).
absl::StatusOr<UniqueFd> ConnectFrom(const std::optional<SocketAddress>& source, const SocketAddress& to) {
  if (!source) return Connect(to, 5s);
  UniqueFd fd(socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket");
  if (bind(fd.get(), source->sockaddr_ptr(), source->length) != 0) return absl::ErrnoToStatus(errno, "bind");
  if (connect(fd.get(), to.sockaddr_ptr(), to.length) != 0) return absl::ErrnoToStatus(errno, "connect");
  return fd;
}

// Connects through the proxy and returns the id of the upstream that answered ('\0': none did). With
// `keep`, the connection stays open in it.
char WhoAnswers(const SocketAddress& proxy, const std::optional<SocketAddress>& source = std::nullopt,
                UniqueFd* keep = nullptr) {
  auto fd = ConnectFrom(source, proxy);
  if (!fd.ok()) return '\0';
  char id = '\0';
  if (RecvExact(fd->get(), &id, 1, DeadlineIn(5s)).bytes != 1) return '\0';
  if (keep != nullptr) *keep = std::move(*fd);
  return id;
}

std::string Endpoints(const std::vector<std::pair<SocketAddress, int>>& weighted) {
  std::string y = "endpoints:\n";
  for (const auto& [address, weight] : weighted)
    absl::StrAppend(&y, "  - { address: \"", address.ToString(), "\", weight: ", weight, " }\n");
  return y;
}

ProxyConfig ClusterConfig(const std::string& extra, const std::string& datapath = "userspace") {
  ProxyConfig c;
  c.datapath = datapath;
  c.workers = 2;
  c.listeners.push_back(ListenerSpec{"web", Loopback4(0), "backend"});
  c.clusters.push_back(ClusterSpec{"backend", "1s", {}, extra});
  return c;
}

struct Upstreams {
  std::vector<std::unique_ptr<TcpServer>> servers;
  std::vector<SocketAddress> addresses;
};
Upstreams StartIdServers(const std::string& ids) {
  Upstreams u;
  for (char id : ids) {
    u.servers.push_back(StartServer(IdHandler(id)));
    if (u.servers.back()) u.addresses.push_back(u.servers.back()->endpoint());
  }
  return u;
}

// An HTTP upstream the test steers: it answers `GET /health` with the status set by set_status, any other
// request with 200 and its id in the body, one request per connection, and stops or resumes listening on
// its port (connections refused meanwhile). Requests are served one at a time on its own thread.
class SteeredServer {
 public:
  SteeredServer(SocketAddress address, char id) : address_(address), id_(id) {
    if (address_.port() == 0) address_.set_port(PickFreePort());
    Listen();
    thread_ = std::thread([this] { Run(); });
  }
  ~SteeredServer() {
    stop_ = true;
    thread_.join();
  }
  const SocketAddress& address() const { return address_; }
  void set_status(int status) { status_ = status; }
  void set_listening(bool on) { want_listening_ = on; }
  bool listening() const { return listening_; }
  int health_requests() const { return health_requests_; }

 private:
  void Listen() {
    auto fd = itest::Listen(address_, 64);
    if (fd.ok()) listen_fd_ = std::move(*fd);
    listening_ = listen_fd_.valid();
  }
  void Run() {
    while (!stop_) {
      if (want_listening_ != listening_) {
        if (want_listening_) {
          Listen();
        } else {
          listen_fd_.Reset();
          listening_ = false;
        }
      }
      if (!listening_) {
        PollFd(-1, 0, DeadlineIn(10ms));  // reconciles the wanted state at least every 10 ms
        continue;
      }
      if (PollFd(listen_fd_.get(), POLLIN, DeadlineIn(10ms)) == 0) continue;
      UniqueFd client(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!client.valid()) continue;
      Serve(client.get());
    }
  }
  void Serve(int fd) {
    std::string head;
    char buffer[1024];
    const Deadline deadline = DeadlineIn(2s);
    while (head.find("\r\n\r\n") == std::string::npos) {
      if (PollFd(fd, POLLIN, deadline) == 0) return;
      const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) return;
      head.append(buffer, static_cast<size_t>(n));
    }
    const bool health = head.rfind("GET /health ", 0) == 0;
    if (health) ++health_requests_;
    const int status = health ? status_.load() : 200;
    const std::string body(1, id_);
    const std::string response = absl::StrFormat(
        "HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", status, body.size(), body);
    SendAll(fd, response.data(), response.size(), deadline);
    shutdown(fd, SHUT_WR);
    WaitForPeerClose(fd, deadline);
  }

  SocketAddress address_;
  const char id_;
  UniqueFd listen_fd_;
  std::atomic<int> status_{200};
  std::atomic<bool> want_listening_{true}, listening_{false}, stop_{false};
  std::atomic<int> health_requests_{0};
  std::thread thread_;
};

// A GET for /data through the proxy: the id of the steered server that answered ('\0': none).
char HttpWho(const SocketAddress& proxy) {
  auto fd = Connect(proxy, 5s);
  if (!fd.ok()) return '\0';
  const std::string request = "GET /data HTTP/1.1\r\nHost: t\r\n\r\n";
  const Deadline deadline = DeadlineIn(5s);
  if (SendAll(fd->get(), request.data(), request.size(), deadline).bytes != request.size()) return '\0';
  std::string response;
  char buffer[512];
  while (PollFd(fd->get(), POLLIN, deadline) != 0) {
    const ssize_t n = recv(fd->get(), buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  if (response.rfind("HTTP/1.1 200", 0) != 0) return '\0';
  return response.back();
}

double EndpointMetric(ProxyProcess& proxy, const std::string& name, const SocketAddress& endpoint) {
  return proxy.Metric(name, {{"endpoint", endpoint.ToString()}});
}

// ---- load balancing -------------------------------------------------------------------------------

TEST(ClusterTest, RoundRobinSpreadsByWeight) {
  Upstreams up = StartIdServers("ABC");
  ASSERT_EQ(up.addresses.size(), 3u);
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig("lb_policy: round_robin\n" +
                                             Endpoints({{up.addresses[0], 1}, {up.addresses[1], 2},
                                                        {up.addresses[2], 3}})));
  std::map<char, int> count;
  for (int i = 0; i < 1000; ++i) ++count[WhoAnswers(proxy->listener())];
  EXPECT_EQ(count['\0'], 0);
  // The schedule is exact per cycle of 6 (shared by the workers): within one of the share.
  EXPECT_NEAR(count['A'], 1000 / 6.0, 2) << count['A'];
  EXPECT_NEAR(count['B'], 2000 / 6.0, 2) << count['B'];
  EXPECT_NEAR(count['C'], 3000 / 6.0, 2) << count['C'];
  EXPECT_EQ(proxy->Metric("skproxy_endpoint_connections_total", {{"endpoint", up.addresses[2].ToString()}}),
            count['C']);
}

TEST(ClusterTest, PlainStringEndpointsAreEqualWeights) {
  Upstreams up = StartIdServers("AB");
  ASSERT_EQ(up.addresses.size(), 2u);
  ProxyConfig c = SimpleProxyConfig("userspace", up.addresses);
  SKPROXY_START_OR_SKIP(proxy, c);
  std::map<char, int> count;
  for (int i = 0; i < 100; ++i) ++count[WhoAnswers(proxy->listener())];
  EXPECT_EQ(count['A'], 50);
  EXPECT_EQ(count['B'], 50);
}

TEST(ClusterTest, LeastConnectionsFillsByWeightAndPrefersTheIdle) {
  Upstreams up = StartIdServers("ABC");
  ASSERT_EQ(up.addresses.size(), 3u);
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig("lb_policy: least_connections\n" +
                                             Endpoints({{up.addresses[0], 1}, {up.addresses[1], 1},
                                                        {up.addresses[2], 2}})));
  // 1,000 connections in batches of 100 held open: each batch fills the endpoints 25/25/50.
  std::map<char, int> total;
  for (int batch = 0; batch < 10; ++batch) {
    std::vector<UniqueFd> held(100);
    std::map<char, int> count;
    for (auto& fd : held) ++count[WhoAnswers(proxy->listener(), std::nullopt, &fd)];
    EXPECT_EQ(count['\0'], 0);
    EXPECT_NEAR(count['A'], 25, 1) << "batch " << batch;
    EXPECT_NEAR(count['B'], 25, 1) << "batch " << batch;
    EXPECT_NEAR(count['C'], 50, 1) << "batch " << batch;
    for (auto& [id, n] : count) total[id] += n;
    held.clear();
    ASSERT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_cluster_connections_active") == 0; }, 10s));
  }
  EXPECT_NEAR(total['C'], 500, 10);
  // Not round robin: with A's connections gone and B, C still busy, every new connection goes to A.
  std::vector<UniqueFd> held(40);
  std::map<char, std::vector<size_t>> by_id;
  for (size_t i = 0; i < held.size(); ++i) by_id[WhoAnswers(proxy->listener(), std::nullopt, &held[i])].push_back(i);
  ASSERT_EQ(by_id['A'].size(), 10u);
  for (size_t i : by_id['A']) held[i].Reset();
  ASSERT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_cluster_connections_active") == 30; }, 10s));
  std::vector<UniqueFd> more(10);
  for (auto& fd : more) EXPECT_EQ(WhoAnswers(proxy->listener(), std::nullopt, &fd), 'A');
}

// Client i connects from 127.0.(1 + i / 250).(1 + i % 250).
SocketAddress ClientAddress(int i) { return Ip4(absl::StrCat("127.0.", 1 + i / 250, ".", 1 + i % 250), 0); }

class ConsistentHashTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ConsistentHashTest, SameClientSameEndpointWeightedAndFewMoveWhenOneLeaves) {
  constexpr int kClients = 500;
  Upstreams up = StartIdServers("AB");
  ASSERT_EQ(up.addresses.size(), 2u);
  auto third = StartServer(IdHandler('C'));
  ASSERT_TRUE(third);
  const SocketAddress c_address = third->endpoint();
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig(absl::StrCat("lb_policy: ", GetParam(), "\n",
                                                          Endpoints({{up.addresses[0], 1}, {up.addresses[1], 1},
                                                                     {c_address, 2}}),
                                                          "health_check: { type: tcp, interval: 100ms, timeout: 2s,"
                                                          " unhealthy_threshold: 1, healthy_threshold: 1 }\n")));
  // 1,000 connections: every client twice. Both land on one endpoint; the weights hold (C: half).
  std::vector<char> first(kClients);
  std::map<char, int> count;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < kClients; ++i) {
      const char id = WhoAnswers(proxy->listener(), ClientAddress(i));
      ASSERT_NE(id, '\0') << "client " << i;
      if (round == 0) first[i] = id;
      EXPECT_EQ(id, first[i]) << "client " << ClientAddress(i).ToString() << " moved";
      ++count[id];
    }
  }
  // 500 clients sampled (each twice), and endpoint keys that carry this run's ports, so the shares vary
  // from run to run: about 25% sampling and placement spread around 250/250/500.
  EXPECT_NEAR(count['A'], 250, 80);
  EXPECT_NEAR(count['B'], 250, 80);
  EXPECT_NEAR(count['C'], 500, 110);

  // C leaves (its health check fails): its clients move, the others stay where they were.
  third->Stop();
  ASSERT_TRUE(WaitFor([&] { return EndpointMetric(*proxy, "skproxy_endpoint_healthy", c_address) == 0; }, 10s));
  int stayed = 0, others = 0;
  for (int i = 0; i < kClients; ++i) {
    const char id = WhoAnswers(proxy->listener(), ClientAddress(i));
    ASSERT_TRUE(id == 'A' || id == 'B') << "client " << i << " got '" << id << "'";
    if (first[i] != 'C') {
      ++others;
      stayed += id == first[i];
    }
  }
  // Ring hash moves nobody else; Maglev's rebuilt table a few per cent at most (the paper's disruption).
  const double kept = static_cast<double>(stayed) / others;
  if (GetParam() == "ring_hash") {
    EXPECT_EQ(stayed, others);
  } else {
    EXPECT_GE(kept, 0.9) << stayed << " of " << others;
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, ConsistentHashTest, ::testing::Values("maglev", "ring_hash"),
                         [](const auto& info) { return info.param; });

// ---- health ----------------------------------------------------------------------------------------

// After a reload the endpoint gauges are the new generation's alone: the old one, kept alive by a
// connection still open, no longer health-checks (here it would go on marking A unhealthy every 100 ms).
TEST(ClusterTest, ReloadedHealthStateIsNotOverwrittenByTheOldGeneration) {
  SteeredServer a(Loopback4(0), 'A'), b(Loopback4(0), 'B');
  const std::string endpoints =
      absl::StrCat("endpoints: [\"", a.address().ToString(), "\", \"", b.address().ToString(), "\"]\n");
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig(endpoints +
                                   "health_check: { type: http, path: /health, expected_status: 200, interval: 100ms,"
                                   " timeout: 2s, unhealthy_threshold: 1, healthy_threshold: 1 }\n"));
  a.set_status(503);
  ASSERT_TRUE(WaitFor([&] { return EndpointMetric(*proxy, "skproxy_endpoint_healthy", a.address()) == 0; }, 5s));
  auto old_connection = Connect(proxy->listener(), 2s);  // keeps the first generation alive
  ASSERT_TRUE(old_connection.ok()) << old_connection.status();
  ASSERT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_connections_active") == 1; }, 5s));

  ProxyConfig next = proxy->config();
  next.clusters[0].extra = endpoints;  // no health check: both endpoints take connections
  auto reload = proxy->PostReload(next.ToYaml());
  ASSERT_TRUE(reload.ok()) << reload.status();
  ASSERT_EQ(reload->status, 200) << reload->body;
  ASSERT_TRUE(WaitFor([&] { return EndpointMetric(*proxy, "skproxy_endpoint_healthy", a.address()) == 1; }, 5s));
  const uint64_t checks = a.health_requests();
  // Ten health-check intervals of the old config: the gauge stays 1 at every scrape, and A sees no check.
  const Deadline end = DeadlineIn(1s);
  int scrapes = 0;
  while (Clock::now() < end) {
    ASSERT_EQ(EndpointMetric(*proxy, "skproxy_endpoint_healthy", a.address()), 1) << "after " << scrapes << " scrapes";
    ++scrapes;
  }
  EXPECT_EQ(a.health_requests(), checks);
  EXPECT_GE(scrapes, 5);
  std::map<char, int> count;
  for (int i = 0; i < 20; ++i) ++count[HttpWho(proxy->listener())];
  EXPECT_EQ(count['A'], 10);
  EXPECT_EQ(count['B'], 10);
}

TEST(ClusterTest, HttpHealthCheckTakesAnEndpointOutAndBack) {
  SteeredServer a(Loopback4(0), 'A'), b(Loopback4(0), 'B');
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig(absl::StrCat(
                                   "endpoints: [\"", a.address().ToString(), "\", \"", b.address().ToString(), "\"]\n",
                                   "health_check: { type: http, path: /health, expected_status: 200, interval: 100ms,"
                                   " timeout: 2s, unhealthy_threshold: 2, healthy_threshold: 2 }\n")));
  ASSERT_TRUE(WaitFor([&] { return a.health_requests() > 0 && b.health_requests() > 0; }, 5s));
  a.set_status(503);
  ASSERT_TRUE(WaitFor([&] { return EndpointMetric(*proxy, "skproxy_endpoint_healthy", a.address()) == 0; }, 5s))
      << proxy->StderrTail();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(HttpWho(proxy->listener()), 'B');
  EXPECT_GE(proxy->Metric("skproxy_health_checks_total", {{"endpoint", a.address().ToString()}, {"result", "fail"}}),
            2);
  a.set_status(200);
  ASSERT_TRUE(WaitFor([&] { return EndpointMetric(*proxy, "skproxy_endpoint_healthy", a.address()) == 1; }, 5s));
  std::map<char, int> count;
  for (int i = 0; i < 20; ++i) ++count[HttpWho(proxy->listener())];
  EXPECT_EQ(count['A'], 10);
  EXPECT_EQ(count['B'], 10);
  EXPECT_NE(proxy->Stderr().find("is unhealthy (health check)"), std::string::npos);
}

TEST(ClusterTest, TcpHealthCheckTakesAnEndpointOutAndBack) {
  SteeredServer a(Loopback4(0), 'A'), b(Loopback4(0), 'B');
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig(absl::StrCat(
                                   "endpoints: [\"", a.address().ToString(), "\", \"", b.address().ToString(), "\"]\n",
                                   "health_check: { type: tcp, interval: 100ms, timeout: 2s,"
                                   " unhealthy_threshold: 2, healthy_threshold: 1 }\n")));
  a.set_listening(false);
  ASSERT_TRUE(WaitFor([&] { return EndpointMetric(*proxy, "skproxy_endpoint_healthy", a.address()) == 0; }, 5s));
  const double failures_before = EndpointMetric(*proxy, "skproxy_endpoint_connect_failures_total", a.address());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(HttpWho(proxy->listener()), 'B');
  // No new connection tried the unhealthy endpoint.
  EXPECT_EQ(EndpointMetric(*proxy, "skproxy_endpoint_connect_failures_total", a.address()), failures_before);
  a.set_listening(true);
  ASSERT_TRUE(WaitFor([&] { return EndpointMetric(*proxy, "skproxy_endpoint_healthy", a.address()) == 1; }, 5s));
  std::map<char, int> count;
  for (int i = 0; i < 20; ++i) ++count[HttpWho(proxy->listener())];
  EXPECT_EQ(count['A'], 10);
  EXPECT_EQ(count['B'], 10);
}

TEST(ClusterTest, NoHealthyEndpointClosesTheClientAndCounts) {
  SteeredServer a(Loopback4(0), 'A');
  a.set_status(500);
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig(absl::StrCat(
                                   "endpoints: [\"", a.address().ToString(), "\"]\n",
                                   "health_check: { type: http, path: /health, interval: 100ms }\n")));
  ASSERT_TRUE(WaitFor([&] { return EndpointMetric(*proxy, "skproxy_endpoint_healthy", a.address()) == 0; }, 5s));
  auto fd = Connect(proxy->listener(), 5s);
  ASSERT_TRUE(fd.ok());
  EXPECT_TRUE(WaitForPeerClose(fd->get(), DeadlineIn(5s)).closed);
  EXPECT_TRUE(WaitFor(
      [&] { return proxy->Metric("skproxy_connections_rejected_total", {{"reason", "no_healthy_endpoint"}}) == 1; },
      5s));
  EXPECT_EQ(proxy->Metric("skproxy_cluster_rejections_total", {{"reason", "no_healthy_endpoint"}}), 1);
}

TEST(ClusterTest, ConsecutiveConnectFailuresEjectAnEndpointForAWhile) {
  SteeredServer good(Loopback4(0), 'G');
  const SocketAddress refused = RefusedEndpoint();
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig(absl::StrCat(
                                   "endpoints: [\"", refused.ToString(), "\", \"", good.address().ToString(), "\"]\n",
                                   "outlier_detection: { consecutive_failures: 3, ejection_time: 5s }\n")));
  // Every client is served: a refused connect goes on to the next endpoint.
  for (int i = 0; i < 6; ++i) EXPECT_EQ(HttpWho(proxy->listener()), 'G');
  EXPECT_EQ(EndpointMetric(*proxy, "skproxy_endpoint_connect_failures_total", refused), 3);
  EXPECT_EQ(EndpointMetric(*proxy, "skproxy_endpoint_ejections_total", refused), 1);
  EXPECT_EQ(EndpointMetric(*proxy, "skproxy_endpoint_ejected", refused), 1);
  // Ejected: no connection tries it.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(HttpWho(proxy->listener()), 'G');
  EXPECT_EQ(EndpointMetric(*proxy, "skproxy_endpoint_connect_failures_total", refused), 3);
  // The ejection ends: it is tried again (and fails again).
  ASSERT_TRUE(WaitFor([&] { return EndpointMetric(*proxy, "skproxy_endpoint_ejected", refused) == 0; }, 10s));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(HttpWho(proxy->listener()), 'G');
  EXPECT_GT(EndpointMetric(*proxy, "skproxy_endpoint_connect_failures_total", refused), 3);
}

// ---- DNS -------------------------------------------------------------------------------------------

TEST(ClusterTest, LocalhostResolvesThroughEtcHosts) {
  SteeredServer a(Loopback4(0), 'A');
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig(absl::StrCat("endpoints: [\"localhost:", a.address().port(), "\"]\n")));
  EXPECT_EQ(HttpWho(proxy->listener()), 'A');
  EXPECT_GE(proxy->Metric("skproxy_dns_resolutions_total",
                          {{"endpoint", absl::StrCat("localhost:", a.address().port())}, {"result", "ok"}}),
            1);
}

// A DNS server on loopback UDP for one name: A and AAAA queries get the addresses the test sets (of that
// family) with the TTL it sets; with set_failing, every query gets SERVFAIL; other names get NXDOMAIN.
class TestDnsServer {
 public:
  explicit TestDnsServer(std::string name) : name_(std::move(name)) {
    fd_.Reset(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    SocketAddress any = Loopback4(0);
    bind(fd_.get(), any.sockaddr_ptr(), any.length);
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&bound), &length);
    address_ = SocketAddressFrom(reinterpret_cast<sockaddr*>(&bound), length);
    thread_ = std::thread([this] { Run(); });
  }
  ~TestDnsServer() {
    stop_ = true;
    thread_.join();
  }
  const SocketAddress& address() const { return address_; }
  // IPv4 and IPv6 literals, in the order the answers list them.
  void set_answer(const std::vector<std::string>& ips, uint32_t ttl = 1) {
    std::lock_guard<std::mutex> lock(mu_);
    answers_ = ips;
    ttl_ = ttl;
  }
  void set_answer(const std::string& ip) { set_answer(std::vector<std::string>{ip}); }
  void set_failing(bool failing) { failing_ = failing; }
  int queries() const { return queries_; }

 private:
  void Run() {
    uint8_t q[512];
    while (!stop_) {
      if (PollFd(fd_.get(), POLLIN, DeadlineIn(20ms)) == 0) continue;
      sockaddr_storage from{};
      socklen_t from_length = sizeof(from);
      const ssize_t n = recvfrom(fd_.get(), q, sizeof(q), 0, reinterpret_cast<sockaddr*>(&from), &from_length);
      if (n < 17) continue;
      // The question: labels from byte 12, then type and class.
      std::string name;
      size_t at = 12;
      while (at < static_cast<size_t>(n) && q[at] != 0) {
        const size_t len = q[at];
        if (at + 1 + len > static_cast<size_t>(n)) break;
        if (!name.empty()) name += '.';
        name.append(reinterpret_cast<char*>(q + at + 1), len);
        at += 1 + len;
      }
      if (at + 5 > static_cast<size_t>(n)) continue;
      const size_t question_end = at + 5;
      const uint16_t type = static_cast<uint16_t>(q[at + 1] << 8 | q[at + 2]);
      ++queries_;
      std::vector<uint8_t> r(q, q + question_end);
      r[2] = 0x81;  // QR, RD
      const bool known = absl::AsciiStrToLower(name) == name_;
      r[3] = failing_ ? 0x82 : known ? 0x80 : 0x83;  // RA; SERVFAIL, NOERROR or NXDOMAIN
      r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;  // ANCOUNT, NSCOUNT, ARCOUNT
      if (known && !failing_ && (type == 1 || type == 28)) {
        std::vector<std::string> answers;
        uint32_t ttl = 0;
        {
          std::lock_guard<std::mutex> lock(mu_);
          answers = answers_;
          ttl = ttl_;
        }
        uint8_t count = 0;
        for (const std::string& ip : answers) {
          uint8_t bytes[16];
          const int family = type == 1 ? AF_INET : AF_INET6;
          if (inet_pton(family, ip.c_str(), bytes) != 1) continue;
          const uint8_t size = type == 1 ? 4 : 16;
          // name pointer, type, class IN, TTL, length, address
          const uint8_t record[] = {0xc0, 0x0c, 0, static_cast<uint8_t>(type), 0, 1,
                                    static_cast<uint8_t>(ttl >> 24), static_cast<uint8_t>(ttl >> 16),
                                    static_cast<uint8_t>(ttl >> 8), static_cast<uint8_t>(ttl), 0, size};
          r.insert(r.end(), record, record + sizeof(record));
          r.insert(r.end(), bytes, bytes + size);
          ++count;
        }
        r[7] = count;
      }
      sendto(fd_.get(), r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&from), from_length);
    }
  }

  std::string name_;
  UniqueFd fd_;
  SocketAddress address_;
  std::mutex mu_;
  std::vector<std::string> answers_;
  uint32_t ttl_ = 1;
  std::atomic<bool> failing_{false};
  std::atomic<int> queries_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Whether the scrape has a sample of `metric` for endpoint label `endpoint`.
bool HasEndpointSeries(const ProxyProcess& proxy, const std::string& metric, const std::string& endpoint) {
  auto samples = proxy.Metrics();
  if (!samples.ok()) return true;  // unknown: not "gone"
  const std::string needle = absl::StrCat("endpoint=\"", endpoint, "\"");
  for (const auto& [key, value] : *samples) {
    if (absl::StartsWith(key, metric + "{") && absl::StrContains(key, needle)) return true;
  }
  return false;
}

// An upstream on `address` that says who it is (IdHandler).
std::unique_ptr<TcpServer> IdServerOn(const SocketAddress& address, char id) {
  TcpServer::Options options;
  options.family = address.family();
  options.address = address;
  auto server = TcpServer::Start(options, IdHandler(id));
  return server.ok() ? std::move(*server) : nullptr;
}

// A name with several A and AAAA records is as many endpoints, each with the name's weight: beside a
// literal endpoint of weight 3, three addresses of a name of weight 2 take 2/9 of the connections each.
TEST(ClusterTest, HostNameExpandsToEveryAddressEachWithItsWeight) {
  const uint16_t port = PickFreePort();
  auto one = IdServerOn(Ip4("127.0.0.1", port), '1');
  auto two = IdServerOn(Ip4("127.0.0.2", port), '2');
  auto three = IdServerOn(Ip4("127.0.0.3", port), '3');
  auto six = IdServerOn(*ParseSocketAddress(absl::StrCat("[::1]:", port)), '6');
  ASSERT_TRUE(one && two && three && six);
  TestDnsServer dns("backend.skproxy.test");
  dns.set_answer({"127.0.0.2", "127.0.0.3", "::1"}, 300);
  const std::string name = absl::StrCat("backend.skproxy.test:", port);
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig(absl::StrCat("endpoints:\n  - { address: \"", name, "\", weight: 2 }\n",
                                                          "  - { address: \"127.0.0.1:", port, "\", weight: 3 }\n",
                                                          "dns_resolvers: [\"", dns.address().ToString(), "\"]\n")));
  EXPECT_EQ(proxy->Metric("skproxy_dns_addresses", {{"endpoint", name}}), 3);
  EXPECT_EQ(proxy->Metric("skproxy_cluster_healthy_endpoints", {{"cluster", "backend"}}), 4);
  std::map<char, int> seen;
  for (int i = 0; i < 45; ++i) ++seen[WhoAnswers(proxy->listener())];
  EXPECT_EQ(seen['1'], 15);
  EXPECT_EQ(seen['2'], 10);
  EXPECT_EQ(seen['3'], 10);
  EXPECT_EQ(seen['6'], 10);
  EXPECT_EQ(proxy->Metric("skproxy_endpoint_connections_total", {{"endpoint", name + "/127.0.0.2"}}), 10);
  EXPECT_EQ(proxy->Metric("skproxy_endpoint_connections_total", {{"endpoint", name + "/::1"}}), 10);
}

// Each address of a name is health-checked on its own: the one nobody listens on is taken out, and no
// client connection tries it.
TEST(ClusterTest, EachAddressOfANameIsCheckedOnItsOwn) {
  const uint16_t port = PickFreePort();
  auto two = IdServerOn(Ip4("127.0.0.2", port), '2');
  ASSERT_TRUE(two);
  TestDnsServer dns("backend.skproxy.test");
  dns.set_answer({"127.0.0.2", "127.0.0.4"}, 300);  // 127.0.0.4: nobody listens
  const std::string name = absl::StrCat("backend.skproxy.test:", port);
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig(absl::StrCat(
                                   "endpoints: [\"", name, "\"]\n", "dns_resolvers: [\"", dns.address().ToString(),
                                   "\"]\n", "health_check: { type: tcp, interval: 100ms, timeout: 1s, ",
                                   "unhealthy_threshold: 1, healthy_threshold: 1 }\n")));
  const std::string dead = name + "/127.0.0.4";
  ASSERT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_endpoint_healthy", {{"endpoint", dead}}) == 0 &&
                                   proxy->Metric("skproxy_cluster_healthy_endpoints", {{"cluster", "backend"}}) == 1; },
                      10s));
  EXPECT_EQ(proxy->Metric("skproxy_endpoint_healthy", {{"endpoint", name + "/127.0.0.2"}}), 1);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(WhoAnswers(proxy->listener()), '2');
  EXPECT_EQ(proxy->Metric("skproxy_endpoint_connect_failures_total", {{"endpoint", dead}}), 0);
  EXPECT_GT(proxy->Metric("skproxy_health_checks_total", {{"endpoint", dead}, {"result", "fail"}}), 0);
}

// The answer's TTL decides when a name is resolved again (dns_refresh is an hour here, so only the TTL
// can): an address that leaves the answer takes no new connection, while the connection it holds goes on
// until its client closes, and then its series go; a failure keeps the last answer, counted.
TEST(ClusterTest, TtlDrivesReResolutionRemovedAddressesDrainFailuresKeepTheLastAnswer) {
  const uint16_t port = PickFreePort();
  auto two = IdServerOn(Ip4("127.0.0.2", port), '2');
  auto three = IdServerOn(Ip4("127.0.0.3", port), '3');
  ASSERT_TRUE(two && three);
  TestDnsServer dns("backend.skproxy.test");
  dns.set_answer({"127.0.0.2"}, /*ttl=*/1);
  const std::string name = absl::StrCat("backend.skproxy.test:", port);
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig(absl::StrCat("endpoints: [\"", name, "\"]\n", "dns_resolvers: [\"",
                                                          dns.address().ToString(), "\"]\n",
                                                          "dns_refresh: 1h\ndns_min_refresh: 200ms\n")));
  UniqueFd held;
  ASSERT_EQ(WhoAnswers(proxy->listener(), std::nullopt, &held), '2');
  const int queries_before = dns.queries();
  dns.set_answer({"127.0.0.3"}, /*ttl=*/1);
  ASSERT_TRUE(WaitFor([&] { return WhoAnswers(proxy->listener()) == '3'; }, 10s)) << proxy->StderrTail();
  EXPECT_GT(dns.queries(), queries_before);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(WhoAnswers(proxy->listener()), '3');
  // The removed address drains: its connection is still open and counted, and it is not usable.
  const std::string removed = name + "/127.0.0.2";
  EXPECT_EQ(proxy->Metric("skproxy_endpoint_connections_active", {{"endpoint", removed}}), 1);
  EXPECT_EQ(proxy->Metric("skproxy_endpoint_healthy", {{"endpoint", removed}}), 0);
  EXPECT_EQ(two->accepted(), two->finished() + 1);  // the held one, still open upstream
  char more = 'x';
  EXPECT_EQ(send(held.get(), &more, 1, MSG_NOSIGNAL), 1);  // and it still takes bytes
  held.Reset();
  EXPECT_TRUE(two->WaitForFinished(two->accepted(), 5s));
  EXPECT_TRUE(WaitFor([&] { return !HasEndpointSeries(*proxy, "skproxy_endpoint_connections_active", removed); }, 5s));
  // DNS fails from now on (the next query is due at the TTL): the last answer stays, and the failure is
  // counted.
  dns.set_failing(true);
  ASSERT_TRUE(WaitFor([&] {
    return proxy->Metric("skproxy_dns_resolutions_total", {{"endpoint", name}, {"result", "fail"}}) >= 1;
  }, 15s)) << proxy->StderrTail();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(WhoAnswers(proxy->listener()), '3');
  EXPECT_EQ(proxy->Metric("skproxy_dns_addresses", {{"endpoint", name}}), 1);
  EXPECT_NE(proxy->Stderr().find("keeping the last 1 address"), std::string::npos) << proxy->StderrTail();
}

// A long TTL is cut to dns_max_refresh; with respect_dns_ttl false, dns_refresh alone decides.
TEST(ClusterTest, DnsRefreshBoundsAndIgnoringTheTtl) {
  for (const std::string bounds : {"dns_refresh: 1h\ndns_min_refresh: 100ms\ndns_max_refresh: 300ms\n",
                                   "respect_dns_ttl: false\ndns_refresh: 300ms\n"}) {
    SCOPED_TRACE(bounds);
    const uint16_t port = PickFreePort();
    auto two = IdServerOn(Ip4("127.0.0.2", port), '2');
    auto three = IdServerOn(Ip4("127.0.0.3", port), '3');
    ASSERT_TRUE(two && three);
    TestDnsServer dns("backend.skproxy.test");
    dns.set_answer({"127.0.0.2"}, /*ttl=*/3600);
    SKPROXY_START_OR_SKIP(proxy, ClusterConfig(absl::StrCat("endpoints: [\"backend.skproxy.test:", port, "\"]\n",
                                                            "dns_resolvers: [\"", dns.address().ToString(), "\"]\n",
                                                            bounds)));
    EXPECT_EQ(WhoAnswers(proxy->listener()), '2');
    dns.set_answer({"127.0.0.3"}, /*ttl=*/3600);
    EXPECT_TRUE(WaitFor([&] { return WhoAnswers(proxy->listener()) == '3'; }, 10s)) << proxy->StderrTail();
  }
}

TEST(ClusterTest, UnresolvableNameTakesNoConnectionAndIsCounted) {
  SteeredServer good(Loopback4(0), 'G');
  TestDnsServer dns("backend.skproxy.test");
  SKPROXY_START_OR_SKIP(proxy, ClusterConfig(absl::StrCat("endpoints: [\"nothing.skproxy.test:80\", \"",
                                                          good.address().ToString(), "\"]\n",
                                                          "dns_resolvers: [\"", dns.address().ToString(), "\"]\n")));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(HttpWho(proxy->listener()), 'G');
  EXPECT_GE(proxy->Metric("skproxy_dns_resolutions_total",
                          {{"endpoint", "nothing.skproxy.test:80"}, {"result", "fail"}}),
            1);
  EXPECT_EQ(proxy->Metric("skproxy_dns_addresses", {{"endpoint", "nothing.skproxy.test:80"}}), 0);
  EXPECT_EQ(proxy->Metric("skproxy_cluster_healthy_endpoints", {{"cluster", "backend"}}), 1);
}

// ---- idle timeout ----------------------------------------------------------------------------------

class IdleTimeoutTest : public ::testing::TestWithParam<std::string> {};

TEST_P(IdleTimeoutTest, IdlePairClosedBusyPairKept) {
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  ProxyConfig c = SimpleProxyConfig(GetParam(), {echo->endpoint()});
  c.workers = 1;
  c.listeners[0].extra = "idle_timeout: 1s\n";
  SKPROXY_START(proxy, baseline_fds, c);

  auto exchange = [](int fd, const std::string& text) {
    const Deadline deadline = DeadlineIn(5s);
    if (SendAll(fd, text.data(), text.size(), deadline).bytes != text.size()) return false;
    std::string got(text.size(), '\0');
    return RecvExact(fd, got.data(), got.size(), deadline).bytes == text.size() && got == text;
  };
  auto idle = Connect(proxy->listener(), 5s);
  auto busy = Connect(proxy->listener(), 5s);
  ASSERT_TRUE(idle.ok() && busy.ok());
  ASSERT_TRUE(exchange(idle->get(), "hello"));
  ASSERT_TRUE(exchange(busy->get(), "hello"));
  if (GetParam() == "sockmap") {
    EXPECT_EQ(proxy->Metric("skproxy_connections_active", {{"datapath", "sockmap"}}), 2)
        << "both pairs must be on the kernel path";
  }
  // The busy pair exchanges a message every 200 ms for 3 s; the idle one is closed meanwhile.
  const auto start = Clock::now();
  for (int i = 0; i < 15; ++i) {
    ASSERT_TRUE(PaceUntil(start + (i + 1) * 200ms, DeadlineIn(5s), nullptr));
    ASSERT_TRUE(exchange(busy->get(), absl::StrCat("tick ", i))) << "busy pair broken at tick " << i;
  }
  const CloseResult closed = WaitForPeerClose(idle->get(), DeadlineIn(1s));
  EXPECT_TRUE(closed.closed) << "the idle pair is still open after 3 s";
  EXPECT_FALSE(closed.reset) << "an idle close is a FIN, not a reset";
  EXPECT_EQ(proxy->Metric("skproxy_idle_timeouts_total"), 1);
  // Once the busy pair stops talking it goes the same way.
  EXPECT_TRUE(WaitForPeerClose(busy->get(), DeadlineIn(4s)).closed);
  EXPECT_EQ(proxy->Metric("skproxy_idle_timeouts_total"), 2);
  EXPECT_PROXY_IDLE(proxy, baseline_fds);
}

INSTANTIATE_TEST_SUITE_P(Datapaths, IdleTimeoutTest, ::testing::Values("sockmap", "userspace"), DatapathParamName);

// ---- limits ----------------------------------------------------------------------------------------

TEST(ClusterTest, ListenerMaxConnectionsClosesTheNextAndCounts) {
  Upstreams up = StartIdServers("A");
  ASSERT_EQ(up.addresses.size(), 1u);
  ProxyConfig c = SimpleProxyConfig("userspace", up.addresses);
  c.listeners[0].extra = "max_connections: 2\n";
  SKPROXY_START_OR_SKIP(proxy, c);
  UniqueFd one, two;
  ASSERT_EQ(WhoAnswers(proxy->listener(), std::nullopt, &one), 'A');
  ASSERT_EQ(WhoAnswers(proxy->listener(), std::nullopt, &two), 'A');
  auto third = Connect(proxy->listener(), 5s);
  ASSERT_TRUE(third.ok());
  const CloseResult closed = WaitForPeerClose(third->get(), DeadlineIn(5s));
  EXPECT_TRUE(closed.closed);
  EXPECT_EQ(closed.discarded, 0u) << "a rejected client must not reach an upstream";
  EXPECT_EQ(proxy->Metric("skproxy_connections_rejected_total", {{"reason", "listener_max_connections"}}), 1);
  EXPECT_EQ(up.servers[0]->accepted(), 2u);
  one.Reset();
  ASSERT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_cluster_connections_active") == 1; }, 5s));
  UniqueFd again;
  EXPECT_EQ(WhoAnswers(proxy->listener(), std::nullopt, &again), 'A');
}

TEST(ClusterTest, ClusterMaxConnectionsHoldsAcrossListeners) {
  Upstreams up = StartIdServers("A");
  ASSERT_EQ(up.addresses.size(), 1u);
  ProxyConfig c = ClusterConfig(absl::StrCat("endpoints: [\"", up.addresses[0].ToString(), "\"]\n",
                                             "max_connections: 2\n"));
  c.listeners.push_back(ListenerSpec{"other", Loopback4(0), "backend"});
  SKPROXY_START_OR_SKIP(proxy, c);
  UniqueFd one, two;
  ASSERT_EQ(WhoAnswers(proxy->listener(0), std::nullopt, &one), 'A');
  ASSERT_EQ(WhoAnswers(proxy->listener(1), std::nullopt, &two), 'A');
  auto third = Connect(proxy->listener(0), 5s);
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE(WaitForPeerClose(third->get(), DeadlineIn(5s)).closed);
  EXPECT_EQ(proxy->Metric("skproxy_connections_rejected_total",
                          {{"listener", "web"}, {"reason", "cluster_max_connections"}}),
            1);
  EXPECT_EQ(proxy->Metric("skproxy_cluster_rejections_total", {{"reason", "max_connections"}}), 1);
  EXPECT_EQ(proxy->Metric("skproxy_cluster_connections_active", {{"cluster", "backend"}}), 2);
  two.Reset();
  ASSERT_TRUE(WaitFor([&] { return proxy->Metric("skproxy_cluster_connections_active") == 1; }, 5s));
  UniqueFd again;
  EXPECT_EQ(WhoAnswers(proxy->listener(0), std::nullopt, &again), 'A');
}

}  // namespace
}  // namespace skproxy::itest
