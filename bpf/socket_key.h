// The 4-tuple key of a connected socket, built exactly as the verdict program builds it from an skb.
#pragma once

#include "absl/status/statusor.h"
#include "bpf/skproxy.h"

namespace skproxy::bpf {

// From getsockname/getpeername of a connected TCP socket. Mirrors key_from_skb() in verdict.bpf.c.
absl::StatusOr<skp_key> SocketKey(int fd);

bool operator==(const skp_key& a, const skp_key& b);

}  // namespace skproxy::bpf
