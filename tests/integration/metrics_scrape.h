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

// Any HTTP/1.0 request; the status, the header block (lower-cased) and the body of whatever came back.
struct HttpResponse {
  int status = 0;
  std::string headers;
  std::string body;
};
absl::StatusOr<HttpResponse> HttpRequest(const SocketAddress& address, std::string_view method, std::string_view path,
                                         std::string_view body, Millis timeout);

}  // namespace skproxy::itest
