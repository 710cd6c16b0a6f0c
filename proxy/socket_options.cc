#include "proxy/socket_options.h"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"

namespace skproxy {

absl::Status SetReceiveBuffer(int fd, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) == 0) return absl::OkStatus();
  const int force_error = errno;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) != 0) {
    const int error = errno;
    return absl::ErrnoToStatus(error, absl::StrCat("SO_RCVBUFFORCE (", strerror(force_error), ") and SO_RCVBUF ",
                                                   bytes));
  }
  // The kernel stores twice the value (the other half is its bookkeeping) and reports that.
  int granted = 0;
  socklen_t len = sizeof(granted);
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &len) != 0)
    return absl::ErrnoToStatus(errno, "getsockopt SO_RCVBUF");
  if (granted / 2 < bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("SO_RCVBUFFORCE failed (", strerror(force_error), ") and SO_RCVBUF ", bytes, " was capped to ",
                     granted / 2, " by net.core.rmem_max"));
  }
  return absl::OkStatus();
}

void SetReceiveBufferOrWarnOnce(int fd, int bytes, std::string_view what) {
  static std::atomic<bool> warned{false};
  absl::Status status = SetReceiveBuffer(fd, bytes);
  if (status.ok() || warned.exchange(true)) return;
  std::fprintf(stderr, "skproxy: receive buffer of %s: %s (reported once; other sockets may be affected too)\n",
               std::string(what).c_str(), status.ToString().c_str());
}

}  // namespace skproxy
