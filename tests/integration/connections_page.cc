#include "tests/integration/connections_page.h"

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/integration/metrics_scrape.h"

namespace skproxy::itest {

using namespace std::chrono_literals;

std::string JsonField(const std::string& object, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  size_t at = object.find(needle);
  if (at == std::string::npos) return "<no " + key + ">";
  at += needle.size();
  if (object[at] == '"') return object.substr(at + 1, object.find('"', at + 1) - at - 1);
  return object.substr(at, object.find_first_of(",}", at) - at);
}

ConnectionsPage GetConnections(const SocketAddress& admin, const std::string& query) {
  ConnectionsPage page;
  auto r = HttpRequest(admin, "GET", "/connections" + query, "", 5s);
  if (!r.ok()) {
    page.body = r.status().ToString();
    return page;
  }
  page.status = r->status;
  page.body = r->body;
  if (page.status != 200) return page;
  page.total = JsonField(r->body, "total");
  page.next_after = JsonField(r->body, "next_after");
  for (absl::string_view line : absl::StrSplit(r->body, '\n')) {
    if (!absl::StartsWith(line, "{\"id\":")) continue;
    absl::ConsumeSuffix(&line, ",");
    page.connections.emplace_back(line);
  }
  return page;
}

}  // namespace skproxy::itest
