// libFuzzer entry point for ParseConfig. Any input must end as either a Config that keeps the promises
// the proxy relies on, or an InvalidArgument error that starts with "SOURCE:LINE: " -- never a crash,
// an exception or anything in between. Seed it with config/skproxy.yaml and config/examples/.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "config/config.h"

namespace {

[[noreturn]] void Fail(absl::string_view what, absl::string_view detail) {
  std::fprintf(stderr, "config_fuzz: %.*s: %.*s\n", static_cast<int>(what.size()), what.data(),
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

void CheckError(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kInvalidArgument) Fail("unexpected status code", status.ToString());
  absl::string_view rest = status.message();
  size_t colon = absl::string_view::npos;
  int line = 0;
  if (!absl::ConsumePrefix(&rest, "fuzz.yaml:") || (colon = rest.find(": ")) == absl::string_view::npos ||
      !absl::SimpleAtoi(rest.substr(0, colon), &line) || line < 1) {
    Fail("error without SOURCE:LINE", status.message());
  }
}

void CheckConfig(const skproxy::config::Config& config) {
  if (config.listeners.empty()) Fail("accepted", "no listeners");
  for (const auto& listener : config.listeners) {
    const bool tcp = listener.protocol == skproxy::config::ListenerProtocol::kTcp;
    if ((tcp || !listener.cluster.empty()) && config.FindCluster(listener.cluster) == nullptr)
      Fail("accepted a listener without cluster", listener.name);
    if (tcp && !listener.routes.empty()) Fail("accepted routes on a tcp listener", listener.name);
    for (const auto& route : listener.routes) {
      if (config.FindCluster(route.cluster) == nullptr) Fail("accepted a route without cluster", route.name);
    }
    if (listener.inspect.max_bytes > (64u << 10)) Fail("accepted inspect.max_bytes over 64KiB", listener.name);
    if (listener.address.port() == 0) Fail("accepted port 0", listener.name);
  }
  for (const auto& cluster : config.clusters) {
    if (cluster.endpoints.empty()) Fail("accepted a cluster without endpoints", cluster.name);
    if (cluster.connect_timeout <= absl::ZeroDuration()) Fail("accepted a non-positive timeout", cluster.name);
    for (const auto& endpoint : cluster.endpoints) {
      if (endpoint.weight < 1 || endpoint.weight > 1000) Fail("accepted a weight out of 1..1000", cluster.name);
      if (endpoint.port == 0) Fail("accepted endpoint port 0", cluster.name);
      if (endpoint.host.empty()) Fail("accepted an endpoint without host", cluster.name);
      if (!endpoint.is_name && endpoint.address.port() != endpoint.port) Fail("endpoint port mismatch", cluster.name);
    }
    const auto& check = cluster.health_check;
    if (check.type != skproxy::config::HealthCheck::Type::kNone &&
        (check.interval <= absl::ZeroDuration() || check.timeout <= absl::ZeroDuration() ||
         check.healthy_threshold == 0 || check.unhealthy_threshold == 0 || check.path.empty() ||
         check.path[0] != '/')) {
      Fail("accepted a health check that cannot run", cluster.name);
    }
    if (cluster.dns_refresh <= absl::ZeroDuration()) Fail("accepted a non-positive dns_refresh", cluster.name);
    if (cluster.dns_min_refresh <= absl::ZeroDuration() || cluster.dns_max_refresh < cluster.dns_min_refresh)
      Fail("accepted DNS refresh bounds that cannot hold", cluster.name);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<skproxy::config::Config> config =
      skproxy::config::ParseConfig(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
  if (config.ok()) {
    CheckConfig(*config);
  } else {
    CheckError(config.status());
  }
  return 0;
}
