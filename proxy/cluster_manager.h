// Every cluster of the config at run time, and the one thread that keeps their endpoints' state current:
// active health checks, DNS re-resolution, and the balancers' view of which endpoints are usable. Workers
// never wait for it: they read the endpoints' atomics (cluster.h).
#pragma once

#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "config/config.h"
#include "proxy/cluster.h"
#include "proxy/metrics.h"
#include "proxy/poll_set.h"
#include "proxy/unique_fd.h"

namespace skproxy {

class DnsResolver;

class ClusterManager {
 public:
  static absl::StatusOr<std::unique_ptr<ClusterManager>> Create(const config::Config& config, Metrics& metrics);
  ~ClusterManager();

  // The cluster named `name` (as in the config), or null.
  ClusterState* Find(std::string_view name);

  // Starts the cluster thread and waits until every host name has had its first answer, at most
  // `first_resolution` (a name that has not resolved by then takes no connection until it does).
  absl::Status Start(absl::Duration first_resolution);
  void Stop();

 private:
  ClusterManager() = default;
  void Run();

  std::vector<std::unique_ptr<ClusterState>> clusters_;
  std::vector<std::unique_ptr<LoopTask>> tasks_;
  std::vector<const DnsResolver*> resolvers_;
  UniqueFd stop_event_;
  std::thread thread_;
  absl::Notification first_round_done_;
};

}  // namespace skproxy
