#include "proxy/inspect/tls_inspector.h"

#include "absl/strings/ascii.h"

namespace skproxy {
namespace {

constexpr uint8_t kHandshake = 22;
constexpr uint8_t kClientHello = 1;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecord = 1 << 14;  // RFC 8446 5.1: TLSPlaintext.length
constexpr uint16_t kServerName = 0;
constexpr uint8_t kHostName = 0;

// Reads big-endian integers and length-prefixed vectors, failing (not reading) past the end.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool U8(uint8_t* v) { return Fixed(1, v); }
  bool U16(uint16_t* v) { return Fixed(2, v); }
  bool U24(uint32_t* v) { return Fixed(3, v); }
  bool Bytes(size_t n, std::string_view* out) {
    if (n > data_.size()) return false;
    *out = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }
  bool Vector8(std::string_view* out) {
    uint8_t n;
    return U8(&n) && Bytes(n, out);
  }
  bool Vector16(std::string_view* out) {
    uint16_t n;
    return U16(&n) && Bytes(n, out);
  }
  bool empty() const { return data_.empty(); }

 private:
  template <typename T>
  bool Fixed(size_t n, T* v) {
    if (n > data_.size()) return false;
    T x = 0;
    for (size_t i = 0; i < n; ++i) x = static_cast<T>((x << 8) | static_cast<uint8_t>(data_[i]));
    *v = x;
    data_.remove_prefix(n);
    return true;
  }
  std::string_view data_;
};

// RFC 6066 3: a DNS host name, no trailing dot; '_' tolerated as browsers and OpenSSL do.
bool IsHostName(std::string_view name) {
  if (name.empty() || name.size() > 255 || name.front() == '.' || name.back() == '.') return false;
  for (char c : name)
    if (!absl::ascii_isalnum(c) && c != '-' && c != '.' && c != '_') return false;
  return true;
}

}  // namespace

TlsInspector::Result TlsInspector::Feed(std::string_view data) {
  if (next_record_ == 0 && !data.empty() && static_cast<uint8_t>(data[0]) != kHandshake) return Result::kNotTls;
  for (;;) {
    // The hello's length is known once its 4-byte handshake header is in.
    if (handshake_.size() >= 4) {
      const size_t hello = (static_cast<size_t>(static_cast<uint8_t>(handshake_[1])) << 16) |
                           (static_cast<size_t>(static_cast<uint8_t>(handshake_[2])) << 8) |
                           static_cast<uint8_t>(handshake_[3]);
      if (static_cast<uint8_t>(handshake_[0]) != kClientHello) return Result::kMalformed;
      // Every record of it costs a header too: at least one per 16 KiB.
      if (4 + hello + kRecordHeader * (1 + (4 + hello) / kMaxRecord) > max_bytes_) return Result::kTooLarge;
      if (handshake_.size() >= 4 + hello) return ParseHello(std::string_view(handshake_).substr(4, hello));
    }
    if (data.size() < next_record_ + kRecordHeader) break;
    const std::string_view header = data.substr(next_record_, kRecordHeader);
    const size_t length = (static_cast<size_t>(static_cast<uint8_t>(header[3])) << 8) | static_cast<uint8_t>(header[4]);
    if (static_cast<uint8_t>(header[0]) != kHandshake || header[1] != 3 || length == 0 || length > kMaxRecord)
      return Result::kMalformed;
    if (next_record_ + kRecordHeader + length > max_bytes_) return Result::kTooLarge;
    if (data.size() < next_record_ + kRecordHeader + length) break;
    handshake_.append(data.substr(next_record_ + kRecordHeader, length));
    next_record_ += kRecordHeader + length;
  }
  if (data.size() >= max_bytes_) return Result::kTooLarge;
  return Result::kNeedMore;
}

TlsInspector::Result TlsInspector::ParseHello(std::string_view body) {
  Reader r(body);
  uint16_t version;
  std::string_view random, session, suites, compression, extensions;
  if (!r.U16(&version) || (version >> 8) != 3 || !r.Bytes(32, &random) || !r.Vector8(&session) ||
      session.size() > 32 || !r.Vector16(&suites) || suites.empty() || suites.size() % 2 != 0 ||
      !r.Vector8(&compression) || compression.empty()) {
    return Result::kMalformed;
  }
  if (r.empty()) return Result::kDone;  // no extensions at all: no SNI
  if (!r.Vector16(&extensions) || !r.empty()) return Result::kMalformed;
  Reader e(extensions);
  bool seen_sni = false;
  while (!e.empty()) {
    uint16_t type;
    std::string_view ext;
    if (!e.U16(&type) || !e.Vector16(&ext)) return Result::kMalformed;
    if (type != kServerName) continue;
    if (seen_sni) return Result::kMalformed;  // RFC 8446 4.2: one extension of a type
    seen_sni = true;
    Reader x(ext);
    std::string_view list;
    if (!x.Vector16(&list) || !x.empty() || list.empty()) return Result::kMalformed;
    Reader names(list);
    while (!names.empty()) {
      uint8_t name_type;
      std::string_view name;
      if (!names.U8(&name_type) || !names.Vector16(&name)) return Result::kMalformed;
      if (name_type != kHostName) continue;
      if (!sni_.empty() || !IsHostName(name)) return Result::kMalformed;  // RFC 6066: one host_name
      sni_ = std::string(name);
    }
  }
  return Result::kDone;
}

}  // namespace skproxy
