// Reading the proxy's /metrics over HTTP into samples of proxy/prometheus_text.h.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "config/address.h"
#include "proxy/prometheus_text.h"
#include "tests/integration/deadline.h"

namespace skproxy::itest {

// A minimal HTTP/1.0 GET; returns the body of a 200 response.
absl::StatusOr<std::string> HttpGet(const SocketAddress& address, std::string_view path, Millis timeout);
absl::StatusOr<MetricSamples> ScrapeMetrics(const SocketAddress& admin);

}  // namespace skproxy::itest
