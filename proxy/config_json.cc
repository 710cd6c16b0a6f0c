#include "proxy/config_json.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace skproxy {

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
          out += escaped;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += "\"";
  return out;
}

namespace {

std::string Seconds(absl::Duration d) { return absl::StrCat(absl::ToDoubleSeconds(d)); }

}  // namespace

std::string ConfigToJson(const config::Config& config) {
  std::string out = "{\n";
  absl::StrAppend(&out, "  \"source\": ", JsonString(config.source), ",\n");
  absl::StrAppend(&out, "  \"admin\": {\"address\": ", JsonString(config.admin.address.ToString()), "},\n");
  absl::StrAppend(&out, "  \"datapath\": ", JsonString(config::DatapathModeName(config.datapath)), ",\n");
  absl::StrAppend(&out, "  \"workers\": ", config.workers, ",\n");
  absl::StrAppend(&out, "  \"drain_timeout_seconds\": ", Seconds(config.drain_timeout), ",\n");
  absl::StrAppend(&out, "  \"access_log\": ",
                  config.access_log_path.empty() ? "null" : absl::StrCat("{\"path\": ", JsonString(config.access_log_path), "}"),
                  ",\n");
  absl::StrAppend(&out, "  \"upstream_mark\": ", config.upstream_mark, ",\n");
  auto name_or_null = [](const std::string& name) { return name.empty() ? std::string("null") : JsonString(name); };
  absl::StrAppend(&out, "  \"user\": ", name_or_null(config.run_as.user), ",\n");
  absl::StrAppend(&out, "  \"group\": ", name_or_null(config.run_as.group), ",\n");
  const config::Sockmap& s = config.sockmap;
  absl::StrAppend(&out, "  \"sockmap\": {\"max_entries\": ", s.max_entries, ", \"gate_limit_bytes\": ",
                  s.gate_limit_bytes, ", \"receive_buffer_bytes\": ", s.receive_buffer_bytes,
                  ", \"promote_after_bytes\": ", s.promote_after_bytes, ", \"quiet_worker_connections\": ",
                  s.quiet_worker_connections, ", \"demote_below_bytes\": ", s.demote_below_bytes,
                  ", \"demote_after_messages\": ", s.demote_after_messages, ", \"switch_interval_seconds\": ",
                  Seconds(s.switch_interval), "},\n");
  std::vector<std::string> listeners;
  for (const config::Listener& l : config.listeners) {
    listeners.push_back(absl::StrCat("    {\"name\": ", JsonString(l.name), ", \"address\": ",
                                     JsonString(l.address.ToString()), ", \"cluster\": ", JsonString(l.cluster), "}"));
  }
  absl::StrAppend(&out, "  \"listeners\": [\n", absl::StrJoin(listeners, ",\n"), "\n  ],\n");
  std::vector<std::string> clusters;
  for (const config::Cluster& c : config.clusters) {
    std::vector<std::string> endpoints;
    for (const config::Endpoint& e : c.endpoints)
      endpoints.push_back(absl::StrCat("{\"address\": ", JsonString(e.ToString()), ", \"weight\": ", e.weight, "}"));
    clusters.push_back(absl::StrCat("    {\"name\": ", JsonString(c.name), ", \"connect_timeout_seconds\": ",
                                    Seconds(c.connect_timeout), ", \"response_timeout_seconds\": ",
                                    Seconds(c.response_timeout), ", \"lb_policy\": ",
                                    JsonString(config::LbPolicyName(c.lb_policy)), ", \"max_connections\": ",
                                    c.max_connections, ", \"endpoints\": [", absl::StrJoin(endpoints, ", "), "]}"));
  }
  absl::StrAppend(&out, "  \"clusters\": [\n", absl::StrJoin(clusters, ",\n"), "\n  ]\n}\n");
  return out;
}

}  // namespace skproxy
