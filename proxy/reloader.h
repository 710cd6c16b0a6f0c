// Config generations. A generation is an immutable config snapshot with its clusters and listener contexts;
// connections hold the generation they were accepted under, so a reload changes only what new connections
// see. Reload (SIGHUP, POST /reload) re-reads the config file and either applies all of it or nothing.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.h"
#include "proxy/metrics.h"
#include "proxy/worker.h"
#include "proxy/worker_context.h"

namespace skproxy {

class Reloader {
 public:
  // path: the --config file (empty: the built-in config, which cannot be reloaded). datapath_override:
  // --datapath, applied to every generation. kernel_path: the sockmap tuning listening sockets get, null
  // without the kernel path.
  Reloader(std::string path, std::optional<config::DatapathMode> datapath_override,
           std::shared_ptr<const config::Config> initial, Metrics& metrics, const config::Sockmap* kernel_path);
  // Builds the first generation: its clusters start checking health and resolve their host names.
  absl::Status Start();

  // The listener contexts of the current generation, in config order.
  std::vector<std::shared_ptr<ListenerContext>> Listeners() const;
  // The workers a reload updates; set once, before the first reload.
  void SetWorkers(std::vector<Worker*> workers);

  // Re-reads the file. A config that does not parse, does not validate, changes a key only a restart can
  // change, or names a listener that cannot be bound is refused with its error, and nothing changes.
  absl::Status Reload();
  // From now on every reload is refused (the process is draining).
  void Freeze();
  std::shared_ptr<const config::Config> current() const;

 private:
  struct Generation {
    std::shared_ptr<const config::Config> config;
    std::vector<std::shared_ptr<ListenerContext>> listeners;
  };
  absl::StatusOr<Generation> Build(std::shared_ptr<const config::Config> config) const;
  absl::Status ApplyLocked(std::shared_ptr<const config::Config> config);

  const std::string path_;
  const std::optional<config::DatapathMode> datapath_override_;
  Metrics& metrics_;
  const config::Sockmap* kernel_path_;
  mutable std::mutex mu_;
  Generation current_;  // guarded by mu_
  std::vector<Worker*> workers_;
  bool frozen_ = false;  // guarded by mu_
};

}  // namespace skproxy
