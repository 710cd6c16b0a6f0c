// Where a connection that nftables redirected to a transparent listener was headed: the destination its
// client asked for before `redirect`/`dnat` rewrote it, as conntrack remembers it.
#pragma once

#include "absl/status/statusor.h"
#include "config/address.h"

namespace skproxy {

// SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6) of the accepted socket `fd`. Fails with NotFound
// when the connection was not redirected (no conntrack entry, or its original destination is this very
// listener: connecting there would loop back into skproxy), else with the getsockopt error.
absl::StatusOr<SocketAddress> OriginalDestination(int fd);

}  // namespace skproxy
