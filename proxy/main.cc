// skproxy: flags, config, the kernel path (or why not), metrics, workers, then wait for a signal.
#include <signal.h>
#include <unistd.h>
#include <sys/resource.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bpf/loader.h"
#include "config/config.h"
#include "proxy/access_log.h"
#include "proxy/admin_server.h"
#include "proxy/kernel_version.h"
#include "proxy/metrics.h"
#include "proxy/process_state.h"
#include "proxy/config_json.h"
#include "proxy/connections_endpoint.h"
#include "proxy/privileges.h"
#include "proxy/reloader.h"
#include "proxy/status_page.h"
#include "proxy/worker.h"

namespace skproxy {
namespace {

constexpr char kUsage[] = R"(usage: skproxy [--config FILE] [--datapath auto|sockmap|userspace] [--check-config]
       skproxy --help | --version

Proxy (tcp, http and tls listeners, clusters) whose bytes move inside the kernel (sockmap) or through an
io_uring copy in user space.

  --config FILE      YAML config (default: the built-in config, see config/skproxy.yaml)
  --datapath MODE    override the config's datapath: auto (each connection on the path its traffic
                     suits, moved as it changes), sockmap (every connection in the kernel; refuse to
                     start without it), userspace (always copy in user space)
  --check-config     validate the config and exit: 0 if valid, 2 if not
  --help, --version
)";

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Options {
  std::string config_path;
  std::string datapath;
  bool check_config = false;
};

// Hand-rolled rather than absl flags: the command line is fixed by the product (dashed names such as
// --check-config, --help exiting 0), which absl's flag names and help handling do not allow.
int ParseOptions(int argc, char** argv, Options* options) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto take_value = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 >= argc) return false;
      value = argv[++i];
      return true;
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    } else if (arg == "--version") {
      std::printf("skproxy %s\n", SKPROXY_VERSION);
      return kExitOk;
    } else if (arg == "--check-config") {
      options->check_config = true;
    } else if (arg == "--config" && take_value()) {
      options->config_path = value;
    } else if (arg == "--datapath" && take_value()) {
      options->datapath = value;
    } else {
      std::fprintf(stderr, "skproxy: unknown or incomplete option '%s'\n%s", argv[i], kUsage);
      return kExitUsage;
    }
  }
  return -1;  // go on
}

void RegisterAdminEndpoints(AdminServer& admin, Metrics& metrics, ProcessState& state, Reloader& reloader,
                            ConnectionsEndpoint& connections) {
  admin.Route("GET", "/connections",
              [&connections](const AdminRequest& request) { return connections.Handle(request); });
  admin.Route("GET", "/", [](const AdminRequest&) {
    return AdminResponse{200, "text/html; charset=utf-8", std::string(StatusPageHtml())};
  });
  admin.Route("GET", "/config", [&reloader](const AdminRequest&) {
    return AdminResponse{200, "application/json", ConfigToJson(*reloader.current())};
  });
  admin.Route("POST", "/reload", [&reloader](const AdminRequest&) {
    // On a thread of its own: the admin server's threads have small stacks, and a reload parses YAML and
    // builds clusters (under ASan it overflowed one).
    absl::Status s;
    std::thread([&] { s = reloader.Reload(); }).join();
    if (s.ok()) return AdminResponse{200, "text/plain", "reloaded\n"};
    return AdminResponse{s.code() == absl::StatusCode::kInvalidArgument ? 400 : 409, "text/plain",
                         absl::StrCat(s.message(), "\n")};
  });
  admin.Route("GET", "/metrics", [&metrics](const AdminRequest&) {
    return AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8", metrics.Render()};
  });
  admin.Route("GET", "/healthz", [](const AdminRequest&) { return AdminResponse{200, "text/plain", "ok\n"}; });
  admin.Route("GET", "/ready", [&state](const AdminRequest&) {
    if (state.ready()) return AdminResponse{200, "text/plain", "ready\n"};
    std::string why = state.draining() ? "draining\n"
                      : state.failed_workers() > 0
                          ? absl::StrCat(state.failed_workers(), " worker(s) failed\n")
                          : std::string("starting\n");
    return AdminResponse{503, "text/plain", absl::StrCat("not ready: ", why)};
  });
}

// SIGTERM/SIGINT: every worker stops accepting at once and its connections go on for up to `timeout`;
// then what is left is reset. A second SIGTERM/SIGINT cuts the wait short.
void Drain(std::vector<std::unique_ptr<Worker>>& workers, ProcessState& state, absl::Duration timeout,
           int signal_number, const sigset_t& signals) {
  state.SetDraining();
  std::fprintf(stderr, "skproxy: %s, draining: no new connections, established ones have up to %s\n",
               strsignal(signal_number), absl::FormatDuration(timeout).c_str());
  for (auto& worker : workers) worker->Drain();
  const absl::Time deadline = absl::Now() + timeout;
  bool cut_short = false;
  for (auto& worker : workers) {
    // Woken every 100 ms to notice a second signal.
    while (!cut_short && !worker->WaitUntilExited(std::min(deadline, absl::Now() + absl::Milliseconds(100))) &&
           absl::Now() < deadline) {
      const timespec none{0, 0};
      if (int again = sigtimedwait(&signals, nullptr, &none); again == SIGTERM || again == SIGINT) {
        std::fprintf(stderr, "skproxy: %s again, not waiting any longer\n", strsignal(again));
        cut_short = true;
      }
    }
  }
  size_t reset = 0;
  for (auto& worker : workers) reset += worker->Stop();
  if (reset > 0) {
    std::fprintf(stderr, "skproxy: drain timeout: %zu connections reset\n", reset);
  } else {
    std::fprintf(stderr, "skproxy: drained, every connection finished\n");
  }
}

int Main(int argc, char** argv) {
  Options options;
  if (int exit_code = ParseOptions(argc, argv, &options); exit_code >= 0) return exit_code;

  absl::StatusOr<config::Config> loaded =
      options.config_path.empty() ? config::LoadDefaultConfig() : config::LoadConfigFile(options.config_path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", std::string(loaded.status().message()).c_str());
    return kExitUsage;
  }
  config::Config config = *std::move(loaded);
  std::optional<config::DatapathMode> datapath_override;
  if (!options.datapath.empty()) {
    absl::StatusOr<config::DatapathMode> mode = config::ParseDatapathMode(options.datapath);
    if (!mode.ok()) {
      std::fprintf(stderr, "--datapath: %s\n", std::string(mode.status().message()).c_str());
      return kExitUsage;
    }
    config.datapath = *mode;
    datapath_override = *mode;
  }
  if (options.check_config) {
    std::printf("config ok: %s\n", config.source.c_str());
    return kExitOk;
  }

  // Signals are taken by sigwait in this thread only; workers inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Two descriptors per connection: take every descriptor the hard limit allows.
  if (rlimit limit{}; getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }

  const int worker_count =
      config.workers > 0 ? config.workers : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  // The kernel path, or why not. The kernel's age is checked before loading: an old verifier's rejection
  // ("unknown kfunc") would not tell the operator what to upgrade to.
  std::unique_ptr<bpf::SockmapProgram> sockmap;
  std::string fallback_reason;  // set when auto could not have the kernel path: counted per connection
  if (config.datapath != config::DatapathMode::kUserspace) {
    absl::Status unavailable = CheckKernelForSockmap(RunningKernelRelease());
    fallback_reason = "kernel_too_old";
    if (unavailable.ok()) {
      absl::StatusOr<std::unique_ptr<bpf::SockmapProgram>> program =
          bpf::SockmapProgram::Load(
          {config.sockmap.max_entries, config.sockmap.receive_buffer_bytes, static_cast<uint32_t>(worker_count)});
      if (program.ok()) {
        sockmap = *std::move(program);
        fallback_reason.clear();
      } else {
        unavailable = program.status();
        fallback_reason = "kernel_path_unavailable";
      }
    }
    if (!unavailable.ok() && config.datapath == config::DatapathMode::kSockmap) {
      std::fprintf(stderr, "skproxy: datapath sockmap: kernel path unavailable: %s\n", unavailable.ToString().c_str());
      return kExitFailure;
    }
    if (!unavailable.ok()) {
      std::fprintf(stderr, "skproxy: kernel path unavailable, every connection uses the user-space path: %s\n",
                   unavailable.ToString().c_str());
    }
  }

  // The first generation; reloads make new ones, and this one lives as long as a connection uses it.
  const auto initial = std::make_shared<const config::Config>(std::move(config));

  // Every worker's listening sockets, bound now: the last step that may need privilege beyond what the
  // process keeps (a port below 1024, the kernel path's forced buffer sizes).
  std::vector<std::vector<UniqueFd>> listening_sockets(static_cast<size_t>(worker_count));
  for (std::vector<UniqueFd>& sockets : listening_sockets) {
    for (const config::Listener& listener : initial->listeners) {
      absl::StatusOr<UniqueFd> fd = BindListener(listener, sockmap != nullptr ? &initial->sockmap : nullptr);
      if (!fd.ok()) {
        std::fprintf(stderr, "skproxy: %s\n", fd.status().ToString().c_str());
        return kExitFailure;
      }
      sockets.push_back(*std::move(fd));
    }
  }
  // Before any other thread exists: a thread inherits its creator's capabilities.
  absl::StatusOr<std::string> kept = DropPrivileges(NeedsOf(*initial, sockmap != nullptr), initial->run_as);
  if (!kept.ok()) {
    std::fprintf(stderr, "skproxy: dropping privileges: %s\n", kept.status().ToString().c_str());
    return kExitFailure;
  }
  if (!initial->run_as.empty())
    std::fprintf(stderr, "skproxy: running as uid %u gid %u\n", getuid(), getgid());
  std::fprintf(stderr, "skproxy: capabilities kept: %s\n", kept->c_str());

  ProcessState state;
  Metrics metrics(sockmap.get(), &state);
  Reloader reloader(options.config_path, datapath_override, initial, metrics,
                    sockmap != nullptr ? &initial->sockmap : nullptr);
  if (absl::Status s = reloader.Start(); !s.ok()) {
    std::fprintf(stderr, "skproxy: %s\n", s.ToString().c_str());
    return kExitFailure;
  }
  AdminServer admin;
  ConnectionsEndpoint connections;
  RegisterAdminEndpoints(admin, metrics, state, reloader, connections);
  if (absl::Status s = admin.Start(initial->admin.address); !s.ok()) {
    std::fprintf(stderr, "skproxy: %s\n", s.ToString().c_str());
    return kExitFailure;
  }

  std::unique_ptr<AccessLog> access_log;
  if (!initial->access_log_path.empty()) {
    absl::StatusOr<std::unique_ptr<AccessLog>> opened = AccessLog::Open(initial->access_log_path);
    if (!opened.ok()) {
      std::fprintf(stderr, "skproxy: %s\n", opened.status().ToString().c_str());
      return kExitFailure;
    }
    access_log = *std::move(opened);
  }

  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < worker_count; ++i) {
    workers.push_back(std::make_unique<Worker>(*initial, metrics, sockmap.get(), static_cast<uint32_t>(i),
                                               fallback_reason, reloader.Listeners(), state, access_log.get()));
    if (absl::Status s = workers.back()->Bind(std::move(listening_sockets[static_cast<size_t>(i)])); !s.ok()) {
      std::fprintf(stderr, "skproxy: %s\n", s.ToString().c_str());
      return kExitFailure;
    }
  }
  for (auto& worker : workers) {
    if (absl::Status s = worker->Start(); !s.ok()) {
      std::fprintf(stderr, "skproxy: starting a worker: %s\n", s.ToString().c_str());
      return kExitFailure;
    }
  }
  std::vector<Worker*> worker_pointers;
  for (auto& worker : workers) worker_pointers.push_back(worker.get());
  connections.SetWorkers(worker_pointers);
  reloader.SetWorkers(std::move(worker_pointers));
  // Before the ready line: whoever waits for that line may ask /ready at once.
  state.SetStarted();
  std::fprintf(stderr, "skproxy ready: datapath=%s workers=%d admin=%s\n", sockmap ? "sockmap" : "userspace",
               worker_count, initial->admin.address.ToString().c_str());
  for (const config::Listener& listener : initial->listeners)
    std::fprintf(stderr, "skproxy: listener %s (%s, %zu routes) on %s -> %s\n", listener.name.c_str(),
                 std::string(config::ListenerProtocolName(listener.protocol)).c_str(), listener.routes.size(),
                 listener.address.ToString().c_str(),
                 listener.transparent        ? "original destination"
                 : listener.cluster.empty() ? "no default cluster"
                                             : ("cluster " + listener.cluster).c_str());

  int received = 0;
  for (;;) {
    sigwait(&signals, &received);
    if (received == SIGUSR1) {
      if (access_log != nullptr) access_log->Reopen();  // logrotate moved the file
      continue;
    }
    if (received != SIGHUP) break;
    reloader.Reload().IgnoreError();  // logged, counted; the old config stays in force on failure
  }
  reloader.Freeze();
  Drain(workers, state, reloader.current()->drain_timeout, received, signals);
  access_log.reset();  // writes every line still queued
  // Every connection is closed now. The admin server (civetweb) would take up to 2 s more to stop its
  // listener thread, and the kernel frees the BPF objects and sockets with the process anyway.
  std::fflush(stderr);
#if defined(__SANITIZE_ADDRESS__)
  // The SKPROXY_SANITIZE build: LeakSanitizer checks from an atexit hook, which quick_exit skips. Checked
  // here instead, with what main still owns reachable from its stack; a leak exits with the report.
  __lsan_do_leak_check();
#endif
  std::quick_exit(kExitOk);
}

}  // namespace
}  // namespace skproxy

int main(int argc, char** argv) { return skproxy::Main(argc, argv); }
