// The complete HTTP/1.1 responses skproxy sends itself on an http listener, each with Connection: close
// (the connection ends after it: skproxy never reads a second request of its own).
#pragma once

#include <string_view>

namespace skproxy {

// 400, 404, 408, 431, 502, 503 or 504; any other status gets a 500 (a bug, never sent by design).
std::string_view LocalResponse(int status);

}  // namespace skproxy
