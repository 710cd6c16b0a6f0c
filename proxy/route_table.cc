#include "proxy/route_table.h"

#include "absl/strings/ascii.h"

namespace skproxy {
namespace {

// Drops ":port" from "host:port" and "[v6]:port", and the dot of a fully qualified "example.com.".
std::string_view HostWithoutPort(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  const size_t colon = host.rfind(':');
  if (colon != std::string_view::npos) host = host.substr(0, colon);
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return host;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (absl::ascii_tolower(a[i]) != absl::ascii_tolower(b[i])) return false;
  return true;
}

}  // namespace

RouteTable::RouteTable(const config::Listener& listener) : listener_(listener) {}

bool RouteTable::HostMatches(std::string_view pattern, std::string_view host) {
  host = HostWithoutPort(host);
  if (pattern.substr(0, 2) == "*.") {
    const std::string_view suffix = pattern.substr(1);  // ".example.com"
    return host.size() > suffix.size() && EqualsIgnoreCase(host.substr(host.size() - suffix.size()), suffix);
  }
  return EqualsIgnoreCase(pattern, host);
}

int RouteTable::Match(const RouteInput& input) const {
  for (size_t i = 0; i < listener_.routes.size(); ++i) {
    const config::RouteMatch& m = listener_.routes[i].match;
    if (!m.host.empty() && (input.host.empty() || !HostMatches(m.host, input.host))) continue;
    if (!m.sni.empty() && (input.sni.empty() || !HostMatches(m.sni, input.sni))) continue;
    if (!m.path_prefix.empty() && input.path.substr(0, m.path_prefix.size()) != m.path_prefix) continue;
    return static_cast<int>(i);
  }
  return listener_.cluster.empty() ? kNone : kDefault;
}

const std::string& RouteTable::ClusterOf(int result) const {
  if (result >= 0) return listener_.routes[static_cast<size_t>(result)].cluster;
  return result == kDefault ? listener_.cluster : none_;
}

}  // namespace skproxy
