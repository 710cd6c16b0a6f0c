// An upstream's HTTP/1.x response as the keep-alive pool (proxy/http_pool.h) reads it: the head (status,
// framing, whether the connection may be reused) and then how long the body is (RFC 9112 section 6), so the
// pool knows where one response ends without holding it. Bounded like the request inspector: it reads only
// the bytes it is given (the caller caps a head at its buffer), scans each byte of a head once while it is
// incomplete, and the body reader keeps a few integers of state whatever the body's size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace skproxy {

struct HttpResponseHead {
  size_t length = 0;      // bytes of the head, the blank line included
  int minor_version = 1;  // HTTP/1.x
  int status = 0;
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool chunked = false;         // Transfer-Encoding ends in chunked
  bool other_encoding = false;  // Transfer-Encoding without chunked last: the body ends at close
  bool close = false;           // Connection: close (or HTTP/1.0 without Connection: keep-alive)
};

class HttpResponseParser {
 public:
  enum class Result { kNeedMore, kDone, kMalformed };
  // `data`: every byte read so far of this response; each call extends the previous call's data.
  Result Feed(std::string_view data);
  const HttpResponseHead& head() const { return head_; }

 private:
  Result Parse(std::string_view head);
  size_t scanned_ = 0;
  size_t line_start_ = 0;
  HttpResponseHead head_;
};

// Where a message body ends: a fixed length, chunked (the chunks, the last chunk, trailers), until the
// connection closes, or none at all.
class HttpBodyReader {
 public:
  enum class Mode { kNone, kLength, kChunked, kUntilClose };
  // The body that follows `head`, sent in answer to a request with `method` (HEAD has none; nor do 1xx,
  // 204 and 304).
  static HttpBodyReader ForResponse(const HttpResponseHead& head, std::string_view method);
  explicit HttpBodyReader(Mode mode = Mode::kNone, uint64_t length = 0);

  // Reads the next bytes of the stream: returns how many belong to the body (the rest, if any, came after
  // it). Once done() or malformed() it consumes nothing more.
  size_t Consume(std::string_view data);
  bool done() const { return state_ == State::kDone; }
  bool malformed() const { return state_ == State::kMalformed; }
  Mode mode() const { return mode_; }

 private:
  enum class State { kSize, kSizeExt, kSizeLf, kData, kDataCr, kDataLf, kTrailerStart, kTrailerLine, kTrailerLf,
                     kDone, kMalformed, kUntilClose };
  Mode mode_;
  State state_;
  uint64_t remaining_ = 0;  // kLength, or the chunk being read
  uint64_t size_ = 0;       // the chunk size being parsed
  int digits_ = 0;
  size_t line_bytes_ = 0;   // of the chunk extension or trailer section so far
};

}  // namespace skproxy
