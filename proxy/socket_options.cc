#include "proxy/socket_options.h"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"

namespace skproxy {

namespace {

struct BufferOption {
  int force;
  int plain;
  const char* force_name;
  const char* plain_name;
  const char* sysctl;
};
constexpr BufferOption kReceive{SO_RCVBUFFORCE, SO_RCVBUF, "SO_RCVBUFFORCE", "SO_RCVBUF", "net.core.rmem_max"};
constexpr BufferOption kSend{SO_SNDBUFFORCE, SO_SNDBUF, "SO_SNDBUFFORCE", "SO_SNDBUF", "net.core.wmem_max"};

absl::Status SetBuffer(int fd, int bytes, const BufferOption& option) {
  if (setsockopt(fd, SOL_SOCKET, option.force, &bytes, sizeof(bytes)) == 0) return absl::OkStatus();
  const int force_error = errno;
  if (setsockopt(fd, SOL_SOCKET, option.plain, &bytes, sizeof(bytes)) != 0) {
    const int error = errno;
    return absl::ErrnoToStatus(error, absl::StrCat(option.force_name, " (", strerror(force_error), ") and ",
                                                   option.plain_name, " ", bytes));
  }
  // The kernel stores twice the value (the other half is its bookkeeping) and reports that.
  int granted = 0;
  socklen_t len = sizeof(granted);
  if (getsockopt(fd, SOL_SOCKET, option.plain, &granted, &len) != 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("getsockopt ", option.plain_name));
  if (granted / 2 < bytes) {
    return absl::FailedPreconditionError(absl::StrCat(option.force_name, " failed (", strerror(force_error), ") and ",
                                                      option.plain_name, " ", bytes, " was capped to ", granted / 2,
                                                      " by ", option.sysctl));
  }
  return absl::OkStatus();
}

void WarnOnce(std::atomic<bool>& warned, const absl::Status& status, const char* buffer, std::string_view what) {
  if (status.ok() || warned.exchange(true)) return;
  std::fprintf(stderr, "skproxy: %s buffer of %s: %s (reported once; other sockets may be affected too)\n", buffer,
               std::string(what).c_str(), status.ToString().c_str());
}

}  // namespace

absl::Status SetReceiveBuffer(int fd, int bytes) { return SetBuffer(fd, bytes, kReceive); }
absl::Status SetSendBuffer(int fd, int bytes) { return SetBuffer(fd, bytes, kSend); }

void SetReceiveBufferOrWarnOnce(int fd, int bytes, std::string_view what) {
  static std::atomic<bool> warned{false};
  WarnOnce(warned, SetReceiveBuffer(fd, bytes), "receive", what);
}

void SetSendBufferOrWarnOnce(int fd, int bytes, std::string_view what) {
  static std::atomic<bool> warned{false};
  WarnOnce(warned, SetSendBuffer(fd, bytes), "send", what);
}

absl::Status SetMark(int fd, uint32_t mark) {
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) == 0) return absl::OkStatus();
  const int error = errno;
  return absl::ErrnoToStatus(error, absl::StrCat("SO_MARK ", mark, error == EPERM ? " (needs CAP_NET_ADMIN)" : ""));
}

bool SetMarkOrWarnOnce(int fd, uint32_t mark) {
  static std::atomic<bool> warned{false};
  absl::Status status = SetMark(fd, mark);
  if (!status.ok() && !warned.exchange(true)) {
    std::fprintf(stderr, "skproxy: upstream_mark: %s; upstream connections are refused (reported once)\n",
                 status.ToString().c_str());
  }
  return status.ok();
}

}  // namespace skproxy
