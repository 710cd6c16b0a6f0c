#include "tests/integration/veth_pair.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/integration/command.h"

namespace skproxy::itest {
namespace {

UniqueFd OpenOwnNetns() { return UniqueFd(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)); }

absl::Status Run(const std::vector<std::string>& argv) {
  CommandResult r = RunCommand(argv, 10s);
  if (r.exit_code != 0)
    return absl::UnavailableError(absl::StrCat("'", absl::StrJoin(argv, " "), "' failed: ", r.Describe()));
  return absl::OkStatus();
}

// Addresses on `device` in the calling thread's namespace, and the link up. nodad: the IPv6 address is
// usable at once rather than after duplicate address detection, which nothing else on this link needs.
absl::Status Configure(const std::string& ip, const std::string& device, const SocketAddress& v4,
                       const SocketAddress& v6) {
  auto host = [](const SocketAddress& a) {
    std::string s = a.ToString();
    s = s.substr(0, s.rfind(':'));
    if (!s.empty() && s.front() == '[') s = s.substr(1, s.size() - 2);
    return s;
  };
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {ip, "addr", "add", host(v4) + "/24", "dev", device},
           {ip, "-6", "addr", "add", host(v6) + "/64", "dev", device, "nodad"},
           {ip, "link", "set", device, "up"}}) {
    if (absl::Status s = Run(argv); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

SocketAddress VethPair::ClientIp(int family, uint16_t port) {
  return *ParseSocketAddress(absl::StrCat(family == AF_INET6 ? "[2001:db8::1]" : "192.0.2.1", ":", port), true);
}

SocketAddress VethPair::ServerIp(int family, uint16_t port) {
  return *ParseSocketAddress(absl::StrCat(family == AF_INET6 ? "[2001:db8::2]" : "192.0.2.2", ":", port), true);
}

absl::StatusOr<std::unique_ptr<VethPair>> VethPair::Create() {
  const std::string ip = FindExecutable("ip");
  if (ip.empty()) return absl::UnavailableError("ip (package iproute2) is not installed");
  std::unique_ptr<VethPair> pair(new VethPair());

  // The server namespace is made by a thread of its own so that this thread's way back stays simple; the
  // descriptor keeps the namespace alive after that thread has gone.
  absl::Status server_status;
  std::thread([&] {
    absl::StatusOr<std::unique_ptr<ScopedNetns>> ns = ScopedNetns::Enter();
    if (!ns.ok()) {
      server_status = ns.status();
      return;
    }
    pair->server_ns_ = OpenOwnNetns();
  }).join();
  if (!server_status.ok()) return server_status;
  if (!pair->server_ns_.valid()) return absl::UnavailableError(absl::StrCat("open server netns: ", strerror(errno)));

  absl::StatusOr<std::unique_ptr<ScopedNetns>> client = ScopedNetns::Enter();
  if (!client.ok()) return client.status();
  pair->client_ = *std::move(client);
  pair->client_ns_ = OpenOwnNetns();
  if (!pair->client_ns_.valid()) return absl::UnavailableError(absl::StrCat("open client netns: ", strerror(errno)));

  // `ip` opens the namespace by path: this process's descriptor, through /proc.
  const std::string server_path = absl::StrCat("/proc/", getpid(), "/fd/", pair->server_ns_.get());
  if (absl::Status s = Run({ip, "link", "add", "name", "skc0", "type", "veth", "peer", "name", "sks0", "netns",
                            server_path});
      !s.ok())
    return s;
  if (absl::Status s = Configure(ip, "skc0", ClientIp(AF_INET), ClientIp(AF_INET6)); !s.ok()) return s;
  absl::Status server_configured;
  if (absl::Status s = pair->InServer([&] {
        server_configured = Configure(ip, "sks0", ServerIp(AF_INET), ServerIp(AF_INET6));
      });
      !s.ok())
    return s;
  if (!server_configured.ok()) return server_configured;
  return pair;
}

VethPair::~VethPair() = default;  // client_ moves the thread back; closing server_ns_ lets the kernel remove it

absl::Status VethPair::InServer(const std::function<void()>& fn) {
  if (setns(server_ns_.get(), CLONE_NEWNET) != 0)
    return absl::InternalError(absl::StrCat("setns into the server namespace: ", strerror(errno)));
  fn();
  if (setns(client_ns_.get(), CLONE_NEWNET) != 0) {
    // Every later step of the test would run in the wrong namespace.
    fprintf(stderr, "FATAL: setns back into the client namespace failed: %s\n", strerror(errno));
    abort();
  }
  return absl::OkStatus();
}

}  // namespace skproxy::itest
