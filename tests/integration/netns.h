// A private network namespace for tests that change packet handling (nftables loss rules), so nothing
// outside the test sees a dropped segment.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proxy/unique_fd.h"

namespace skproxy::itest {

// Moves the calling thread into a new network namespace with `lo` up; the destructor moves it back.
// Sockets, threads and processes created by this thread while inside belong to the namespace, so create the
// servers, the proxy and the clients after Enter() and destroy them before this object.
class ScopedNetns {
 public:
  // Unavailable when the kernel or the privileges do not allow it (the caller skips).
  static absl::StatusOr<std::unique_ptr<ScopedNetns>> Enter();
  ~ScopedNetns();
  ScopedNetns(const ScopedNetns&) = delete;
  ScopedNetns& operator=(const ScopedNetns&) = delete;

 private:
  ScopedNetns() = default;
  UniqueFd original_;
};

// Writes `value` to /proc/sys/`path` (e.g. "net/ipv4/tcp_rmem") as the calling thread sees it: inside a
// ScopedNetns, a per-namespace setting changes for that namespace only.
absl::Status WriteSysctl(const std::string& path, const std::string& value);
// The three numbers of /proc/sys/`path` (e.g. "net/ipv4/tcp_mem": low, pressure, high; tcp_rmem and tcp_wmem:
// minimum, default, maximum) as the calling thread sees it.
absl::StatusOr<std::array<uint64_t, 3>> ReadSysctlTriple(const std::string& path);
// A counter of the calling thread's namespace from /proc/thread-self/net/netstat, e.g. ("TcpExt",
// "TCPMemoryPressures"); 0 when absent.
uint64_t NetstatCounter(const std::string& group, const std::string& name);
// Pages of memory all TCP sockets of the machine hold (every namespace: the kernel's limit, net.ipv4.tcp_mem,
// is one for the machine), from /proc/thread-self/net/sockstat.
uint64_t TcpMemoryPages();

// Adds table `inet skt` with an input-hook chain that drops `percent`% (random) of the TCP segments
// matching each entry of `matches` (e.g. "dport 10000", "sport 8080"). Unavailable if nft is missing or the
// kernel refuses the rules.
absl::Status InstallTcpLoss(const std::vector<std::string>& matches, int percent);
// Packets the rules of InstallTcpLoss dropped so far in this namespace.
uint64_t NftDroppedPackets();

}  // namespace skproxy::itest
