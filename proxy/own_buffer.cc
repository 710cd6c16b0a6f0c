#include "proxy/own_buffer.h"

#include <sys/socket.h>

#include <cerrno>

namespace skproxy {

ssize_t OwnBuffer::Read(int fd) {
  bytes_.reset(new uint8_t[kSize]);  // not zeroed: recv overwrites what is sent
  const ssize_t n = recv(fd, bytes_.get(), kSize, MSG_DONTWAIT);
  if (n <= 0) {
    const int err = errno;
    bytes_.reset();
    errno = err;
  }
  return n;
}

}  // namespace skproxy
