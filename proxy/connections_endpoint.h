// GET /connections on the admin listener: the connections open now, across every worker, as JSON, in
// accept order and paged with a cursor (?limit=N&after=ID). Each worker describes its own connections on
// its own thread when asked (Worker::Snapshot), so the data path keeps no shared summary and does no work
// per byte for it.
#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

#include "proxy/admin_server.h"

namespace skproxy {

class Worker;

class ConnectionsEndpoint {
 public:
  static constexpr size_t kDefaultLimit = 100;
  static constexpr size_t kMaxLimit = 1000;

  // Once the workers run; until then the answer lists nothing.
  void SetWorkers(std::vector<Worker*> workers);
  // From an admin thread.
  AdminResponse Handle(const AdminRequest& request);

 private:
  std::mutex mu_;
  std::vector<Worker*> workers_;  // guarded by mu_
};

}  // namespace skproxy
