#include "proxy/datapath.h"

#include <sys/socket.h>

namespace skproxy {

void Pipe::ArmResetOnClose() {
  reset_ = true;
  const linger reset{1, 0};
  for (int fd : {downstream_.get(), upstream_.get()})
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
}

void Pipe::CancelAll(unsigned cancel_tag) {
  for (int fd : {downstream_.get(), upstream_.get()}) {
    io_uring_sqe* sqe = Submit(cancel_tag);
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
  }
}

}  // namespace skproxy
