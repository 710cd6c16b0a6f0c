// Reads the TLS ClientHello of a connection without terminating TLS, for its SNI. A bounded parser of our
// own rather than OpenSSL's client-hello callback (Envoy's tls_inspector): the callback needs an SSL object
// per connection and hands the hello over only once OpenSSL has reassembled and accepted it, and it tells
// "not TLS" and "malformed" apart no better than the record header does; ours walks the records as they
// arrive, reassembles a hello split over records and segments, never reads past the bytes given, and
// copies only the hello body. docs/l7-routing.md has the reasoning; tests/proxy/inspect_fuzz.cc fuzzes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace skproxy {

class TlsInspector {
 public:
  enum class Result { kNeedMore, kDone, kNotTls, kMalformed, kTooLarge };

  // `max_bytes`: the most the caller will ever pass (records included); a hello that needs more is kTooLarge.
  explicit TlsInspector(size_t max_bytes) : max_bytes_(max_bytes) {}

  // `data` is every byte read so far; each call extends the previous call's data.
  Result Feed(std::string_view data);
  // After kDone: the server_name (as sent; empty when the hello has none).
  const std::string& sni() const { return sni_; }

 private:
  Result ParseHello(std::string_view body);

  size_t max_bytes_;
  size_t next_record_ = 0;      // offset of the next record header not yet walked
  std::string handshake_;       // the handshake bytes of the records walked so far
  std::string sni_;
};

}  // namespace skproxy
