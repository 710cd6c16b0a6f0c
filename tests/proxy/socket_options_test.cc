// SetReceiveBuffer on real sockets, including the case it exists to report: without CAP_NET_ADMIN the
// kernel silently caps SO_RCVBUF at net.core.rmem_max.
#include "proxy/socket_options.h"

#include <linux/capability.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <fstream>
#include <thread>

#include "gtest/gtest.h"
#include "proxy/unique_fd.h"

namespace skproxy {
namespace {

int Granted(int fd) {
  int granted = 0;
  socklen_t len = sizeof(granted);
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &len);
  return granted;
}

TEST(SetReceiveBufferTest, GrantsTheSizeOnATcpSocket) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_TRUE(fd.valid());
  EXPECT_TRUE(SetReceiveBuffer(fd.get(), 1 << 20).ok());
  EXPECT_GE(Granted(fd.get()), 1 << 20);
}

TEST(SetReceiveBufferTest, NotASocketIsAnError) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  UniqueFd read_end(p[0]), write_end(p[1]);
  absl::Status s = SetReceiveBuffer(read_end.get(), 1 << 20);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("SO_RCVBUF"), std::string::npos) << s;
}

// Capabilities are per thread: this one drops CAP_NET_ADMIN from its effective set, so SO_RCVBUFFORCE fails
// with EPERM as it would for an unprivileged proxy, and plain SO_RCVBUF is capped at rmem_max.
TEST(SetReceiveBufferTest, ReportsTheCapWithoutNetAdmin) {
  long rmem_max = 0;
  std::ifstream("/proc/sys/net/core/rmem_max") >> rmem_max;
  ASSERT_GT(rmem_max, 0);
  if (rmem_max >= INT_MAX / 4) GTEST_SKIP() << "net.core.rmem_max is " << rmem_max << ": nothing caps";
  const int wanted = static_cast<int>(2 * rmem_max);
  absl::Status status;
  std::thread unprivileged([&] {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (syscall(SYS_capget, &header, data) != 0) return;
    data[CAP_NET_ADMIN / 32].effective &= ~(1u << (CAP_NET_ADMIN % 32));
    if (syscall(SYS_capset, &header, data) != 0) return;
    UniqueFd fd(socket(AF_INET, SOCK_STREAM, 0));
    status = SetReceiveBuffer(fd.get(), wanted);
  });
  unprivileged.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(std::string(status.message()).find("rmem_max"), std::string::npos) << status;
}

}  // namespace
}  // namespace skproxy
