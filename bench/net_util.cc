#include "bench/net_util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace skproxy::bench {

namespace {

absl::Status Errno(absl::string_view what) {
  return absl::ErrnoToStatus(errno, what);
}

timeval ToTimeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = ms.count() / 1000;
  tv.tv_usec = (ms.count() % 1000) * 1000;
  return tv;
}

}  // namespace

absl::Status RaiseNofileLimit(uint64_t want) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return Errno("getrlimit(RLIMIT_NOFILE)");
  if (lim.rlim_cur >= want) return absl::OkStatus();
  rlimit raised = lim;
  raised.rlim_cur = want;
  if (raised.rlim_max < want) raised.rlim_max = want;
  if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return absl::OkStatus();
  // Not root: take what the hard limit allows and say it is short.
  raised.rlim_cur = lim.rlim_max;
  raised.rlim_max = lim.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &raised) != 0) return Errno("setrlimit(RLIMIT_NOFILE)");
  return absl::ResourceExhaustedError(
      absl::StrCat("RLIMIT_NOFILE hard limit is ", lim.rlim_max, ", need ", want, " (run as root or raise ulimit -Hn)"));
}

absl::Status SetNoDelay(int fd) {
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) return Errno("TCP_NODELAY");
  return absl::OkStatus();
}

absl::Status SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return Errno("O_NONBLOCK");
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> Listen(const SocketAddress& ep, int backlog, bool reuseport, bool nonblocking) {
  UniqueFd fd(socket(ep.family(), SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
  if (!fd.valid()) return Errno("socket");
  int one = 1;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) return Errno("SO_REUSEADDR");
  if (reuseport && setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return Errno("SO_REUSEPORT");
  }
  if (bind(fd.get(), ep.sockaddr_ptr(), ep.length) != 0) return Errno("bind");
  if (listen(fd.get(), backlog) != 0) return Errno("listen");
  return fd;
}

absl::StatusOr<UniqueFd> ConnectBlocking(const SocketAddress& ep, std::chrono::milliseconds connect_timeout,
                                         std::chrono::milliseconds io_timeout) {
  UniqueFd fd(socket(ep.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Errno("socket");
  if (connect(fd.get(), ep.sockaddr_ptr(), ep.length) != 0) {
    if (errno != EINPROGRESS) return Errno("connect");
    pollfd pfd{fd.get(), POLLOUT, 0};
    int n = poll(&pfd, 1, static_cast<int>(connect_timeout.count()));
    if (n < 0) return Errno("poll(connect)");
    if (n == 0) return absl::DeadlineExceededError("connect timed out");
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) return Errno("SO_ERROR");
    if (err != 0) return absl::ErrnoToStatus(err, "connect");
  }
  int flags = fcntl(fd.get(), F_GETFL);
  if (flags < 0 || fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) return Errno("fcntl(blocking)");
  timeval tv = ToTimeval(io_timeout);
  if (setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) return Errno("SO_RCVTIMEO");
  if (setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) return Errno("SO_SNDTIMEO");
  if (auto s = SetNoDelay(fd.get()); !s.ok()) return s;
  return fd;
}

absl::Status WriteAll(int fd, const void* buf, size_t len) {
  const char* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("send");
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status ReadExact(int fd, void* buf, size_t len) {
  char* p = static_cast<char*>(buf);
  while (len > 0) {
    ssize_t n = recv(fd, p, len, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("recv");
    }
    if (n == 0) return absl::UnavailableError("peer closed before the full response");
    p += n;
    len -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status ReadUntilEof(int fd) {
  char byte;
  while (true) {
    ssize_t n = recv(fd, &byte, 1, 0);
    if (n == 0) return absl::OkStatus();
    if (n > 0) return absl::DataLossError("bytes after the response");
    if (errno == EINTR) continue;
    return Errno("recv(EOF)");
  }
}

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

const char* Flags::Find(absl::string_view name) const {
  for (int i = first_; i < argc_; ++i) {
    if (name == argv_[i]) return i + 1 < argc_ ? argv_[i + 1] : "";
  }
  return nullptr;
}

bool Flags::Has(absl::string_view name) const {
  for (int i = first_; i < argc_; ++i) {
    if (name == argv_[i]) return true;
  }
  return false;
}

int64_t Flags::Int(absl::string_view name, int64_t fallback) const {
  const char* v = Find(name);
  if (v == nullptr) return fallback;
  int64_t out = 0;
  if (!absl::SimpleAtoi(v, &out)) {
    std::fprintf(stderr, "%.*s wants an integer, got '%s'\n", static_cast<int>(name.size()), name.data(), v);
    std::exit(2);
  }
  return out;
}

double Flags::Double(absl::string_view name, double fallback) const {
  const char* v = Find(name);
  if (v == nullptr) return fallback;
  double out = 0;
  if (!absl::SimpleAtod(v, &out)) {
    std::fprintf(stderr, "%.*s wants a number, got '%s'\n", static_cast<int>(name.size()), name.data(), v);
    std::exit(2);
  }
  return out;
}

absl::Status Flags::OnlyKnown(std::initializer_list<absl::string_view> known,
                              std::initializer_list<absl::string_view> bool_flags) const {
  for (int i = first_; i < argc_; ++i) {
    absl::string_view arg = argv_[i];
    bool is_bool = false;
    for (auto b : bool_flags) is_bool |= (arg == b);
    if (is_bool) continue;
    bool is_known = false;
    for (auto k : known) is_known |= (arg == k);
    if (!is_known) return absl::InvalidArgumentError(absl::StrCat("unknown argument '", arg, "'"));
    if (i + 1 >= argc_) return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value"));
    ++i;
  }
  return absl::OkStatus();
}

std::optional<ToolArgs> ParseToolArgs(int argc, char** argv, int addr_index,
                                      std::initializer_list<absl::string_view> known,
                                      std::initializer_list<absl::string_view> bool_flags) {
  if (addr_index >= argc) return std::nullopt;
  absl::StatusOr<SocketAddress> ep = ParseSocketAddress(argv[addr_index]);
  if (!ep.ok()) {
    std::fprintf(stderr, "%s\n", ep.status().ToString().c_str());
    return std::nullopt;
  }
  ToolArgs args{*ep, Flags(argc, argv, addr_index + 1)};
  if (absl::Status s = args.flags.OnlyKnown(known, bool_flags); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return std::nullopt;
  }
  return args;
}

}  // namespace skproxy::bench
