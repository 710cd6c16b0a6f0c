#include "proxy/datapath.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "absl/strings/str_cat.h"

namespace skproxy {

std::string Pipe::Operations() const {
  return absl::StrCat("inflight=", inflight(), finished_ ? " finished" : "", reset_ ? " reset" : "");
}

void Pipe::ArmResetOnClose() {
  reset_ = true;
  const linger reset{1, 0};
  for (int fd : {downstream_.get(), upstream_.get()})
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
}

bool Pipe::SourceWasReset(int d, bool our_side_shut) const {
  const int fd = source(d);
  if (our_side_shut) {
    int err = 0;
    socklen_t len = sizeof(err);
    return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0;
  }
  // One call, not two: while our side is open the state alone tells. Every error that ends a TCP
  // connection (a reset, a retransmission timeout) closes the socket, and a FIN leaves CLOSE_WAIT.
  tcp_info info{};
  socklen_t len = sizeof(info);
  return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 && info.tcpi_state == TCP_CLOSE;
}

void Pipe::CancelAll(unsigned cancel_tag) {
  for (int fd : {downstream_.get(), upstream_.get()}) {
    io_uring_sqe* sqe = Submit(cancel_tag);
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
  }
}

}  // namespace skproxy
