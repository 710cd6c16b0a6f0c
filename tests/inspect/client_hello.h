// Real TLS ClientHellos for the tests, written by OpenSSL itself (a client SSL object on memory BIOs), so
// that the inspector is tested against what clients send, not against our own idea of the format.
#pragma once

#include <string>

namespace skproxy::itest {

// The first flight of a TLS client offering `sni` (none when empty); `padding` adds an extension of that
// many bytes, to make a hello span several records' worth of bytes.
std::string OpenSslClientHello(const std::string& sni, size_t padding = 0);

}  // namespace skproxy::itest
