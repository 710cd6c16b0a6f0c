#include "proxy/admin_server.h"

#include <civetweb.h>

#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace skproxy {
namespace {

const char* Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

void Send(mg_connection* connection, const AdminResponse& response, const std::string& extra_headers = "") {
  std::string head = absl::StrCat("HTTP/1.1 ", response.status, " ", Reason(response.status),
                                  "\r\nContent-Type: ", response.content_type,
                                  "\r\nContent-Length: ", response.body.size(),
                                  "\r\nCache-Control: no-store\r\n", extra_headers, "\r\n");
  mg_write(connection, head.data(), head.size());
  if (!response.body.empty()) mg_write(connection, response.body.data(), response.body.size());
}

}  // namespace

std::map<std::string, std::string> ParseQuery(const std::string& query) {
  std::map<std::string, std::string> out;
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    out[kv.first] = kv.second;
  }
  return out;
}

AdminServer::~AdminServer() {
  if (context_ != nullptr) mg_stop(context_);
}

void AdminServer::Route(const std::string& method, const std::string& path, Handler handler) {
  routes_[path][method] = std::move(handler);
}

absl::Status AdminServer::Start(const SocketAddress& address) {
  static std::once_flag library;
  std::call_once(library, [] { mg_init_library(0); });
  const std::string port = address.ToString();
  // Two threads: the admin endpoints are cheap, and a scraper plus an operator is the expected load.
  // Keep-alive off: every request gets its answer and the connection closes, so nothing idles here.
  const char* options[] = {"listening_ports", port.c_str(),  "num_threads", "2",
                           "request_timeout_ms", "10000",     "enable_keep_alive", "no",
                           nullptr};
  mg_callbacks callbacks{};
  context_ = mg_start(&callbacks, this, options);
  if (context_ == nullptr) return absl::UnavailableError(absl::StrCat("admin listener ", port, ": cannot listen"));
  mg_set_request_handler(context_, "**", &AdminServer::Dispatch, this);
  return absl::OkStatus();
}

int AdminServer::Dispatch(mg_connection* connection, void* self) {
  return static_cast<AdminServer*>(self)->Serve(connection);
}

int AdminServer::Serve(mg_connection* connection) {
  const mg_request_info* info = mg_get_request_info(connection);
  AdminRequest request;
  request.method = info->request_method != nullptr ? info->request_method : "";
  request.path = info->local_uri != nullptr ? info->local_uri : "";
  request.query = info->query_string != nullptr ? info->query_string : "";
  auto route = routes_.find(request.path);
  if (route == routes_.end()) {
    Send(connection, {404, "text/plain; charset=utf-8", absl::StrCat("no such admin path: ", request.path, "\n")});
    return 404;
  }
  auto handler = route->second.find(request.method);
  if (handler == route->second.end()) {
    std::vector<std::string> allowed;
    for (const auto& [method, unused] : route->second) allowed.push_back(method);
    const std::string allow = absl::StrJoin(allowed, ", ");
    Send(connection, {405, "text/plain; charset=utf-8", absl::StrCat(request.path, " allows ", allow, "\n")},
         absl::StrCat("Allow: ", allow, "\r\n"));
    return 405;
  }
  if (info->content_length > static_cast<long long>(kMaxBodyBytes)) {
    Send(connection, {413, "text/plain; charset=utf-8", "request body too large\n"});
    return 413;
  }
  char buffer[4096];
  int n;
  while ((n = mg_read(connection, buffer, sizeof(buffer))) > 0) {
    if (request.body.size() + static_cast<size_t>(n) > kMaxBodyBytes) {
      Send(connection, {413, "text/plain; charset=utf-8", "request body too large\n"});
      return 413;
    }
    request.body.append(buffer, static_cast<size_t>(n));
  }
  AdminResponse response = handler->second(request);
  Send(connection, response);
  return response.status;
}

}  // namespace skproxy
