// libFuzzer entry point for what the keep-alive pool parses: an upstream's response head, the body framing
// that follows it (Content-Length, chunked, to close), and the request framing and head rewriting. The
// first input byte picks how the rest is split into reads; whatever the split, the answer must be the one
// the whole input gets (the same head, the same body length), and nothing may read outside the input
// (ASan) or crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/inspect/http_inspector.h"
#include "proxy/inspect/http_request_framing.h"
#include "proxy/inspect/http_response_parser.h"

namespace {

using skproxy::HttpBodyReader;
using skproxy::HttpResponseParser;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "http_response_fuzz: %s\n", what);
  std::abort();
}

constexpr size_t kMaxHead = 8192;

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
    const std::string rewritten = skproxy::RewriteResponseHead(std::string_view(input).substr(0, a.length), true, false);
    if (rewritten.size() < 4 || rewritten.substr(rewritten.size() - 4) != "\r\n\r\n") Fail("rewritten head unterminated");
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
    (void)skproxy::FrameRequest(input, head);
    const std::string out = skproxy::RewriteRequestHead(input, head, "X-Forwarded-For: 1\r\n");
    if (out.compare(0, input.find('\n') + 1, input, 0, input.find('\n') + 1) != 0) Fail("request line changed");
  }
  // And as a chunked body on its own.
  const BodyRun c_whole = RunBody(HttpBodyReader(HttpBodyReader::Mode::kChunked), input, input.size() + 1);
  const BodyRun c_split = RunBody(HttpBodyReader(HttpBodyReader::Mode::kChunked), input, step);
  if (c_whole.consumed != c_split.consumed || c_whole.done != c_split.done || c_whole.malformed != c_split.malformed)
    Fail("the chunked body's end depends on the split");
  return 0;
}
