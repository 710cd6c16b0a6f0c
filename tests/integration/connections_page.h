// Reading the proxy's GET /connections (one JSON object per connection and line) in tests.
#pragma once

#include <string>
#include <vector>

#include "config/address.h"

namespace skproxy::itest {

// A field of one connection object: a string without its quotes, or the raw number / null;
// "<no KEY>" when the object has no such field.
std::string JsonField(const std::string& object, const std::string& key);

struct ConnectionsPage {
  int status = -1;       // -1: no answer (body says why)
  std::string body;
  std::string total, next_after;
  std::vector<std::string> connections;  // one JSON object each
};

// GET /connections`query` from the admin listener at `admin`.
ConnectionsPage GetConnections(const SocketAddress& admin, const std::string& query = "");

}  // namespace skproxy::itest
