// libFuzzer entry point for everything that parses a client's first bytes: the HTTP head, the TLS
// ClientHello and the PROXY protocol header (v1 and v2), on their own and through Inspection on each kind
// of listener. The first input byte picks how the rest is split into reads; whatever the split, the
// answer must be the one the whole input gets, and nothing may read outside the input (ASan) or crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "config/config.h"
#include "proxy/inspect/http_inspector.h"
#include "proxy/inspect/inspection.h"
#include "proxy/inspect/proxy_protocol.h"
#include "proxy/inspect/tls_inspector.h"
#include "proxy/route_table.h"

namespace {

using skproxy::Inspection;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "inspect_fuzz: %s\n", what);
  std::abort();
}

constexpr char kConfig[] = R"(
listeners:
  - { name: h, address: "127.0.0.1:1", protocol: http, x_forwarded_for: true, inspect: { max_bytes: 4KiB },
      routes: [ { match: { host: "*.a.com", path_prefix: "/p" }, cluster: c } ] }
  - { name: t, address: "127.0.0.1:2", protocol: tls, inspect: { max_bytes: 4KiB },
      routes: [ { match: { sni: "*.a.com" }, cluster: c } ] }
  - { name: p1, address: "127.0.0.1:3", protocol: http, proxy_protocol: v1, cluster: c }
  - { name: p2, address: "127.0.0.1:4", protocol: tls, proxy_protocol: v2, cluster: c }
clusters:
  - { name: c, endpoints: ["127.0.0.1:9"] }
)";

const skproxy::config::Config& FuzzConfig() {
  static const skproxy::config::Config* config = [] {
    auto parsed = skproxy::config::ParseConfig(kConfig, "fuzz.yaml");
    if (!parsed.ok()) Fail("the fuzz config does not parse");
    return new skproxy::config::Config(*std::move(parsed));
  }();
  return *config;
}

bool Inside(std::string_view part, std::string_view whole) {
  return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

// Feeds `data` in reads of `step` bytes (the last one shorter), as the Connection does.
Inspection::Outcome Run(const skproxy::config::Listener& listener, std::string_view data, size_t step,
                        std::string* forward) {
  skproxy::RouteTable routes(listener);
  Inspection inspection(listener, routes, *skproxy::ParseSocketAddress("192.0.2.1:1"),
                        *skproxy::ParseSocketAddress("192.0.2.2:2"));
  data = data.substr(0, listener.inspect.max_bytes);
  Inspection::Outcome outcome;
  for (size_t n = std::min(step, data.size()); n <= data.size(); n = n == data.size() ? n + 1 : std::min(n + step, data.size())) {
    outcome = inspection.Feed(data.substr(0, n));
    if (outcome.kind != Inspection::Outcome::Kind::kNeedMore) break;
  }
  if (outcome.kind == Inspection::Outcome::Kind::kRouted) {
    *forward = inspection.Forward(data);
    if (forward->size() < data.size() - std::min(data.size(), skproxy::ProxyProtocolReader::kMaxHeader)) {
      Fail("forwarded fewer bytes than the client sent after the PROXY header");
    }
  }
  return outcome;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size == 0) return 0;
  const size_t step = 1 + bytes[0] % 64;
  const std::string copy(reinterpret_cast<const char*>(bytes) + 1, size - 1);  // exact bounds for ASan
  const std::string_view data(copy);

  skproxy::HttpInspector http;
  if (http.Feed(data) == skproxy::HttpInspector::Result::kDone) {
    const skproxy::HttpHead& head = http.head();
    if (head.length > data.size() || head.blank_line >= head.length) Fail("http head bounds");
    // (An absolute-form target without a path has the path "/", a literal.)
    if (!Inside(head.host, data) || !(Inside(head.path, data) || head.path == "/") || !Inside(head.method, data))
      Fail("http views");
  }
  skproxy::TlsInspector tls(4096);
  if (tls.Feed(data) == skproxy::TlsInspector::Result::kDone && tls.sni().size() > 255) Fail("sni length");
  for (auto version : {skproxy::config::ProxyProtocolVersion::kV1, skproxy::config::ProxyProtocolVersion::kV2}) {
    skproxy::ProxyProtocolReader proxy(version);
    if (proxy.Feed(data) == skproxy::ProxyProtocolReader::Result::kDone && proxy.header().length > data.size())
      Fail("proxy header longer than the input");
  }

  for (const auto& listener : FuzzConfig().listeners) {
    std::string whole_forward, split_forward;
    const Inspection::Outcome whole = Run(listener, data, data.size() + 1, &whole_forward);
    const Inspection::Outcome split = Run(listener, data, step, &split_forward);
    // Splitting may only decide earlier on a prefix when the prefix already settled it; when both
    // decide, they must agree.
    if (whole.kind != Inspection::Outcome::Kind::kNeedMore && split.kind != Inspection::Outcome::Kind::kNeedMore) {
      if (whole.kind != split.kind || whole.route != split.route || whole.status != split.status)
        Fail("the answer depends on how the bytes were split");
      if (whole_forward != split_forward) Fail("the forwarded bytes depend on how the input was split");
    }
  }
  return 0;
}
