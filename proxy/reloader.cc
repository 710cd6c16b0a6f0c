#include "proxy/reloader.h"

#include <utility>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "proxy/route_table.h"
#include "proxy/cluster_manager.h"
#include "proxy/connection_limit.h"

namespace skproxy {
namespace {

// How long a new generation waits for its host-name endpoints' first answers (a name not resolved by then
// takes no connection until it is). c-ares tries each server twice for 1 s: a name gets its answer or its
// failure well within this.
constexpr absl::Duration kFirstResolution = absl::Seconds(5);

// Keys the running process is built around: the admin listener, the data path and its BPF maps, the
// worker threads. A reload that changes one is refused rather than half applied.
absl::Status CheckRestartOnlyKeys(const config::Config& now, const config::Config& next) {
  auto refuse = [&](const char* key) {
    return absl::FailedPreconditionError(
        absl::StrCat(next.source, ": ", key, ": cannot change on reload (restart skproxy to change it)"));
  };
  if (!(now.admin.address == next.admin.address)) return refuse("admin.address");
  if (now.datapath != next.datapath) return refuse("datapath");
  if (now.workers != next.workers) return refuse("workers");
  if (now.access_log_path != next.access_log_path) return refuse("access_log.path");
  if (now.upstream_mark != next.upstream_mark) return refuse("upstream_mark");
  if (now.run_as.user != next.run_as.user) return refuse("user");
  if (now.run_as.group != next.run_as.group) return refuse("group");
  const config::Sockmap &a = now.sockmap, &b = next.sockmap;
  if (a.max_entries != b.max_entries) return refuse("sockmap.max_entries");
  if (a.gate_limit_bytes != b.gate_limit_bytes) return refuse("sockmap.gate_limit");
  if (a.receive_buffer_bytes != b.receive_buffer_bytes) return refuse("sockmap.receive_buffer");
  if (a.promote_after_bytes != b.promote_after_bytes) return refuse("sockmap.promote_after");
  if (a.quiet_worker_connections != b.quiet_worker_connections) return refuse("sockmap.quiet_worker_connections");
  if (a.demote_below_bytes != b.demote_below_bytes) return refuse("sockmap.demote_below");
  if (a.demote_after_messages != b.demote_after_messages) return refuse("sockmap.demote_after_messages");
  if (a.switch_interval != b.switch_interval) return refuse("sockmap.switch_interval");
  return absl::OkStatus();
}

}  // namespace

Reloader::Reloader(std::string path, std::optional<config::DatapathMode> datapath_override,
                   std::shared_ptr<const config::Config> initial, Metrics& metrics,
                   const config::Sockmap* kernel_path)
    : path_(std::move(path)), datapath_override_(datapath_override), metrics_(metrics), kernel_path_(kernel_path) {
  current_.config = std::move(initial);
}

absl::Status Reloader::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Generation> first = Build(current_.config);
  if (!first.ok()) return first.status();
  current_ = *std::move(first);
  return absl::OkStatus();
}

absl::StatusOr<Reloader::Generation> Reloader::Build(std::shared_ptr<const config::Config> config) const {
  Generation generation{config, {}};
  absl::StatusOr<std::unique_ptr<ClusterManager>> created = ClusterManager::Create(*config, metrics_);
  if (!created.ok()) return created.status();
  std::shared_ptr<ClusterManager> clusters = *std::move(created);
  if (absl::Status s = clusters->Start(kFirstResolution); !s.ok()) return s;
  // Find gives null for a name that is no cluster: a transparent listener forwards to each connection's
  // original destination (the parser checked every other name).
  for (const config::Listener& listener : config->listeners) {
    auto context = std::make_shared<ListenerContext>();
    context->config = &listener;
    context->cluster = clusters->Find(listener.cluster);
    context->metrics = metrics_.ForListener(listener.name);
    context->inspects = listener.protocol != config::ListenerProtocol::kTcp ||
                        listener.proxy_protocol != config::ProxyProtocolVersion::kNone;
    context->routes = std::make_unique<RouteTable>(listener);
    for (const config::Route& route : listener.routes) {
      context->route_clusters.push_back(clusters->Find(route.cluster));
      context->route_decisions.push_back(&metrics_.RouteDecision(listener.name, route.name));
    }
    context->route_decisions.push_back(&metrics_.RouteDecision(listener.name, "default"));
    context->route_decisions.push_back(&metrics_.RouteDecision(listener.name, "none"));
    context->snapshot = config;
    context->clusters = clusters;
    context->limit = std::make_shared<ConnectionLimit>(listener.max_connections);
    generation.listeners.push_back(std::move(context));
  }
  return generation;
}

std::vector<std::shared_ptr<ListenerContext>> Reloader::Listeners() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_.listeners;
}

void Reloader::SetWorkers(std::vector<Worker*> workers) {
  std::lock_guard<std::mutex> lock(mu_);
  workers_ = std::move(workers);
}

std::shared_ptr<const config::Config> Reloader::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_.config;
}

void Reloader::Freeze() {
  std::lock_guard<std::mutex> lock(mu_);
  frozen_ = true;
}

absl::Status Reloader::Reload() {
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status status;
  if (frozen_) {
    status = absl::FailedPreconditionError("draining: reload refused");
  } else if (workers_.empty()) {
    status = absl::FailedPreconditionError("still starting: reload refused");
  } else if (path_.empty()) {
    status = absl::FailedPreconditionError("running the built-in config (no --config FILE): nothing to reload");
  } else {
    absl::StatusOr<config::Config> loaded = config::LoadConfigFile(path_);
    if (!loaded.ok()) {
      status = loaded.status();
    } else {
      if (datapath_override_) loaded->datapath = *datapath_override_;
      status = ApplyLocked(std::make_shared<const config::Config>(*std::move(loaded)));
    }
  }
  metrics_.CountReload(status.ok());
  if (status.ok()) {
    std::fprintf(stderr, "skproxy: reloaded %s: %zu listeners, %zu clusters\n", path_.c_str(),
                 current_.config->listeners.size(), current_.config->clusters.size());
  } else {
    std::fprintf(stderr, "skproxy: reload refused, the previous config stays in force: %s\n",
                 std::string(status.message()).c_str());
  }
  return status;
}

absl::Status Reloader::ApplyLocked(std::shared_ptr<const config::Config> config) {
  if (absl::Status s = CheckRestartOnlyKeys(*current_.config, *config); !s.ok()) return s;
  absl::StatusOr<Generation> built = Build(std::move(config));
  if (!built.ok()) return built.status();
  Generation next = *std::move(built);
  // Every socket is bound before any worker changes: a listener that cannot be bound refuses the reload.
  std::vector<std::vector<ListenerUpdate>> updates(workers_.size());
  for (const std::shared_ptr<ListenerContext>& listener : next.listeners) {
    bool kept = false;
    for (const std::shared_ptr<ListenerContext>& old : current_.listeners) {
      kept = kept || (old->config->name == listener->config->name && old->config->address == listener->config->address);
    }
    for (std::vector<ListenerUpdate>& worker : updates) {
      ListenerUpdate update{listener, UniqueFd()};
      if (!kept) {
        absl::StatusOr<UniqueFd> fd = BindListener(*listener->config, kernel_path_);
        if (!fd.ok()) return fd.status();
        update.fd = *std::move(fd);
      }
      worker.push_back(std::move(update));
    }
  }
  for (size_t i = 0; i < workers_.size(); ++i) workers_[i]->Reload(std::move(updates[i]));
  Generation retired = std::exchange(current_, std::move(next));
  // New connections take the new generation's clusters. The old ones live on while a connection of theirs
  // does, but their health checks and DNS stop now: they would go on writing the endpoint gauges the new
  // generation shares (same labels) with what the old config says.
  if (!retired.listeners.empty() && retired.listeners.front()->clusters != nullptr)
    retired.listeners.front()->clusters->Stop();
  return absl::OkStatus();
}

}  // namespace skproxy
