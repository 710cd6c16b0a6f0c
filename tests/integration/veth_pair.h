// Two network namespaces joined by a veth pair, for tests that need a real hop between a client and a
// server (the sidecar redirect rules act on traffic that leaves the host, not on loopback).
//
//   client namespace (the calling thread)   skc0 192.0.2.1/24  2001:db8::1/64
//   server namespace (held by a descriptor) sks0 192.0.2.2/24  2001:db8::2/64
//
// The addresses are from the documentation ranges (RFC 5737, RFC 3849) and exist only inside these
// namespaces. Both namespaces are anonymous (unshare, never bind-mounted under /run/netns): the kernel
// removes them, and the veth pair with them, when the last descriptor or thread inside goes, so they
// are gone after the test whether it passed, failed or crashed.
#pragma once

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/address.h"
#include "proxy/unique_fd.h"
#include "tests/integration/netns.h"

namespace skproxy::itest {

class VethPair {
 public:
  // Moves the calling thread into the new client namespace; the destructor moves it back. Unavailable
  // when namespaces, veth or `ip` (package iproute2) are missing (the caller skips).
  static absl::StatusOr<std::unique_ptr<VethPair>> Create();
  ~VethPair();
  VethPair(const VethPair&) = delete;
  VethPair& operator=(const VethPair&) = delete;

  static SocketAddress ClientIp(int family, uint16_t port = 0);
  static SocketAddress ServerIp(int family, uint16_t port = 0);

  // Runs `fn` with the calling thread in the server namespace: sockets it creates (a TcpServer's
  // listener) belong there for good, while the threads serving them may run anywhere.
  absl::Status InServer(const std::function<void()>& fn);

 private:
  VethPair() = default;
  std::unique_ptr<ScopedNetns> client_;
  UniqueFd client_ns_, server_ns_;
};

}  // namespace skproxy::itest
