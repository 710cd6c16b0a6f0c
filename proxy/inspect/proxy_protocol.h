// The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's doc/proxy-protocol.txt defines it:
// reading the header a load balancer in front puts before the client's bytes, and writing one before ours
// to an upstream, so that it learns the client's address. TCP over IPv4 and IPv6; a LOCAL (v2) or UNKNOWN
// (v1) header is accepted and means "use the connection's own addresses".
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "config/address.h"
#include "config/config.h"

namespace skproxy {

struct ProxyHeader {
  size_t length = 0;     // bytes of the header, to skip before the client's own bytes
  bool local = false;    // LOCAL / UNKNOWN: no addresses given
  SocketAddress source;  // the client as the load balancer saw it
  SocketAddress destination;
};

class ProxyProtocolReader {
 public:
  enum class Result { kNeedMore, kDone, kMissing, kMalformed };
  // The longest header accepted: v1's 107 bytes, v2's 16 plus addresses and TLVs up to this.
  static constexpr size_t kMaxHeader = 1024;

  explicit ProxyProtocolReader(config::ProxyProtocolVersion version) : version_(version) {}
  // `data` is every byte read so far. kMissing: the bytes cannot start a header of this version.
  Result Feed(std::string_view data);
  const ProxyHeader& header() const { return header_; }

 private:
  Result FeedV1(std::string_view data);
  Result FeedV2(std::string_view data);

  config::ProxyProtocolVersion version_;
  ProxyHeader header_;
};

// The header announcing a connection from `source` to `destination`; v1 "UNKNOWN" / v2 LOCAL when the two
// are not both IPv4 or both IPv6.
std::string BuildProxyHeader(config::ProxyProtocolVersion version, const SocketAddress& source,
                             const SocketAddress& destination);

}  // namespace skproxy
