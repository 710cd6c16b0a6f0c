#include "proxy/privileges.h"

#include <linux/capability.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace skproxy {
namespace {

constexpr uint64_t Bit(int cap) { return uint64_t{1} << cap; }

int ReadIntFile(const char* path, int fallback) {
  std::ifstream in(path);
  int value = fallback;
  if (!(in >> value)) return fallback;
  return value;
}

const char* CapName(int cap) {
  switch (cap) {
    case CAP_NET_ADMIN: return "CAP_NET_ADMIN";
    case CAP_NET_BIND_SERVICE: return "CAP_NET_BIND_SERVICE";
    default: return "CAP_?";
  }
}

}  // namespace

PrivilegeNeeds NeedsOf(const config::Config& config, bool kernel_path) {
  PrivilegeNeeds needs;
  needs.kernel_path = kernel_path;
  needs.upstream_mark = config.upstream_mark != 0;
  // Per network namespace; 1024 unless the host lowered it.
  const int unprivileged_start = ReadIntFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", 1024);
  auto low = [&](const SocketAddress& address) { return address.port() != 0 && address.port() < unprivileged_start; };
  needs.low_ports = low(config.admin.address);
  for (const config::Listener& listener : config.listeners) needs.low_ports = needs.low_ports || low(listener.address);
  return needs;
}

absl::StatusOr<std::string> DropPrivileges(const PrivilegeNeeds& needs, const config::RunAs& run_as) {
  std::vector<int> wanted;
  if (needs.kernel_path || needs.upstream_mark) wanted.push_back(CAP_NET_ADMIN);
  if (needs.low_ports) wanted.push_back(CAP_NET_BIND_SERVICE);

  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return absl::ErrnoToStatus(errno, "capget");
  const uint64_t permitted = data[0].permitted | uint64_t{data[1].permitted} << 32;
  const uint64_t effective = data[0].effective | uint64_t{data[1].effective} << 32;
  uint64_t keep = 0;
  std::vector<std::string> kept;
  for (int cap : wanted) {
    if (!(permitted & Bit(cap))) continue;  // not given: whatever needed it warns when it is tried
    keep |= Bit(cap);
    kept.push_back(CapName(cap));
  }

  // Ambient capabilities would pass to a program this process ran.
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    return absl::ErrnoToStatus(errno, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  // The bounding set limits what an exec could grant (root's exec, file capabilities). Reducing it takes
  // CAP_SETPCAP, which root has; a user started with only ambient capabilities does not, and its launcher
  // chose its bounding set; no_new_privs below closes the exec route for both.
  if (effective & Bit(CAP_SETPCAP)) {
    const int last = ReadIntFile("/proc/sys/kernel/cap_last_cap", CAP_LAST_CAP);
    for (int cap = 0; cap <= last; ++cap) {
      if (keep & Bit(cap)) continue;
      if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
        return absl::ErrnoToStatus(errno, absl::StrCat("prctl(PR_CAPBSET_DROP, ", cap, ")"));
    }
  }
  if (!run_as.empty()) {
    // A uid change clears the permitted set unless PR_SET_KEEPCAPS is on; the capset below then cuts it
    // to what is kept and raises it into the effective set again. The gid first: after the uid change the
    // process may no longer change it.
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return absl::ErrnoToStatus(errno, "prctl(PR_SET_KEEPCAPS)");
    const int groups = run_as.user.empty() ? setgroups(0, nullptr) : initgroups(run_as.user.c_str(), run_as.gid);
    if (groups != 0) return absl::ErrnoToStatus(errno, "setting the supplementary groups");
    if (setresgid(run_as.gid, run_as.gid, run_as.gid) != 0)
      return absl::ErrnoToStatus(errno, absl::StrCat("setresgid(", run_as.gid, ")"));
    if (!run_as.user.empty() && setresuid(run_as.uid, run_as.uid, run_as.uid) != 0)
      return absl::ErrnoToStatus(errno, absl::StrCat("setresuid(", run_as.uid, ")"));
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return absl::ErrnoToStatus(errno, "prctl(PR_SET_KEEPCAPS)");
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return absl::ErrnoToStatus(errno, "prctl(PR_SET_NO_NEW_PRIVS)");
  data[0].effective = data[0].permitted = static_cast<uint32_t>(keep);
  data[1].effective = data[1].permitted = static_cast<uint32_t>(keep >> 32);
  data[0].inheritable = data[1].inheritable = 0;
  if (syscall(SYS_capset, &header, data) != 0) return absl::ErrnoToStatus(errno, "capset");
  return kept.empty() ? std::string("none") : absl::StrJoin(kept, ", ");
}

}  // namespace skproxy
