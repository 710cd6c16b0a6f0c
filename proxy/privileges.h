// Least privilege. skproxy needs its capabilities to start (load the verdict program, create its maps, bind
// its listeners); once that is done it keeps only those it goes on using, and can never regain the others:
// the ambient set is cleared, the bounding set reduced (when the process may: CAP_SETPCAP), no_new_privs set,
// and the permitted and effective sets cut to what is kept. Capabilities are per thread and a thread inherits
// its creator's, so this runs in the main thread before any other thread exists.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.h"

namespace skproxy {

// What the running process goes on doing that needs a capability, decided from the config at start.
struct PrivilegeNeeds {
  // The kernel path: SO_RCVBUFFORCE/SO_SNDBUFFORCE on every upstream socket and on listeners a reload
  // opens (CAP_NET_ADMIN). Inserting sockets into the sockhash takes no capability once the map exists.
  bool kernel_path = false;
  // upstream_mark: SO_MARK on every upstream socket (CAP_NET_ADMIN).
  bool upstream_mark = false;
  // A listener (or the admin listener) below net.ipv4.ip_unprivileged_port_start: a reload may open
  // another one (CAP_NET_BIND_SERVICE). Without one at start, a reload that adds one is refused (EACCES).
  bool low_ports = false;
};

PrivilegeNeeds NeedsOf(const config::Config& config, bool kernel_path);

// Keeps, of the capabilities the process holds, only those `needs` calls for; drops every other one for
// good. With `run_as` set, also becomes that user and group (supplementary groups: the user's, or none for
// a group alone), keeping the same capabilities across the switch. Returns what was kept, e.g.
// "CAP_NET_ADMIN" or "none".
absl::StatusOr<std::string> DropPrivileges(const PrivilegeNeeds& needs, const config::RunAs& run_as);

}  // namespace skproxy
