#include "proxy/inspect/http_response_parser.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "proxy/inspect/http_text.h"

namespace skproxy {
namespace {

// Chunk extensions and trailers are read, never kept: this bounds what an upstream may send of them.
constexpr size_t kMaxChunkLine = 4096;
constexpr size_t kMaxTrailers = 64 << 10;
constexpr uint64_t kMaxChunkSize = uint64_t{1} << 60;

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool ParseStatusLine(std::string_view line, HttpResponseHead* head) {
  // HTTP-version SP 3DIGIT SP [reason]; some servers omit the SP after the code when there is no reason.
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || !absl::ascii_isdigit(line[7]) || line[8] != ' ')
    return false;
  head->minor_version = line[7] - '0';
  for (int i = 9; i < 12; ++i)
    if (!absl::ascii_isdigit(line[i])) return false;
  if (line.size() > 12 && line[12] != ' ') return false;
  head->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (head->status < 100) return false;
  for (char c : line.substr(12))
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return false;
  return true;
}

}  // namespace

HttpResponseParser::Result HttpResponseParser::Feed(std::string_view data) {
  for (size_t i = scanned_; i < data.size(); ++i) {
    const void* newline = std::memchr(data.data() + i, '\n', data.size() - i);
    if (newline == nullptr) break;
    i = static_cast<size_t>(static_cast<const char*>(newline) - data.data());
    const std::string_view line = http_text::LineAt(data, line_start_, i);
    if (line_start_ == 0) {
      if (!ParseStatusLine(line, &head_)) return Result::kMalformed;
    } else if (line.empty()) {
      head_.length = i + 1;
      scanned_ = i + 1;
      return Parse(data.substr(0, head_.length));
    }
    line_start_ = i + 1;
  }
  scanned_ = data.size();
  if (line_start_ == 0 && data.size() >= 5 && data.substr(0, 5) != "HTTP/") return Result::kMalformed;
  return Result::kNeedMore;
}

HttpResponseParser::Result HttpResponseParser::Parse(std::string_view head) {
  bool keep_alive = false;
  bool has_te = false;
  const bool valid = http_text::ForEachFieldLine(head, [&](std::string_view line, std::string_view) {
    if (line.front() == ' ' || line.front() == '\t') return false;  // obs-fold
    std::string_view name, value;
    if (!http_text::SplitField(line, &name, &value) || name.empty()) return false;
    for (char c : name)
      if (!IsTokenChar(c)) return false;
    for (char c : value)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return false;
    if (http_text::EqualsIgnoreCase(name, "content-length")) {
      uint64_t length = 0;
      // One value, digits only: a list or a sign is how request smuggling starts; refuse it.
      if (!http_text::ParseLength(value, &length)) return false;
      if (head_.has_content_length && head_.content_length != length) return false;
      head_.has_content_length = true;
      head_.content_length = length;
    } else if (http_text::EqualsIgnoreCase(name, "transfer-encoding")) {
      has_te = true;
      // The final coding decides (RFC 9112 6.3): chunked there frames the body; anything else runs to close.
      std::string_view last = value;
      if (const size_t comma = value.rfind(','); comma != std::string_view::npos) last = value.substr(comma + 1);
      head_.chunked = http_text::EqualsIgnoreCase(http_text::TrimOws(last), "chunked");
      head_.other_encoding = !head_.chunked;
    } else if (http_text::EqualsIgnoreCase(name, "connection")) {
      if (http_text::HasToken(value, "close")) head_.close = true;
      if (http_text::HasToken(value, "keep-alive")) keep_alive = true;
    }
    return true;
  });
  if (!valid) return Result::kMalformed;
  if (has_te) head_.has_content_length = false;  // RFC 9112 6.3: Transfer-Encoding overrides Content-Length
  if (has_te && head_.minor_version == 0) return Result::kMalformed;
  if (head_.minor_version == 0 && !keep_alive) head_.close = true;
  return Result::kDone;
}

HttpBodyReader HttpBodyReader::ForResponse(const HttpResponseHead& head, std::string_view method) {
  if (method == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304) return HttpBodyReader();
  if (head.chunked) return HttpBodyReader(Mode::kChunked);
  if (head.other_encoding) return HttpBodyReader(Mode::kUntilClose);
  if (head.has_content_length) return HttpBodyReader(Mode::kLength, head.content_length);
  return HttpBodyReader(Mode::kUntilClose);
}

HttpBodyReader::HttpBodyReader(Mode mode, uint64_t length) : mode_(mode), remaining_(length) {
  switch (mode) {
    case Mode::kNone: state_ = State::kDone; break;
    case Mode::kLength: state_ = length == 0 ? State::kDone : State::kData; break;
    case Mode::kChunked: state_ = State::kSize; break;
    case Mode::kUntilClose: state_ = State::kUntilClose; break;
  }
}

size_t HttpBodyReader::Consume(std::string_view data) {
  if (state_ == State::kUntilClose) return data.size();
  size_t i = 0;
  while (i < data.size() && state_ != State::kDone && state_ != State::kMalformed) {
    if (state_ == State::kData) {
      const uint64_t take = std::min<uint64_t>(remaining_, data.size() - i);
      i += take;
      remaining_ -= take;
      if (remaining_ == 0) state_ = mode_ == Mode::kLength ? State::kDone : State::kDataCr;
      continue;
    }
    const char c = data[i++];
    switch (state_) {
      case State::kSize:
        if (absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
          const int v = absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10;
          size_ = size_ * 16 + static_cast<uint64_t>(v);
          if (++digits_ > 15 || size_ > kMaxChunkSize) state_ = State::kMalformed;
        } else if (digits_ == 0) {
          state_ = State::kMalformed;
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = State::kSizeExt;
          line_bytes_ = 0;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == '\n') {
          state_ = State::kSizeLf;
          --i;  // handled as the line's end below
        } else {
          state_ = State::kMalformed;
        }
        break;
      case State::kSizeExt:
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == '\n') {
          state_ = State::kSizeLf;
          --i;
        } else if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || ++line_bytes_ > kMaxChunkLine) {
          state_ = State::kMalformed;
        }
        break;
      case State::kSizeLf:
        if (c != '\n') {
          state_ = State::kMalformed;
        } else if (size_ == 0) {
          state_ = State::kTrailerStart;
          line_bytes_ = 0;
        } else {
          state_ = State::kData;
          remaining_ = size_;
        }
        size_ = 0;
        digits_ = 0;
        break;
      case State::kDataCr:
        state_ = c == '\r' ? State::kDataLf : c == '\n' ? State::kSize : State::kMalformed;
        break;
      case State::kDataLf:
        state_ = c == '\n' ? State::kSize : State::kMalformed;
        break;
      case State::kTrailerStart:
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (c == '\n') {
          state_ = State::kDone;
        } else {
          state_ = State::kTrailerLine;
        }
        if (++line_bytes_ > kMaxTrailers) state_ = State::kMalformed;
        break;
      case State::kTrailerLine:
        if (c == '\n') state_ = State::kTrailerStart;
        if (++line_bytes_ > kMaxTrailers) state_ = State::kMalformed;
        break;
      case State::kTrailerLf:
        state_ = c == '\n' ? State::kDone : State::kMalformed;
        break;
      default:
        break;
    }
  }
  return i;
}

}  // namespace skproxy
