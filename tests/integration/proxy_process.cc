#include "tests/integration/proxy_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/integration/command.h"
#include "tests/integration/connections_page.h"
#include "tests/integration/sanitizer_report.h"
#include "tests/integration/sockets.h"

#ifndef SKPROXY_BINARY
#define SKPROXY_BINARY ""
#endif

namespace skproxy::itest {

std::string ProxyConfig::ToYaml() const {
  std::string y = absl::StrCat("admin: { address: \"", admin.ToString(), "\" }\n", "datapath: ", datapath, "\n",
                               "workers: ", workers, "\n");
  if (!drain_timeout.empty()) absl::StrAppend(&y, "drain_timeout: ", drain_timeout, "\n");
  if (!access_log.empty()) absl::StrAppend(&y, "access_log: { path: \"", access_log, "\" }\n");
  if (!upstream_mark.empty()) absl::StrAppend(&y, "upstream_mark: ", upstream_mark, "\n");
  if (!user.empty()) absl::StrAppend(&y, "user: ", user, "\n");
  if (!gate_limit.empty() || !receive_buffer.empty() || !quiet_worker_connections.empty() ||
      !promote_after.empty() || !demote_below.empty() || !demote_after_messages.empty() ||
      !switch_interval.empty()) {
    y += "sockmap:\n";
    if (!gate_limit.empty()) absl::StrAppend(&y, "  gate_limit: ", gate_limit, "\n");
    if (!receive_buffer.empty()) absl::StrAppend(&y, "  receive_buffer: ", receive_buffer, "\n");
    if (!quiet_worker_connections.empty())
      absl::StrAppend(&y, "  quiet_worker_connections: ", quiet_worker_connections, "\n");
    if (!promote_after.empty()) absl::StrAppend(&y, "  promote_after: ", promote_after, "\n");
    if (!demote_below.empty()) absl::StrAppend(&y, "  demote_below: ", demote_below, "\n");
    if (!demote_after_messages.empty())
      absl::StrAppend(&y, "  demote_after_messages: ", demote_after_messages, "\n");
    if (!switch_interval.empty()) absl::StrAppend(&y, "  switch_interval: ", switch_interval, "\n");
  }
  if (!listeners_and_clusters_yaml.empty()) {
    std::vector<std::pair<std::string, std::string>> addresses;
    for (size_t i = 0; i < listeners.size(); ++i)
      addresses.emplace_back(absl::StrCat("$LISTENER", i), listeners[i].address.ToString());
    return y + absl::StrReplaceAll(listeners_and_clusters_yaml, addresses);
  }
  y += "listeners:\n";
  for (const auto& l : listeners) {
    absl::StrAppend(&y, "  - name: ", l.name, "\n    address: \"", l.address.ToString(), "\"\n");
    absl::StrAppend(&y, l.transparent ? "    transparent: true\n" : absl::StrCat("    cluster: ", l.cluster, "\n"));
    for (absl::string_view line : absl::StrSplit(l.extra, '\n', absl::SkipEmpty())) absl::StrAppend(&y, "    ", line, "\n");
  }
  y += "clusters:\n";
  for (const auto& c : clusters) {
    absl::StrAppend(&y, "  - name: ", c.name, "\n    connect_timeout: ", c.connect_timeout, "\n");
    if (!c.endpoints.empty()) {
      y += "    endpoints: [";
      for (size_t i = 0; i < c.endpoints.size(); i++)
        absl::StrAppend(&y, i ? ", " : "", "\"", c.endpoints[i].ToString(), "\"");
      y += "]\n";
    }
    for (absl::string_view line : absl::StrSplit(c.extra, '\n', absl::SkipEmpty())) absl::StrAppend(&y, "    ", line, "\n");
  }
  return y;
}

ProxyConfig SimpleProxyConfig(const std::string& datapath, std::vector<SocketAddress> endpoints, int listener_family,
                              const std::string& connect_timeout) {
  ProxyConfig c;
  c.datapath = datapath;
  c.listeners.push_back(ListenerSpec{"web", LoopbackAddress(listener_family, 0), "backend"});
  c.clusters.push_back(ClusterSpec{"backend", connect_timeout, std::move(endpoints)});
  return c;
}

std::string ProxyBinaryPath() {
  const char* env = getenv("SKPROXY_BINARY");
  if (env && *env) return env;
  return SKPROXY_BINARY;
}

// As root nothing is missing, so a kernel path that does not load is a failure, never a skip: a broken
// verdict program must not turn every sockmap test into a silent pass. SKPROXY_REQUIRE_SOCKMAP=0 relaxes it
// for a root shell on a kernel known to lack the features.
bool RequireSockmap() {
  const char* env = getenv("SKPROXY_REQUIRE_SOCKMAP");
  if (env != nullptr) return std::string(env) == "1";
  return geteuid() == 0;
}

absl::StatusOr<std::unique_ptr<ProxyProcess>> ProxyProcess::Start(ProxyConfig config, Millis ready_timeout) {
  std::unique_ptr<ProxyProcess> p(new ProxyProcess());
  if (config.admin.port() == 0) config.admin.set_port(PickFreePort(config.admin.family()));
  for (auto& l : config.listeners)
    if (l.address.port() == 0) l.address.set_port(PickFreePort(l.address.family()));
  p->config_ = config;

  const std::string binary = ProxyBinaryPath();
  if (binary.empty() || access(binary.c_str(), X_OK) != 0)
    return absl::NotFoundError(absl::StrCat("proxy binary '", binary, "' is not executable; set SKPROXY_BINARY"));

  char dir_template[] = "/tmp/skproxy-itest-XXXXXX";
  if (!mkdtemp(dir_template)) return absl::ErrnoToStatus(errno, "mkdtemp");
  p->dir_ = dir_template;
  // Readable by every user: a command_prefix may run the proxy as another one (setpriv --reuid).
  chmod(dir_template, 0755);
  p->config_path_ = p->dir_ + "/skproxy.yaml";
  p->stderr_path_ = p->dir_ + "/stderr.log";
  {
    std::ofstream out(p->config_path_);
    out << config.ToYaml();
    if (!out) return absl::InternalError("cannot write " + p->config_path_);
  }

  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "pipe2");
  std::vector<std::string> args = config.command_prefix;
  for (const std::string& a : {binary, std::string("--config"), p->config_path_, std::string("--datapath"),
                               config.datapath})
    args.push_back(a);
  absl::StatusOr<pid_t> spawned = SpawnChild(args, pipefd[1], pipefd[1], config.env);
  if (!spawned.ok()) {
    close(pipefd[0]);
    close(pipefd[1]);
    return spawned.status();
  }
  const pid_t pid = *spawned;
  close(pipefd[1]);
  p->pid_ = pid;
  p->stderr_thread_ = std::thread([proc = p.get(), fd = pipefd[0]] { proc->CollectStderr(fd); });

  std::unique_lock<std::mutex> lock(p->mu_);
  bool ready = p->cv_.wait_for(lock, ready_timeout, [&] {
    return p->stderr_text_.find("skproxy ready:") != std::string::npos || p->stderr_done_;
  });
  bool is_ready = p->stderr_text_.find("skproxy ready:") != std::string::npos;
  lock.unlock();
  if (is_ready) return p;

  // Not ready: it exited, or it hangs. Either way reap it and report why, with its stderr.
  int status = -1;
  if (ready) {  // the pipe closed: the process is exiting
    WaitFor([&] { return p->Running() == false; }, 5s);
    status = p->exit_status_.value_or(-1);
  } else {
    auto st = p->Stop(2s);
    status = st.ok() ? *st : -1;
  }
  std::string err = p->StderrTail();
  std::string msg = absl::StrCat(ready ? "proxy exited before it was ready, status " : "proxy not ready within ",
                                 ready ? std::to_string(status) : absl::StrCat(ready_timeout.count(), " ms"),
                                 "; stderr:\n", err);
  std::string lower = err;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  const bool mentions_bpf =
      lower.find("bpf") != std::string::npos || lower.find("kernel path unavailable") != std::string::npos;
  if (ready && status == 1 && config.datapath == "sockmap" && mentions_bpf)
    return absl::FailedPreconditionError(msg);
  return absl::UnavailableError(msg);
}

bool ProxyProcess::IsBpfUnavailable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition;
}

void ProxyProcess::CollectStderr(int fd) {
  FILE* log = fopen(stderr_path_.c_str(), "w");
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (log) {
      fwrite(buf, 1, n, log);
      fflush(log);
    }
    std::lock_guard<std::mutex> lock(mu_);
    stderr_text_.append(buf, n);
    cv_.notify_all();
  }
  if (log) fclose(log);
  close(fd);
  std::lock_guard<std::mutex> lock(mu_);
  stderr_done_ = true;
  cv_.notify_all();
}

ProxyProcess::~ProxyProcess() {
  if (pid_ > 0) Stop(10s).IgnoreError();
  if (stderr_thread_.joinable()) stderr_thread_.join();
  // Whatever the test expected of the exit: a sanitizer's report (SKPROXY_SANITIZE build) fails it.
  FailOnSanitizerReport("skproxy", Stderr());
  const char* keep = getenv("SKPROXY_KEEP_LOGS");
  bool failed = ::testing::Test::HasFailure();
  if (!dir_.empty()) {
    if ((keep && *keep) || failed) {
      fprintf(stderr, "[skproxy] config and stderr kept in %s\n", dir_.c_str());
    } else {
      unlink(config_path_.c_str());
      unlink(stderr_path_.c_str());
      rmdir(dir_.c_str());
    }
  }
}

std::string ProxyProcess::Stderr() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stderr_text_;
}

std::string ProxyProcess::StderrTail(size_t max_bytes) const {
  std::string all = Stderr();
  if (all.size() <= max_bytes) return all;
  return "..." + all.substr(all.size() - max_bytes);
}

std::string ProxyProcess::ReadyLine() const {
  std::string all = Stderr();
  size_t at = all.find("skproxy ready:");
  if (at == std::string::npos) return "";
  return all.substr(at, all.find('\n', at) - at);
}

absl::StatusOr<int> ProxyProcess::FdCount() const {
  std::string path = absl::StrCat("/proc/", pid_, "/fd");
  DIR* d = opendir(path.c_str());
  if (!d) return absl::ErrnoToStatus(errno, path);
  int n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

std::string ProxyProcess::InFlight() const {
  const ConnectionsPage page = GetConnections(config_.admin, "?limit=100");
  std::string out = absl::StrCat("GET /connections: ", page.status, "\n", page.body);
  const std::string fds = absl::StrCat("/proc/", pid_, "/fd");
  DIR* d = opendir(fds.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    char target[64] = {};
    const std::string link = absl::StrCat(fds, "/", e->d_name);
    if (readlink(link.c_str(), target, sizeof(target) - 1) <= 0 || std::string(target) != "anon_inode:[io_uring]")
      continue;
    std::ifstream info(absl::StrCat("/proc/", pid_, "/fdinfo/", e->d_name));
    std::string line;
    absl::StrAppend(&out, "io_uring fd ", e->d_name, ":\n");
    while (std::getline(info, line)) absl::StrAppend(&out, "  ", line, "\n");
  }
  closedir(d);
  // TCP sockets with bytes queued, either end: which side of a stalled stream holds them.
  const CommandResult ss = RunCommand({"ss", "-tnmoi"}, 5s);
  absl::StrAppend(&out, "ss -tnmoi, sockets with bytes queued:\n");
  bool keep = false;
  for (absl::string_view line : absl::StrSplit(ss.out, '\n')) {
    if (!line.empty() && line[0] != ' ' && line[0] != '\t') {
      std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
      keep = fields.size() > 2 && (fields[1] != "0" || fields[2] != "0") && fields[1] != "Recv-Q";
    }
    if (keep) absl::StrAppend(&out, "  ", line, "\n");
  }
  return out;
}

double ProxyProcess::Metric(std::string_view name, const LabelFilter& filter) const {
  auto m = Metrics();
  if (!m.ok()) return std::numeric_limits<double>::quiet_NaN();
  return SumMetric(*m, name, filter);
}

bool ProxyProcess::Running() {
  if (exit_status_) return false;
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  else exit_status_ = -1;
  return false;
}

absl::Status ProxyProcess::WriteConfigFile(const std::string& yaml) const {
  // Written aside and renamed, so a reload never reads half a file.
  const std::string temporary = config_path_ + ".new";
  {
    std::ofstream out(temporary);
    out << yaml;
    if (!out) return absl::InternalError("cannot write " + temporary);
  }
  if (rename(temporary.c_str(), config_path_.c_str()) != 0) return absl::ErrnoToStatus(errno, "rename");
  return absl::OkStatus();
}

absl::StatusOr<HttpResponse> ProxyProcess::PostReload(const std::string& yaml) const {
  if (absl::Status s = WriteConfigFile(yaml); !s.ok()) return s;
  return HttpRequest(admin(), "POST", "/reload", "", std::chrono::seconds(10));
}

void ProxyProcess::Signal(int signal_number) const {
  if (pid_ > 0 && !exit_status_) kill(pid_, signal_number);
}

absl::StatusOr<int> ProxyProcess::WaitForExit(Millis timeout) {
  if (!WaitFor([&] { return !Running(); }, timeout, 5ms))
    return absl::DeadlineExceededError(absl::StrCat("proxy still running after ", timeout.count(), " ms"));
  return exit_status_.value_or(-1);
}

absl::StatusOr<int> ProxyProcess::Stop(Millis timeout) {
  if (!Running()) return exit_status_.value_or(-1);
  kill(pid_, SIGTERM);
  if (!WaitFor([&] { return !Running(); }, timeout, 5ms)) {
    kill(pid_, SIGKILL);
    WaitFor([&] { return !Running(); }, 5s, 5ms);
    return absl::DeadlineExceededError(
        absl::StrCat("proxy did not exit within ", timeout.count(), " ms of SIGTERM; killed"));
  }
  return exit_status_.value_or(-1);
}

absl::Status WaitForProxyIdle(ProxyProcess& proxy, int baseline_fds, Millis timeout) {
  double active = -1, entries = -1;
  int fds = -1;
  std::string scrape_error;
  bool idle = WaitFor(
      [&] {
        auto m = proxy.Metrics();
        if (!m.ok()) {
          scrape_error = std::string(m.status().message());
          return false;
        }
        active = SumMetric(*m, "skproxy_connections_active");
        entries = SumMetric(*m, "skproxy_sockmap_entries");
        auto n = proxy.FdCount();
        fds = n.ok() ? *n : -1;
        return active == 0 && entries == 0 && fds >= 0 && fds <= baseline_fds;
      },
      timeout, 50ms);
  if (idle) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat(
      "proxy not idle after ", timeout.count(), " ms: connections_active=", active, " sockmap_entries=", entries,
      " fds=", fds, " (baseline ", baseline_fds, ")", scrape_error.empty() ? "" : " scrape error: " + scrape_error));
}

}  // namespace skproxy::itest
