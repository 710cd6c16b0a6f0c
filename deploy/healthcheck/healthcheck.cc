// skproxy-healthcheck: GET a path of skproxy's admin listener and exit 0 on "200", 1 otherwise. The
// container image's HEALTHCHECK runs it: the runtime image has no shell, curl or wget.
//
//   skproxy-healthcheck [ADDRESS [PATH]]     default 127.0.0.1:9901 /healthz
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "config/address.h"
#include "proxy/unique_fd.h"

namespace {

constexpr int kTimeoutMs = 2000;

// Waits for `events` on fd until the deadline; false when it passed.
bool WaitFor(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  pollfd p{fd, events, 0};
  return poll(&p, 1, static_cast<int>(left.count())) == 1;
}

int Fail(const std::string& why) {
  std::fprintf(stderr, "skproxy-healthcheck: %s\n", why.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string address_text = argc > 1 ? argv[1] : "127.0.0.1:9901";
  const std::string path = argc > 2 ? argv[2] : "/healthz";
  if (argc > 3 || path.empty() || path[0] != '/' || path.find_first_of(" \r\n") != std::string::npos) {
    return Fail("usage: skproxy-healthcheck [ADDRESS [PATH]]  (default 127.0.0.1:9901 /healthz)");
  }
  absl::StatusOr<skproxy::SocketAddress> address = skproxy::ParseSocketAddress(address_text);
  if (!address.ok()) return Fail(address_text + ": " + std::string(address.status().message()));

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
  skproxy::UniqueFd fd(socket(address->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Fail(std::string("socket: ") + strerror(errno));
  if (connect(fd.get(), address->sockaddr_ptr(), address->length) != 0 && errno != EINPROGRESS)
    return Fail("connect " + address_text + ": " + strerror(errno));
  if (!WaitFor(fd.get(), POLLOUT, deadline)) return Fail("connect " + address_text + ": timed out");
  int error = 0;
  socklen_t length = sizeof(error);
  getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
  if (error != 0) return Fail("connect " + address_text + ": " + strerror(error));

  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: " + address_text + "\r\nConnection: close\r\n\r\n";
  if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
    return Fail("send: " + std::string(strerror(errno)));
  // Only the status line matters: "HTTP/1.x 200 ...".
  std::string response;
  char buffer[512];
  while (response.find("\r\n") == std::string::npos && response.size() < 4096) {
    if (!WaitFor(fd.get(), POLLIN, deadline)) return Fail("GET " + path + ": no answer in time");
    const ssize_t n = recv(fd.get(), buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EAGAIN) continue;
    if (n <= 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  const std::string status_line = response.substr(0, response.find("\r\n"));
  if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12 || status_line.compare(8, 4, " 200") != 0)
    return Fail("GET " + path + ": " + (status_line.empty() ? "no status line" : status_line));
  return 0;
}
