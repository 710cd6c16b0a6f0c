// libFuzzer entry point for what the keep-alive pool parses: an upstream's response head, the body framing
// that follows it (Content-Length, chunked, to close), and the request framing and head rewriting. The
// first input byte picks how the rest is split into reads; whatever the split, the answer must be the one
// the whole input gets (the same head, the same body length), and nothing may read outside the input
// (ASan) or crash. A rewritten head must parse again to the same message (framing, Host, status) and hold
// no hop-by-hop field and no field its Connection headers named.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/inspect/http_inspector.h"
#include "proxy/inspect/http_request_framing.h"
#include "proxy/inspect/http_response_parser.h"
#include "proxy/inspect/http_text.h"

namespace {

using skproxy::HttpBodyReader;
using skproxy::HttpResponseParser;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "http_response_fuzz: %s\n", what);
  std::abort();
}

constexpr size_t kMaxHead = 8192;

namespace http_text = skproxy::http_text;

// The Connection headers' values of a head.
std::vector<std::string_view> ConnectionValues(std::string_view head) {
  std::vector<std::string_view> values;
  http_text::ForEachFieldLine(head, [&](std::string_view line, std::string_view) {
    std::string_view name, value;
    if (http_text::SplitField(line, &name, &value) && http_text::EqualsIgnoreCase(name, "connection"))
      values.push_back(value);
    return true;
  });
  return values;
}

// What a rewrite must have removed: the hop-by-hop fields (a request keeps "TE: trailers", and the
// response "Connection: close" the rewrite appends), and the fields `named` (the original's Connection
// values) except those that frame or route the message, or `added` by the rewrite itself.
void CheckNoHopByHop(std::string_view rewritten, const std::vector<std::string_view>& named, bool request,
                     std::string_view added) {
  http_text::ForEachFieldLine(rewritten, [&](std::string_view line, std::string_view) {
    std::string_view name, value;
    if (!http_text::SplitField(line, &name, &value)) Fail("a rewritten field line without a colon");
    auto is = [&](const char* n) { return http_text::EqualsIgnoreCase(name, n); };
    if (is("keep-alive") || is("proxy-connection") || is("upgrade")) Fail("a hop-by-hop field was kept");
    if (is("connection") && (request || value != "close")) Fail("a Connection field was kept");
    if (is("te") && (!request || value != "trailers")) Fail("a TE field other than trailers was kept");
    if (is("content-length") || is("transfer-encoding") || is("host") || is("connection") || is("te") ||
        http_text::EqualsIgnoreCase(name, added))
      return true;
    for (std::string_view list : named)
      if (http_text::HasToken(list, name)) Fail("a field the Connection header named was kept");
    return true;
  });
}

struct HeadRun {
  HttpResponseParser::Result result = HttpResponseParser::Result::kNeedMore;
  skproxy::HttpResponseHead head;
};

HeadRun RunHead(std::string_view data, size_t step) {
  HttpResponseParser parser;
  HeadRun run;
  data = data.substr(0, kMaxHead);
  for (size_t n = std::min(step, data.size());; n = std::min(n + step, data.size())) {
    run.result = parser.Feed(data.substr(0, n));
    if (run.result != HttpResponseParser::Result::kNeedMore || n == data.size()) break;
  }
  run.head = parser.head();
  return run;
}

struct BodyRun {
  size_t consumed = 0;
  bool done = false, malformed = false;
};

BodyRun RunBody(HttpBodyReader reader, std::string_view data, size_t step) {
  BodyRun run;
  for (size_t at = 0; at < data.size();) {
    const size_t n = std::min(step, data.size() - at);
    const size_t used = reader.Consume(data.substr(at, n));
    if (used > n) Fail("consumed more than it was given");
    run.consumed += used;
    if (used < n && !reader.done() && !reader.malformed()) Fail("stopped short without an end");
    at += n;
    if (reader.done() || reader.malformed()) break;
  }
  run.done = reader.done();
  run.malformed = reader.malformed();
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = 1 + data[0] % 61;
  const std::string input(reinterpret_cast<const char*>(data + 1), size - 1);

  const HeadRun whole = RunHead(input, input.size() + 1);
  const HeadRun split = RunHead(input, step);
  if (whole.result != split.result) Fail("the head's result depends on the split");
  if (whole.result == HttpResponseParser::Result::kDone) {
    const skproxy::HttpResponseHead& a = whole.head;
    const skproxy::HttpResponseHead& b = split.head;
    if (a.length != b.length || a.status != b.status || a.content_length != b.content_length ||
        a.has_content_length != b.has_content_length || a.chunked != b.chunked || a.close != b.close ||
        a.other_encoding != b.other_encoding || a.minor_version != b.minor_version)
      Fail("the head depends on the split");
    if (a.length > input.size() || a.status < 100 || a.status > 999) Fail("head out of range");
    const std::string_view original = std::string_view(input).substr(0, a.length);
    const std::string rewritten = skproxy::RewriteResponseHead(original, true, false);
    if (rewritten.size() < 4 || rewritten.substr(rewritten.size() - 4) != "\r\n\r\n") Fail("rewritten head unterminated");
    CheckNoHopByHop(rewritten, ConnectionValues(original), /*request=*/false, "");
    // The client reads the message skproxy framed: the same status and body framing.
    HttpResponseParser again;
    if (again.Feed(rewritten) != HttpResponseParser::Result::kDone) Fail("the rewritten response head does not parse");
    const skproxy::HttpResponseHead& r = again.head();
    if (r.length != rewritten.size() || r.status != a.status || r.has_content_length != a.has_content_length ||
        r.content_length != a.content_length || r.chunked != a.chunked || r.other_encoding != a.other_encoding ||
        !r.close)
      Fail("the rewritten response head frames another message");
    // The body after it, read by its framing, whole and split.
    const std::string_view rest = std::string_view(input).substr(a.length);
    const HttpBodyReader reader = HttpBodyReader::ForResponse(a, data[0] & 1 ? "HEAD" : "GET");
    const BodyRun body_whole = RunBody(reader, rest, rest.size() + 1);
    const BodyRun body_split = RunBody(reader, rest, step);
    if (body_whole.consumed != body_split.consumed || body_whole.done != body_split.done ||
        body_whole.malformed != body_split.malformed)
      Fail("the body's end depends on the split");
  }

  // The same bytes as a request: framing and the upstream's head must not crash, and keep the start line.
  skproxy::HttpInspector inspector;
  if (inspector.Feed(std::string_view(input).substr(0, kMaxHead)) == skproxy::HttpInspector::Result::kDone) {
    const skproxy::HttpHead& head = inspector.head();
    const skproxy::RequestFraming framing = skproxy::FrameRequest(input, head);
    const std::string out = skproxy::RewriteRequestHead(input, head, "X-Forwarded-For: 1\r\n");
    if (out.compare(0, input.find('\n') + 1, input, 0, input.find('\n') + 1) != 0) Fail("request line changed");
    CheckNoHopByHop(out, ConnectionValues(std::string_view(input).substr(0, head.length)), /*request=*/true,
                    "x-forwarded-for");
    // The upstream reads the request skproxy routed and framed: a valid head, the same target and Host, and
    // (for a request the pool takes) the same body length.
    skproxy::HttpInspector again;
    if (again.Feed(out) != skproxy::HttpInspector::Result::kDone) Fail("the rewritten request head does not parse");
    const skproxy::HttpHead& h = again.head();
    if (h.length != out.size() || h.method != head.method || h.target != head.target || h.host != head.host ||
        h.minor_version != head.minor_version)
      Fail("the rewritten request head is another request");
    if (framing.poolable) {
      const skproxy::RequestFraming reframed = skproxy::FrameRequest(out, h);
      if (!reframed.poolable || reframed.content_length != framing.content_length)
        Fail("the rewritten request frames another body");
    }
  }
  // And as a chunked body on its own.
  const BodyRun c_whole = RunBody(HttpBodyReader(HttpBodyReader::Mode::kChunked), input, input.size() + 1);
  const BodyRun c_split = RunBody(HttpBodyReader(HttpBodyReader::Mode::kChunked), input, step);
  if (c_whole.consumed != c_split.consumed || c_whole.done != c_split.done || c_whole.malformed != c_split.malformed)
    Fail("the chunked body's end depends on the split");
  return 0;
}
