// The admin listener: a small HTTP server on its own threads (civetweb) that routes a fixed set of paths to
// handlers. Unknown paths get 404, a known path with another method 405 (with Allow), a request body larger
// than kMaxBodyBytes 413. Request parsing, header limits and timeouts are civetweb's.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "config/address.h"

struct mg_context;
struct mg_connection;

namespace skproxy {

struct AdminRequest {
  std::string method;
  std::string path;
  std::string query;  // after '?', raw
  std::string body;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class AdminServer {
 public:
  using Handler = std::function<AdminResponse(const AdminRequest&)>;
  static constexpr size_t kMaxBodyBytes = 64 * 1024;

  AdminServer() = default;
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Before Start: `method` on `path` (exact match) is answered by `handler`, called on a server thread.
  void Route(const std::string& method, const std::string& path, Handler handler);
  // Listens on `address` and serves until destroyed.
  absl::Status Start(const SocketAddress& address);

 private:
  static int Dispatch(mg_connection* connection, void* self);
  int Serve(mg_connection* connection);

  std::map<std::string, std::map<std::string, Handler>> routes_;  // path -> method -> handler
  mg_context* context_ = nullptr;
};

// Parses "key=value&key2=value2" (no decoding beyond what the admin endpoints need: plain tokens).
std::map<std::string, std::string> ParseQuery(const std::string& query);

}  // namespace skproxy
