#include "proxy/cluster_manager.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "proxy/dns_resolver.h"
#include "proxy/health_checker.h"

namespace skproxy {
namespace {

// How often the balancers learn of endpoints that became usable or unusable without an event on this
// thread (an ejection by a worker, its end), and the gauges are refreshed.
constexpr absl::Duration kRefreshInterval = absl::Milliseconds(100);

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterManager>> ClusterManager::Create(const config::Config& config,
                                                                       Metrics& metrics) {
  std::unique_ptr<ClusterManager> manager(new ClusterManager());
  bool any_names = false;
  for (const config::Cluster& cluster : config.clusters) any_names |= cluster.has_names();
  if (any_names) {
    if (int rc = ares_library_init(ARES_LIB_INIT_ALL); rc != ARES_SUCCESS)
      return absl::InternalError(absl::StrCat("c-ares: ", ares_strerror(rc)));
  }
  for (const config::Cluster& cluster : config.clusters) {
    manager->clusters_.push_back(std::make_unique<ClusterState>(cluster, metrics));
    ClusterState& state = *manager->clusters_.back();
    if (cluster.has_names()) {
      absl::StatusOr<std::unique_ptr<DnsResolver>> resolver = DnsResolver::Create(state);
      if (!resolver.ok()) return resolver.status();
      manager->resolvers_.push_back(resolver->get());
      manager->tasks_.push_back(*std::move(resolver));
    }
    if (cluster.health_check.type != config::HealthCheck::Type::kNone) {
      manager->tasks_.push_back(std::make_unique<HealthChecker>(state));
    }
  }
  manager->stop_event_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!manager->stop_event_.valid()) return absl::ErrnoToStatus(errno, "eventfd");
  return manager;
}

ClusterManager::~ClusterManager() { Stop(); }

ClusterState* ClusterManager::Find(std::string_view name) {
  for (auto& cluster : clusters_)
    if (cluster->name() == name) return cluster.get();
  return nullptr;
}

absl::Status ClusterManager::Start(absl::Duration first_resolution) {
  thread_ = std::thread([this] { Run(); });
  if (!first_round_done_.WaitForNotificationWithTimeout(first_resolution))
    std::fprintf(stderr, "skproxy: some endpoint names did not resolve within %s; they take no connection "
                         "until they do\n", absl::FormatDuration(first_resolution).c_str());
  return absl::OkStatus();
}

void ClusterManager::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  if (write(stop_event_.get(), &one, sizeof(one)) < 0) std::perror("skproxy: waking the cluster thread");
  thread_.join();
}

void ClusterManager::Run() {
  PollSet set;
  absl::Time next_refresh = absl::Now();
  for (;;) {
    absl::Time now = absl::Now();
    if (!first_round_done_.HasBeenNotified() &&
        std::all_of(resolvers_.begin(), resolvers_.end(), [](const DnsResolver* r) { return r->first_round_done(); })) {
      // The balancers learn which names resolved before the workers start.
      for (auto& cluster : clusters_) cluster->Refresh();
      first_round_done_.Notify();
    }
    if (now >= next_refresh) {
      for (auto& cluster : clusters_) cluster->Refresh();
      next_refresh = now + kRefreshInterval;
    }
    set.Clear();
    const size_t stop_index = set.Add(stop_event_.get(), POLLIN);
    absl::Time wake = next_refresh;
    for (auto& task : tasks_) task->Prepare(now, set, wake);
    const int timeout_ms =
        static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(wake - absl::Now()) + 1, 0, 1000));
    const int n = poll(set.fds().data(), set.fds().size(), timeout_ms);
    if (n < 0 && errno != EINTR) {
      std::perror("skproxy: cluster thread: poll");
      return;
    }
    if (n > 0 && set.revents(stop_index) != 0) return;
    now = absl::Now();
    for (auto& task : tasks_) task->Dispatch(now, set);
  }
}

}  // namespace skproxy
