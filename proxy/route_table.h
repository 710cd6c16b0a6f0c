// A listener's routes, compiled: the first route whose conditions all hold names the cluster; with none,
// the listener's default cluster (if it has one). Host names compare without case, a port in Host is
// ignored, "*.example.com" matches one or more labels before ".example.com" (not example.com itself).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace skproxy {

// What a client said first, as the inspectors found it; empty fields were not there.
struct RouteInput {
  std::string_view host;  // HTTP Host (or the absolute-form authority), port included or not
  std::string_view path;  // HTTP request-target path
  std::string_view sni;   // TLS server_name
};

class RouteTable {
 public:
  static constexpr int kDefault = -1;  // no route matched: the listener's default cluster
  static constexpr int kNone = -2;     // no route matched and the listener has no default

  explicit RouteTable(const config::Listener& listener);
  // Index of the first matching route, or kDefault / kNone.
  int Match(const RouteInput& input) const;
  // The cluster a result of Match names; empty for kNone.
  const std::string& ClusterOf(int result) const;

  // Whether `host` (any case, maybe with ":port") matches `pattern` (lower case, exact or "*.suffix").
  static bool HostMatches(std::string_view pattern, std::string_view host);

 private:
  const config::Listener& listener_;
  std::string none_;
};

}  // namespace skproxy
