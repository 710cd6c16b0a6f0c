// Reads the first HTTP/1.x request head of a connection without consuming it: where it ends, the Host and
// the path to route on, and where a header can be inserted. Bounded: it only ever looks at the bytes it is
// given (the caller caps them at inspect.max_bytes), scans each byte once while the head is incomplete,
// and copies nothing. Strict where a lenient reading could let a client route around the rules: one Host
// at most (required in HTTP/1.1), no obs-fold, no control characters, no whitespace before the colon.
#pragma once

#include <cstddef>
#include <string_view>

namespace skproxy {

struct HttpHead {
  size_t length = 0;       // bytes of the head, the blank line included
  size_t blank_line = 0;   // offset of the blank line that ends it: where a header is inserted
  int minor_version = 1;   // HTTP/1.x
  std::string_view method;
  std::string_view target;  // the request-target as sent
  std::string_view host;    // the absolute-form authority, else the Host header; port not removed
  std::string_view path;    // the path of the target without the query ("" for authority-form)
};

class HttpInspector {
 public:
  enum class Result { kNeedMore, kDone, kMalformed };

  // `data` is every byte read so far; each call extends the previous call's data. On kDone, head()
  // points into `data`.
  Result Feed(std::string_view data);
  const HttpHead& head() const { return head_; }

 private:
  Result Parse(std::string_view head);

  size_t scanned_ = 0;     // bytes already searched for the end of the head
  size_t line_start_ = 0;  // where the line being scanned starts
  HttpHead head_;
};

}  // namespace skproxy
