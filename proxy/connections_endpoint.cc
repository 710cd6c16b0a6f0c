#include "proxy/connections_endpoint.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proxy/config_json.h"
#include "proxy/worker.h"

namespace skproxy {
namespace {

// A worker busy with a burst of completions answers within a loop iteration; this only bounds a stuck one.
constexpr absl::Duration kAnswerTimeout = absl::Seconds(2);

AdminResponse BadRequest(const std::string& why) {
  return AdminResponse{400, "text/plain; charset=utf-8",
                       absl::StrCat(why, " (use ?limit=1..", ConnectionsEndpoint::kMaxLimit, "&after=ID)\n")};
}

std::string AddressOrNull(const SocketAddress& address) {
  return address.length > 0 ? JsonString(address.ToString()) : "null";
}

std::string StringOrNull(const std::string& text) { return text.empty() ? "null" : JsonString(text); }

// One object per line: a reader can take the answer apart with grep as well as with a JSON parser.
std::string ToJson(const ConnectionInfo& c) {
  return absl::StrCat(
      "{\"id\":", c.id, ",\"worker\":", c.worker, ",\"listener\":", JsonString(c.listener),
      ",\"route\":", StringOrNull(c.route), ",\"cluster\":", StringOrNull(c.cluster),
      ",\"client\":", AddressOrNull(c.client), ",\"upstream\":", AddressOrNull(c.upstream),
      ",\"state\":", JsonString(c.state), ",\"datapath\":", JsonString(c.datapath), ",\"switches\":", c.switches,
      ",\"bytes_downstream_to_upstream\":", c.kernel_bytes[0] + c.user_bytes[0],
      ",\"bytes_upstream_to_downstream\":", c.kernel_bytes[1] + c.user_bytes[1],
      ",\"kernel_bytes\":{\"downstream_to_upstream\":", c.kernel_bytes[0],
      ",\"upstream_to_downstream\":", c.kernel_bytes[1], "}",
      ",\"user_bytes\":{\"downstream_to_upstream\":", c.user_bytes[0], ",\"upstream_to_downstream\":", c.user_bytes[1],
      "},\"operations\":", StringOrNull(c.operations), ",\"age_s\":", absl::ToDoubleSeconds(c.age), "}");
}

}  // namespace

void ConnectionsEndpoint::SetWorkers(std::vector<Worker*> workers) {
  std::lock_guard<std::mutex> lock(mu_);
  workers_ = std::move(workers);
}

AdminResponse ConnectionsEndpoint::Handle(const AdminRequest& request) {
  size_t limit = kDefaultLimit;
  uint64_t after = 0;
  for (const auto& [key, value] : ParseQuery(request.query)) {
    if (key == "limit") {
      if (!absl::SimpleAtoi(value, &limit) || limit < 1 || limit > kMaxLimit)
        return BadRequest(absl::StrCat("limit: not a number from 1 to ", kMaxLimit, ": \"", value, "\""));
    } else if (key == "after") {
      if (!absl::SimpleAtoi(value, &after)) return BadRequest(absl::StrCat("after: not a connection id: \"", value, "\""));
    } else {
      return BadRequest(absl::StrCat("unknown parameter \"", key, "\""));
    }
  }
  std::vector<Worker*> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers = workers_;
  }
  // Every worker gives its `limit` + 1 lowest ids above the cursor; the page is the `limit` lowest of those,
  // and one more tells that there is a next page.
  const absl::Time deadline = absl::Now() + kAnswerTimeout;
  std::vector<ConnectionInfo> all;
  size_t total = 0;
  for (Worker* worker : workers) {
    size_t held = 0;
    std::vector<ConnectionInfo> some = worker->Snapshot(after, limit + 1, deadline, &held);
    total += held;
    std::move(some.begin(), some.end(), std::back_inserter(all));
  }
  std::sort(all.begin(), all.end(), [](const ConnectionInfo& a, const ConnectionInfo& b) { return a.id < b.id; });
  const bool more = all.size() > limit;
  if (more) all.resize(limit);
  std::string body = absl::StrCat("{\"total\":", total, ",\"limit\":", limit, ",\"after\":", after,
                                  ",\"next_after\":", more ? absl::StrCat(all.back().id) : "null",
                                  ",\"connections\":[");
  for (size_t i = 0; i < all.size(); ++i) absl::StrAppend(&body, i == 0 ? "\n" : ",\n", ToJson(all[i]));
  absl::StrAppend(&body, "\n]}\n");
  return AdminResponse{200, "application/json", std::move(body)};
}

}  // namespace skproxy
