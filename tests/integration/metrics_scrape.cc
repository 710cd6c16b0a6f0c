#include "tests/integration/metrics_scrape.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "tests/integration/sockets.h"
#include "tests/integration/stream_io.h"

namespace skproxy::itest {

namespace {

// Sends one HTTP/1.0 request and reads the whole response, up to the server's close.
absl::StatusOr<std::string> Exchange(const SocketAddress& address, const std::string& req, Millis timeout) {
  Deadline deadline = DeadlineIn(timeout);
  auto fd = Connect(address, timeout);
  if (!fd.ok()) return fd.status();
  IoResult w = SendAll(fd->get(), req.data(), req.size(), deadline);
  if (w.bytes != req.size()) return absl::UnavailableError(absl::StrCat("HTTP request: ", w.Describe()));
  std::string resp;
  char buf[16 * 1024];
  for (;;) {
    IoResult r = RecvExact(fd->get(), buf, sizeof buf, deadline);
    resp.append(buf, r.bytes);
    if (r.eof) break;
    if (r.error || r.timed_out) return absl::UnavailableError(absl::StrCat("HTTP response: ", r.Describe()));
  }
  return resp;
}

}  // namespace

absl::StatusOr<std::string> HttpGet(const SocketAddress& address, std::string_view path, Millis timeout) {
  absl::StatusOr<std::string> exchanged = Exchange(
      address, absl::StrCat("GET ", std::string(path), " HTTP/1.0\r\nHost: ", address.ToString(), "\r\n\r\n"),
      timeout);
  if (!exchanged.ok()) return exchanged.status();
  const std::string& resp = *exchanged;
  size_t hdr_end = resp.find("\r\n\r\n");
  if (hdr_end == std::string::npos) return absl::UnavailableError("HTTP response without header end");
  std::string_view head(resp.data(), hdr_end);
  if (head.substr(0, 5) != "HTTP/" || head.find(" 200") == std::string_view::npos ||
      head.find(" 200") > head.find("\r\n"))
    return absl::UnavailableError(absl::StrCat("HTTP status: ", std::string(head.substr(0, head.find("\r\n")))));
  std::string body = resp.substr(hdr_end + 4);
  std::string lower_head(head);
  std::transform(lower_head.begin(), lower_head.end(), lower_head.begin(), ::tolower);
  if (lower_head.find("transfer-encoding: chunked") != std::string::npos) {
    std::string decoded;
    size_t i = 0;
    while (i < body.size()) {
      size_t eol = body.find("\r\n", i);
      if (eol == std::string::npos) break;
      size_t len = strtoul(body.substr(i, eol - i).c_str(), nullptr, 16);
      if (len == 0) break;
      decoded.append(body, eol + 2, len);
      i = eol + 2 + len + 2;
    }
    body = std::move(decoded);
  }
  return body;
}

absl::StatusOr<HttpResponse> HttpRequest(const SocketAddress& address, std::string_view method, std::string_view path,
                                         std::string_view body, Millis timeout) {
  absl::StatusOr<std::string> exchanged =
      Exchange(address,
               absl::StrCat(std::string(method), " ", std::string(path), " HTTP/1.0\r\nHost: ", address.ToString(),
                            "\r\nContent-Length: ", body.size(), "\r\n\r\n", std::string(body)),
               timeout);
  if (!exchanged.ok()) return exchanged.status();
  const std::string& resp = *exchanged;
  size_t hdr_end = resp.find("\r\n\r\n");
  if (hdr_end == std::string::npos || resp.compare(0, 5, "HTTP/") != 0)
    return absl::UnavailableError(absl::StrCat("not an HTTP response: ", resp.substr(0, 200)));
  HttpResponse out;
  size_t sp = resp.find(' ');
  out.status = atoi(resp.c_str() + sp + 1);
  out.headers = resp.substr(0, hdr_end);
  std::transform(out.headers.begin(), out.headers.end(), out.headers.begin(), ::tolower);
  out.body = resp.substr(hdr_end + 4);
  return out;
}

absl::StatusOr<MetricSamples> ScrapeMetrics(const SocketAddress& admin) {
  auto body = HttpGet(admin, "/metrics", 5s);
  if (!body.ok()) return body.status();
  return ParseMetrics(*body);
}

}  // namespace skproxy::itest
