#include "proxy/health_checker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <algorithm>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace skproxy {
namespace {

constexpr size_t kMaxStatusLine = 1024;  // enough for "HTTP/1.1 200 OK\r\n" and any reason phrase

}  // namespace

int ParseHttpStatus(std::string_view response) {
  // "HTTP/1." DIGIT SP 3DIGIT (SP / CR): RFC 9112's status-line, up to the end of the code.
  static constexpr std::string_view kPrefix = "HTTP/1.";
  const size_t prefix = std::min(response.size(), kPrefix.size());
  if (response.substr(0, prefix) != kPrefix.substr(0, prefix)) return 0;
  if (response.size() < 13) return -1;
  if (!absl::ascii_isdigit(response[7]) || response[8] != ' ') return 0;
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (!absl::ascii_isdigit(response[i])) return 0;
    status = status * 10 + (response[i] - '0');
  }
  if (status < 100 || (response[12] != ' ' && response[12] != '\r')) return 0;
  return status;
}

HealthChecker::HealthChecker(ClusterState& cluster) : cluster_(cluster), config_(cluster.config().health_check) {
  Follow(absl::Now());
}

void HealthChecker::Follow(absl::Time now) {
  std::shared_ptr<const HostSet> hosts = cluster_.hosts();
  if (hosts == followed_) return;
  std::vector<Probe> probes;
  for (const std::shared_ptr<EndpointState>& endpoint : hosts->endpoints) {
    auto it = std::find_if(probes_.begin(), probes_.end(), [&](const Probe& p) { return p.endpoint == endpoint; });
    if (it != probes_.end()) {
      probes.push_back(std::move(*it));
      continue;
    }
    Probe& probe = probes.emplace_back();
    probe.endpoint = endpoint;
    probe.next = now;
  }
  probes_ = std::move(probes);  // the probes of removed endpoints go, their sockets closed
  followed_ = std::move(hosts);
}

void HealthChecker::Prepare(absl::Time now, PollSet& set, absl::Time& wake) {
  Follow(now);
  for (size_t i = 0; i < probes_.size(); ++i) {
    Probe& probe = probes_[i];
    if (probe.phase == Phase::kWaiting && probe.next <= now) Begin(i, now);
    probe.polled = false;
    if (probe.phase == Phase::kWaiting) {
      wake = std::min(wake, probe.next);
      continue;
    }
    wake = std::min(wake, probe.deadline);
    const short events = probe.phase == Phase::kReading ? POLLIN : POLLOUT;
    probe.poll_index = set.Add(probe.fd.get(), events);
    probe.polled = true;
  }
}

void HealthChecker::Dispatch(absl::Time now, const PollSet& set) {
  for (size_t i = 0; i < probes_.size(); ++i) {
    Probe& probe = probes_[i];
    if (probe.phase == Phase::kWaiting) continue;
    const short revents = probe.polled ? set.revents(probe.poll_index) : 0;
    if (revents != 0) Advance(i, revents, now);
    if (probe.phase != Phase::kWaiting && now >= probe.deadline) Finish(i, false, now);
  }
}

void HealthChecker::Begin(size_t i, absl::Time now) {
  Probe& probe = probes_[i];
  const SocketAddress* address = &probe.endpoint->address();
  probe.deadline = now + config_.timeout;
  probe.response.clear();
  probe.fd.Reset(socket(address->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe.fd.valid()) {
    std::fprintf(stderr, "skproxy: health check %s: socket: %s\n", probe.endpoint->label().c_str(),
                 strerror(errno));
    probe.phase = Phase::kConnecting;  // fails at the deadline: a process out of descriptors is not healthy
    Finish(i, false, now);
    return;
  }
  const int one = 1;
  setsockopt(probe.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  probe.phase = Phase::kConnecting;
  if (connect(probe.fd.get(), address->sockaddr_ptr(), address->length) != 0 && errno != EINPROGRESS) {
    Finish(i, false, now);
    return;
  }
  if (config_.type == config::HealthCheck::Type::kHttp) {
    const config::Endpoint& endpoint = probe.endpoint->config();
    const std::string host = config_.host.empty() ? endpoint.ToString() : config_.host;
    probe.request = absl::StrCat("GET ", config_.path, " HTTP/1.1\r\nHost: ", host,
                                 "\r\nUser-Agent: skproxy-health-check\r\nConnection: close\r\n\r\n");
  }
}

void HealthChecker::Advance(size_t i, short revents, absl::Time now) {
  Probe& probe = probes_[i];
  if (probe.phase == Phase::kConnecting) {
    int error = 0;
    socklen_t length = sizeof(error);
    if (getsockopt(probe.fd.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0 ||
        (revents & (POLLERR | POLLHUP))) {
      Finish(i, false, now);
      return;
    }
    if (config_.type == config::HealthCheck::Type::kTcp) {
      Finish(i, true, now);
      return;
    }
    probe.phase = Phase::kSending;
  }
  if (probe.phase == Phase::kSending) {
    const ssize_t n = send(probe.fd.get(), probe.request.data(), probe.request.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      Finish(i, false, now);
      return;
    }
    if (n > 0) probe.request.erase(0, static_cast<size_t>(n));
    if (probe.request.empty()) probe.phase = Phase::kReading;
    return;
  }
  // kReading: only the status line matters.
  char buffer[512];
  const ssize_t n = recv(probe.fd.get(), buffer, sizeof(buffer), MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n > 0) probe.response.append(buffer, static_cast<size_t>(n));
  const int status = ParseHttpStatus(probe.response);
  if (status >= 0) {
    Finish(i, status == static_cast<int>(config_.expected_status), now);
  } else if (n <= 0 || probe.response.size() > kMaxStatusLine) {
    Finish(i, false, now);  // closed, or not HTTP, before a status line
  }
}

void HealthChecker::Finish(size_t i, bool passed, absl::Time now) {
  Probe& probe = probes_[i];
  probe.fd.Reset();
  probe.phase = Phase::kWaiting;
  probe.next = now + config_.interval;
  EndpointState& endpoint = *probe.endpoint;
  const bool was_healthy = endpoint.healthy();
  if (passed) {
    ++probe.passes;
    probe.failures = 0;
  } else {
    ++probe.failures;
    probe.passes = 0;
  }
  endpoint.CountCheck(passed);
  bool healthy = was_healthy;
  if (probe.first) {
    healthy = passed;
    probe.first = false;
  } else if (was_healthy && probe.failures >= config_.unhealthy_threshold) {
    healthy = false;
  } else if (!was_healthy && probe.passes >= config_.healthy_threshold) {
    healthy = true;
  }
  if (healthy != was_healthy) {
    endpoint.SetHealthy(healthy);
    std::fprintf(stderr, "skproxy: cluster %s: endpoint %s is %s (health check)\n", cluster_.name().c_str(),
                 endpoint.label().c_str(), healthy ? "healthy" : "unhealthy");
  }
}

}  // namespace skproxy
