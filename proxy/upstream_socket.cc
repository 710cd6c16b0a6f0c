#include "proxy/upstream_socket.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "proxy/socket_options.h"
#include "proxy/unique_fd.h"

namespace skproxy {
namespace {

constexpr int kOne = 1;  // read by the kernel when the SQE runs: static storage

}  // namespace

UpstreamOptions DecideUpstreamOptions(const Ring& ring, int receive_buffer) {
  UpstreamOptions options;
  options.receive_buffer = receive_buffer;
  options.by_ring = ring.socket_commands();
  if (options.by_ring && receive_buffer > 0) {
    const UniqueFd probe(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    options.by_ring = probe.valid() && setsockopt(probe.get(), SOL_SOCKET, SO_RCVBUFFORCE, &receive_buffer,
                                                  sizeof(receive_buffer)) == 0;
  }
  return options;
}

void SetUpstreamOptions(Ring& ring, const UpstreamOptions& options, int fd, bool kernel_path) {
  const bool receive_buffer = kernel_path && options.receive_buffer > 0;
  if (options.by_ring) {
    ring.SetSocketOption(fd, IPPROTO_TCP, TCP_NODELAY, &kOne);
    if (receive_buffer) ring.SetSocketOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, &options.receive_buffer);
    return;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &kOne, sizeof(kOne));
  if (receive_buffer) SetReceiveBufferOrWarnOnce(fd, options.receive_buffer, "upstream sockets");
}

}  // namespace skproxy
