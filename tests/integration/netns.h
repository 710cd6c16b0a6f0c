// A private network namespace for tests that change packet handling (nftables loss rules), so nothing
// outside the test sees a dropped segment.
#pragma once

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

// Adds table `inet skt` with an input-hook chain that drops `percent`% (random) of the TCP segments
// matching each entry of `matches` (e.g. "dport 10000", "sport 8080"). Unavailable if nft is missing or the
// kernel refuses the rules.
absl::Status InstallTcpLoss(const std::vector<std::string>& matches, int percent);
// Packets the rules of InstallTcpLoss dropped so far in this namespace.
uint64_t NftDroppedPackets();

}  // namespace skproxy::itest
