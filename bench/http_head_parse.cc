// Which HTTP parser an http listener uses, measured: our HttpInspector against Debian's libhttp-parser
// (nodejs/http-parser 2.9), each finding the end of the first request head, its Host and its path, on
// heads of the sizes clients send (curl's, a browser's), whole and split in two reads as they arrive on a
// busy socket. Prints ns per head for each. Single-threaded, CPU only: run it on a quiet machine.
//   build/bench/skproxy_bench_http_head_parse [iterations]
#include <http_parser.h>
#include <strings.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/inspect/http_inspector.h"

namespace {

const std::string kCurl = "GET /v1/users?id=7 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
const std::string kBrowser =
    "GET /static/app/main.3f9a1c.js HTTP/1.1\r\nHost: www.example.com\r\nConnection: keep-alive\r\n"
    "sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n"
    "sec-ch-ua-mobile: ?0\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36\r\nsec-ch-ua-platform: \"Linux\"\r\nAccept: */*\r\nSec-Fetch-Site: same-origin\r\n"
    "Sec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: script\r\nReferer: https://www.example.com/\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-GB,en;q=0.9\r\n"
    "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; consent=yes\r\n\r\n";

// What the listener needs from http-parser: Host (possibly split over callbacks) and the URL, stopping
// at the end of the head. A split read means the callbacks' pieces must be copied, as Envoy's codec does.
struct HpState {
  std::string url, host, field;
  bool in_host = false, done = false;
};

int OnUrl(http_parser* p, const char* at, size_t n) {
  static_cast<HpState*>(p->data)->url.append(at, n);
  return 0;
}
int OnField(http_parser* p, const char* at, size_t n) {
  auto* s = static_cast<HpState*>(p->data);
  if (s->in_host || !s->field.empty()) s->field.clear();
  s->in_host = false;
  s->field.append(at, n);
  return 0;
}
int OnValue(http_parser* p, const char* at, size_t n) {
  auto* s = static_cast<HpState*>(p->data);
  if (!s->field.empty()) {
    s->in_host = s->field.size() == 4 && strncasecmp(s->field.data(), "host", 4) == 0;
    s->field.clear();
  }
  if (s->in_host) s->host.append(at, n);
  return 0;
}
int OnHeadersComplete(http_parser* p) {
  static_cast<HpState*>(p->data)->done = true;
  http_parser_pause(p, 1);  // stop at the end of the head: the rest is the upstream's
  return 0;
}

http_parser_settings Settings() {
  http_parser_settings s{};
  s.on_url = OnUrl;
  s.on_header_field = OnField;
  s.on_header_value = OnValue;
  s.on_headers_complete = OnHeadersComplete;
  return s;
}

size_t HttpParser(std::string_view head, size_t split) {
  static const http_parser_settings settings = Settings();
  HpState state;
  http_parser parser;
  http_parser_init(&parser, HTTP_REQUEST);
  parser.data = &state;
  size_t used = http_parser_execute(&parser, &settings, head.data(), split);
  if (!state.done) used += http_parser_execute(&parser, &settings, head.data() + split, head.size() - split);
  if (!state.done) std::abort();
  return state.host.size() + state.url.size() + used;
}

size_t Ours(std::string_view head, size_t split) {
  skproxy::HttpInspector inspector;
  auto r = inspector.Feed(head.substr(0, split));
  if (r == skproxy::HttpInspector::Result::kNeedMore) r = inspector.Feed(head);
  if (r != skproxy::HttpInspector::Result::kDone) std::abort();
  return inspector.head().host.size() + inspector.head().path.size() + inspector.head().length;
}

template <typename F>
double NsPerHead(F f, std::string_view head, size_t split, long iterations) {
  volatile size_t sink = 0;
  for (long i = 0; i < iterations / 10; ++i) sink = sink + f(head, split);  // warm up
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < iterations; ++i) sink = sink + f(head, split);
  const std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
  return took.count() / static_cast<double>(iterations);
}

}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 1000000;
  std::printf("| head | reads | skproxy HttpInspector ns | libhttp-parser %d.%d ns |\n|---|---|---:|---:|\n",
              HTTP_PARSER_VERSION_MAJOR, HTTP_PARSER_VERSION_MINOR);
  for (auto [name, head] : {std::pair{"curl", &kCurl}, std::pair{"browser", &kBrowser}}) {
    for (size_t split : {head->size(), head->size() / 2}) {
      std::printf("| %s (%zu B) | %s | %.0f | %.0f |\n", name, head->size(), split == head->size() ? "1" : "2",
                  NsPerHead(Ours, *head, split, iterations), NsPerHead(HttpParser, *head, split, iterations));
    }
  }
  return 0;
}
