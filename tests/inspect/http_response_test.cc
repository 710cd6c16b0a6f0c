// The keep-alive pool's parsers on their own: response heads, body framing, request framing and rewriting.
#include <string>

#include "gtest/gtest.h"
#include "proxy/inspect/http_inspector.h"
#include "proxy/inspect/http_request_framing.h"
#include "proxy/inspect/http_response_parser.h"

namespace skproxy {
namespace {

HttpResponseParser::Result ParseWhole(const std::string& s, HttpResponseHead* head) {
  HttpResponseParser parser;
  const HttpResponseParser::Result r = parser.Feed(s);
  *head = parser.head();
  return r;
}

TEST(HttpResponseParserTest, ReadsStatusAndFraming) {
  HttpResponseHead h;
  ASSERT_EQ(ParseWhole("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nbody", &h), HttpResponseParser::Result::kDone);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.length, 39u);
  EXPECT_TRUE(h.has_content_length);
  EXPECT_EQ(h.content_length, 12u);
  EXPECT_FALSE(h.close);
  ASSERT_EQ(ParseWhole("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\nContent-Length: 3\r\n\r\n", &h),
            HttpResponseParser::Result::kDone);
  EXPECT_TRUE(h.chunked);
  EXPECT_FALSE(h.has_content_length) << "Transfer-Encoding overrides Content-Length";
  ASSERT_EQ(ParseWhole("HTTP/1.0 200 OK\r\n\r\n", &h), HttpResponseParser::Result::kDone);
  EXPECT_TRUE(h.close) << "HTTP/1.0 without keep-alive closes";
  ASSERT_EQ(ParseWhole("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n", &h), HttpResponseParser::Result::kDone);
  EXPECT_FALSE(h.close);
  ASSERT_EQ(ParseWhole("HTTP/1.1 204\r\nConnection: foo, close\r\n\r\n", &h), HttpResponseParser::Result::kDone);
  EXPECT_TRUE(h.close);
  EXPECT_EQ(h.status, 204);
}

TEST(HttpResponseParserTest, RefusesWhatCouldDesynchronise) {
  HttpResponseHead h;
  for (const std::string bad : {"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
                                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                                "HTTP/1.1 200 OK\r\n folded\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "HTTP/2 200\r\n\r\n",
                                "SSH-2.0-x\r\n", "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
                                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"})
    EXPECT_EQ(ParseWhole(bad, &h), HttpResponseParser::Result::kMalformed) << bad;
  EXPECT_EQ(ParseWhole("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", &h), HttpResponseParser::Result::kNeedMore);
}

TEST(HttpBodyReaderTest, LengthChunkedNoneAndClose) {
  HttpBodyReader length(HttpBodyReader::Mode::kLength, 5);
  EXPECT_EQ(length.Consume("abc"), 3u);
  EXPECT_FALSE(length.done());
  EXPECT_EQ(length.Consume("deNEXT"), 2u);
  EXPECT_TRUE(length.done());

  const std::string chunked = "5;x=y\r\nhello\r\na\r\n0123456789\r\n0\r\nTrailer: 1\r\n\r\n";
  for (size_t step = 1; step <= chunked.size(); ++step) {
    HttpBodyReader r(HttpBodyReader::Mode::kChunked);
    size_t used = 0;
    for (size_t at = 0; at < chunked.size(); at += step) used += r.Consume(chunked.substr(at, step));
    EXPECT_TRUE(r.done()) << step;
    EXPECT_EQ(used, chunked.size()) << step;
    EXPECT_EQ(r.Consume("GET / HTTP/1.1"), 0u) << "bytes after the body are not the body's";
  }
  HttpBodyReader bad(HttpBodyReader::Mode::kChunked);
  bad.Consume("zz\r\n");
  EXPECT_TRUE(bad.malformed());
  HttpBodyReader missing_crlf(HttpBodyReader::Mode::kChunked);
  missing_crlf.Consume("1\r\naXX");
  EXPECT_TRUE(missing_crlf.malformed());

  HttpResponseHead head;
  head.status = 200;
  head.has_content_length = true;
  head.content_length = 10;
  EXPECT_EQ(HttpBodyReader::ForResponse(head, "HEAD").mode(), HttpBodyReader::Mode::kNone);
  EXPECT_EQ(HttpBodyReader::ForResponse(head, "GET").mode(), HttpBodyReader::Mode::kLength);
  head.status = 304;
  EXPECT_EQ(HttpBodyReader::ForResponse(head, "GET").mode(), HttpBodyReader::Mode::kNone);
  head.status = 200;
  head.has_content_length = false;
  EXPECT_EQ(HttpBodyReader::ForResponse(head, "GET").mode(), HttpBodyReader::Mode::kUntilClose);
}

TEST(HttpRequestFramingTest, PoolableRequestsAndRewrites) {
  auto frame = [](const std::string& s) {
    HttpInspector inspector;
    EXPECT_EQ(inspector.Feed(s), HttpInspector::Result::kDone) << s;
    return FrameRequest(s, inspector.head());
  };
  EXPECT_TRUE(frame("GET / HTTP/1.1\r\nHost: a\r\n\r\n").poolable);
  RequestFraming post = frame("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(post.poolable);
  EXPECT_EQ(post.content_length, 7u);
  EXPECT_TRUE(post.client_close);
  for (const std::string spliced : {"GET / HTTP/1.0\r\n\r\n", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
                                    "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                                    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                                    "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
                                    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"})
    EXPECT_FALSE(frame(spliced).poolable) << spliced;

  const std::string request = "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nKeep-Alive: 1\r\nAccept: */*\r\n\r\n";
  HttpInspector inspector;
  ASSERT_EQ(inspector.Feed(request), HttpInspector::Result::kDone);
  EXPECT_EQ(RewriteRequestHead(request, inspector.head(), "X-Forwarded-For: 1.2.3.4\r\n"),
            "GET /x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n");
  EXPECT_EQ(RewriteResponseHead("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nA: b\r\n\r\n", true, false),
            "HTTP/1.1 200 OK\r\nA: b\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(RewriteResponseHead("HTTP/1.0 200 OK\r\nA: b\r\n\r\n", false, true),
            "HTTP/1.0 200 OK\r\nA: b\r\nConnection: keep-alive\r\n\r\n");
}

// RFC 9110 7.6.1: the fields a Connection header names go with it, in both directions, but never the ones
// that frame or route the message; TE keeps only "trailers"; Upgrade never reaches the other side.
TEST(HttpRequestFramingTest, RewritesDropTheFieldsConnectionNames) {
  const std::string request =
      "POST /x HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nx-secret: t\r\n"
      "Keep-Alive: timeout=5\r\nConnection: X-Other ,content-length, HOST\r\nX-Other: o\r\nTE: gzip, trailers\r\n"
      "Proxy-Connection: keep-alive\r\nContent-Length: 3\r\nX-Kept: k\r\n\r\nabc";
  HttpInspector inspector;
  ASSERT_EQ(inspector.Feed(request), HttpInspector::Result::kDone);
  const RequestFraming framing = FrameRequest(request, inspector.head());
  EXPECT_TRUE(framing.poolable);
  EXPECT_TRUE(framing.client_close);
  EXPECT_EQ(framing.content_length, 3u);
  EXPECT_EQ(RewriteRequestHead(request, inspector.head(), "X-Forwarded-For: 1.2.3.4\r\n"),
            "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-Kept: k\r\nTE: trailers\r\n"
            "X-Forwarded-For: 1.2.3.4\r\n\r\n");
  // A Connection header naming X-Forwarded-For removes the client's own, not the one skproxy appends.
  const std::string xff = "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: x-forwarded-for\r\n\r\n";
  HttpInspector xff_inspector;
  ASSERT_EQ(xff_inspector.Feed(xff), HttpInspector::Result::kDone);
  EXPECT_EQ(RewriteRequestHead(xff, xff_inspector.head(), "X-Forwarded-For: 1.2.3.4\r\n"),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n");
  // TE without trailers goes entirely.
  const std::string te = "GET / HTTP/1.1\r\nHost: a\r\nTE: gzip\r\n\r\n";
  HttpInspector te_inspector;
  ASSERT_EQ(te_inspector.Feed(te), HttpInspector::Result::kDone);
  EXPECT_EQ(RewriteRequestHead(te, te_inspector.head(), ""), "GET / HTTP/1.1\r\nHost: a\r\n\r\n");

  EXPECT_EQ(RewriteResponseHead("HTTP/1.1 200 OK\r\nConnection: x-internal, Transfer-Encoding\r\nX-Internal: 1\r\n"
                                "Transfer-Encoding: chunked\r\nUpgrade: h2c\r\nTE: trailers\r\nA: b\r\n\r\n",
                                false, false),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nA: b\r\n\r\n");
  EXPECT_EQ(RewriteResponseHead("HTTP/1.1 200 OK\nConnection: X-A\nx-a: 1\nContent-Length: 0\n\n", true, false),
            "HTTP/1.1 200 OK\nContent-Length: 0\nConnection: close\r\n\r\n");
}

}  // namespace
}  // namespace skproxy
