// The inspectors and the route table without sockets: a fixture table of what a client sends first and
// what the listener does with it, each also fed one byte at a time (the answer must not depend on how
// the bytes were split).
#include <arpa/inet.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "config/config.h"
#include "gtest/gtest.h"
#include "proxy/inspect/http_inspector.h"
#include "proxy/inspect/inspection.h"
#include "proxy/inspect/local_response.h"
#include "proxy/inspect/proxy_protocol.h"
#include "proxy/inspect/tls_inspector.h"
#include "proxy/route_table.h"
#include "tests/inspect/client_hello.h"

namespace skproxy {
namespace {

using Kind = Inspection::Outcome::Kind;

constexpr char kConfig[] = R"(
listeners:
  - name: web
    address: "127.0.0.1:8080"
    protocol: http
    cluster: web
    x_forwarded_for: true
    inspect: { max_bytes: 1KiB }
    routes:
      - name: api
        match: { host: "api.example.com", path_prefix: "/v1/" }
        cluster: api
      - match: { host: "*.example.com" }
        cluster: web
  - name: strict
    address: "127.0.0.1:8081"
    protocol: http
    routes:
      - match: { host: "only.example.com" }
        cluster: web
  - name: tls
    address: "127.0.0.1:8443"
    protocol: tls
    routes:
      - match: { sni: "a.example.com" }
        cluster: api
      - match: { sni: "*.b.example.com" }
        cluster: web
  - name: pp
    address: "127.0.0.1:8444"
    cluster: web
    proxy_protocol: v2
clusters:
  - { name: web, endpoints: ["127.0.0.1:9000"] }
  - { name: api, endpoints: ["127.0.0.1:9001"], proxy_protocol: v1 }
)";

const config::Config& TestConfig() {
  static const config::Config* config = [] {
    auto parsed = config::ParseConfig(kConfig, "inspect_test.yaml");
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    return new config::Config(*std::move(parsed));
  }();
  return *config;
}

SocketAddress Addr(const char* text) { return *ParseSocketAddress(text); }

struct Result {
  Inspection::Outcome outcome;
  std::string forward;
  std::string client;
};

// Feeds `input` whole, or one byte at a time when `bytewise`.
Result Inspect(size_t listener_index, const std::string& input, bool bytewise) {
  const config::Listener& listener = TestConfig().listeners.at(listener_index);
  RouteTable routes(listener);
  Inspection inspection(listener, routes, Addr("192.0.2.7:4321"), Addr("127.0.0.1:8080"));
  Result r;
  const std::string data = input.substr(0, listener.inspect.max_bytes);
  for (size_t n = bytewise ? 1 : data.size(); n <= data.size(); ++n) {
    r.outcome = inspection.Feed(std::string_view(data).substr(0, n));
    if (r.outcome.kind != Kind::kNeedMore) break;
  }
  if (r.outcome.kind == Kind::kRouted) r.forward = inspection.Forward(data);
  r.client = inspection.client().ToString();
  return r;
}

struct Fixture {
  const char* name;
  size_t listener;  // index in kConfig
  std::string input;
  Kind kind;
  int route_or_status;  // kRouted: the route (RouteTable::kDefault/kNone); kRejected: the HTTP status (0: close)
};

std::vector<Fixture> Fixtures() {
  const std::string big_header = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(2000, 'x') + "\r\n\r\n";
  return {
      {"api path", 0, "GET /v1/users HTTP/1.1\r\nHost: api.example.com\r\n\r\n", Kind::kRouted, 0},
      {"api host case and port", 0, "GET /v1/x HTTP/1.1\r\nhost: API.Example.COM:8080\r\n\r\n", Kind::kRouted, 0},
      {"api host other path", 0, "GET /v2/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n", Kind::kRouted, 1},
      {"wildcard", 0, "GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n", Kind::kRouted, 1},
      {"wildcard many labels", 0, "GET / HTTP/1.1\r\nHost: a.b.example.com\r\n\r\n", Kind::kRouted, 1},
      {"wildcard not the apex", 0, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", Kind::kRouted, RouteTable::kDefault},
      {"absolute form wins over Host", 0, "GET http://api.example.com/v1/a?q HTTP/1.1\r\nHost: x\r\n\r\n",
       Kind::kRouted, 0},
      {"bare LF", 0, "GET /v1/ HTTP/1.1\nHost: api.example.com\n\n", Kind::kRouted, 0},
      {"HTTP/1.0 without Host", 0, "GET / HTTP/1.0\r\n\r\n", Kind::kRouted, RouteTable::kDefault},
      {"other host", 0, "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", Kind::kRouted, RouteTable::kDefault},
      {"no route no default", 1, "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", Kind::kRouted, RouteTable::kNone},
      {"not HTTP", 0, "\x16\x03\x01\x00", Kind::kRejected, 400},
      {"no Host in 1.1", 0, "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", Kind::kRejected, 400},
      {"two Hosts", 0, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Kind::kRejected, 400},
      {"obs-fold", 0, "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", Kind::kRejected, 400},
      {"space before colon", 0, "GET / HTTP/1.1\r\nHost : a\r\n\r\n", Kind::kRejected, 400},
      {"HTTP/2 preface", 0, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Kind::kRejected, 400},
      {"control char in value", 0, std::string("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n"), Kind::kRejected, 400},
      {"head over max_bytes", 0, big_header, Kind::kRejected, 431},
      {"sni exact", 2, itest::OpenSslClientHello("a.example.com"), Kind::kRouted, 0},
      {"sni case", 2, itest::OpenSslClientHello("A.EXAMPLE.com"), Kind::kRouted, 0},
      {"sni wildcard", 2, itest::OpenSslClientHello("x.y.b.example.com"), Kind::kRouted, 1},
      {"sni no match no default", 2, itest::OpenSslClientHello("c.example.com"), Kind::kRouted, RouteTable::kNone},
      {"no sni", 2, itest::OpenSslClientHello(""), Kind::kRouted, RouteTable::kNone},
      {"not tls", 2, "GET / HTTP/1.1\r\n\r\n", Kind::kRouted, RouteTable::kNone},
      {"tls bad record version", 2, std::string("\x16\x09\x01\x00\x05\x01\x00\x00\x01\x00", 10), Kind::kRejected, 0},
      {"tls not a hello", 2, std::string("\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", 10), Kind::kRejected, 0},
      {"tls hello over max_bytes", 2, itest::OpenSslClientHello("a.example.com", 20000), Kind::kRejected, 0},
      {"proxy v2 then bytes", 3, BuildProxyHeader(config::ProxyProtocolVersion::kV2, Addr("198.51.100.1:1000"),
                                                  Addr("203.0.113.2:443")) + "hello",
       Kind::kRouted, RouteTable::kDefault},
      {"proxy v2 missing", 3, "hello there, no header here", Kind::kRejected, 0},
      {"proxy v1 sent to a v2 listener", 3, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Kind::kRejected, 0},
  };
}

TEST(InspectionTable, EachInputWholeAndByteByByte) {
  for (const Fixture& f : Fixtures()) {
    for (bool bytewise : {false, true}) {
      SCOPED_TRACE(absl::StrCat(f.name, bytewise ? " (byte by byte)" : " (whole)"));
      Result r = Inspect(f.listener, f.input, bytewise);
      ASSERT_EQ(r.outcome.kind, f.kind) << (r.outcome.reason ? r.outcome.reason : "");
      if (f.kind == Kind::kRouted) {
        EXPECT_EQ(r.outcome.route, f.route_or_status);
      } else {
        EXPECT_EQ(r.outcome.status, f.route_or_status) << r.outcome.reason;
        EXPECT_NE(r.outcome.reason, nullptr);
      }
    }
  }
}

TEST(InspectionTable, ForwardsTheBytesInOrderWithXForwardedForAppended) {
  const std::string head = "GET /v1/a HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
  Result r = Inspect(0, head + "body bytes", false);
  ASSERT_EQ(r.outcome.kind, Kind::kRouted);
  // HAProxy's option forwardfor: a header of our own, appended; an earlier one stays.
  EXPECT_EQ(r.forward, "GET /v1/a HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: 10.0.0.1\r\n"
                       "X-Forwarded-For: 192.0.2.7\r\n\r\nbody bytes");
}

TEST(InspectionTable, ProxyHeaderGivesTheClientAndIsNotForwarded) {
  const std::string header = BuildProxyHeader(config::ProxyProtocolVersion::kV2, Addr("[2001:db8::5]:1000"),
                                              Addr("[2001:db8::1]:443"));
  Result r = Inspect(3, header + "payload", true);
  ASSERT_EQ(r.outcome.kind, Kind::kRouted);
  EXPECT_EQ(r.forward, "payload");
  EXPECT_EQ(r.client, "[2001:db8::5]:1000");
}

TEST(ProxyProtocol, V1AndV2RoundTripIpv4AndIpv6) {
  for (auto version : {config::ProxyProtocolVersion::kV1, config::ProxyProtocolVersion::kV2}) {
    for (auto [src, dst] : {std::pair{"192.0.2.1:5555", "198.51.100.9:80"},
                            std::pair{"[2001:db8::1]:5555", "[2001:db8::2]:443"}}) {
      const std::string header = BuildProxyHeader(version, Addr(src), Addr(dst));
      ProxyProtocolReader reader(version);
      ASSERT_EQ(reader.Feed(header + "x"), ProxyProtocolReader::Result::kDone) << header;
      EXPECT_EQ(reader.header().length, header.size());
      EXPECT_EQ(reader.header().source.ToString(), src);
      EXPECT_EQ(reader.header().destination.ToString(), dst);
    }
  }
  EXPECT_EQ(BuildProxyHeader(config::ProxyProtocolVersion::kV1, Addr("192.0.2.1:5555"), Addr("198.51.100.9:80")),
            "PROXY TCP4 192.0.2.1 198.51.100.9 5555 80\r\n");
}

TEST(ProxyProtocol, RejectsWhatIsNotAHeader) {
  ProxyProtocolReader v1(config::ProxyProtocolVersion::kV1);
  EXPECT_EQ(v1.Feed("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"), ProxyProtocolReader::Result::kMalformed);
  EXPECT_EQ(v1.Feed("PROXY TCP4 1.2.3.4 ::1 1 2\r\n"), ProxyProtocolReader::Result::kMalformed);
  EXPECT_EQ(v1.Feed("PROXY TCP4 1.2.3.4"), ProxyProtocolReader::Result::kNeedMore);
  EXPECT_EQ(v1.Feed("PROXY " + std::string(200, 'x')), ProxyProtocolReader::Result::kMalformed);
  EXPECT_EQ(v1.Feed("GET / HTTP/1.1"), ProxyProtocolReader::Result::kMissing);
  EXPECT_EQ(v1.Feed("PROXY UNKNOWN\r\n"), ProxyProtocolReader::Result::kDone);
  EXPECT_TRUE(v1.header().local);
  ProxyProtocolReader v2(config::ProxyProtocolVersion::kV2);
  std::string bad = BuildProxyHeader(config::ProxyProtocolVersion::kV2, Addr("1.2.3.4:1"), Addr("5.6.7.8:2"));
  bad[12] = 0x31;  // version 3
  EXPECT_EQ(v2.Feed(bad), ProxyProtocolReader::Result::kMalformed);
}

TEST(LocalResponse, EveryStatusIsACompleteHttp11ResponseThatCloses) {
  for (int status : {400, 404, 408, 431, 502, 503, 504}) {
    const std::string r(LocalResponse(status));
    SCOPED_TRACE(r);
    EXPECT_EQ(r.rfind(absl::StrCat("HTTP/1.1 ", status, " "), 0), 0u);
    EXPECT_NE(r.find("\r\nConnection: close\r\n"), std::string::npos);
    const size_t body = r.find("\r\n\r\n") + 4;
    const size_t length_at = r.find("Content-Length: ") + 16;
    EXPECT_EQ(std::stoul(r.substr(length_at)), r.size() - body);
  }
}

TEST(TlsInspector, HelloSpanningSeveralRecords) {
  const std::string hello = itest::OpenSslClientHello("a.example.com", 20000);
  TlsInspector tls(64 << 10);
  EXPECT_EQ(tls.Feed(hello), TlsInspector::Result::kDone);
  EXPECT_EQ(tls.sni(), "a.example.com");
}

TEST(RouteTable, HostMatching) {
  EXPECT_TRUE(RouteTable::HostMatches("*.example.com", "a.example.com"));
  EXPECT_TRUE(RouteTable::HostMatches("*.example.com", "a.b.EXAMPLE.com:443"));
  EXPECT_FALSE(RouteTable::HostMatches("*.example.com", "example.com"));
  EXPECT_FALSE(RouteTable::HostMatches("*.example.com", "aexample.com"));
  EXPECT_TRUE(RouteTable::HostMatches("example.com", "EXAMPLE.COM."));
  EXPECT_TRUE(RouteTable::HostMatches("example.com", "example.com:8080"));
  EXPECT_FALSE(RouteTable::HostMatches("example.com", "example.com.evil"));
}

}  // namespace
}  // namespace skproxy
