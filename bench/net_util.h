// Small socket helpers shared by the benchmark tools (pingpong, connrate, idleconns).
// The tools link none of the proxy's data path, only its address parser, so the peer benchmark
// measures HAProxy and nginx with exactly the same client and server code as skproxy.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "config/address.h"
#include "proxy/unique_fd.h"

namespace skproxy::bench {

using ::skproxy::SocketAddress;
using ::skproxy::UniqueFd;

// Raises RLIMIT_NOFILE to at least `want` (the hard limit too when running as root), because
// 10,000 held connections need more descriptors than the usual 1024 soft limit.
absl::Status RaiseNofileLimit(uint64_t want);

// A listening socket with SO_REUSEADDR (and SO_REUSEPORT when asked, so several threads can
// each own a listener on the same port).
absl::StatusOr<UniqueFd> Listen(const SocketAddress& ep, int backlog, bool reuseport, bool nonblocking);

// Blocking connect with a deadline; the returned socket is blocking with TCP_NODELAY set and
// SO_RCVTIMEO/SO_SNDTIMEO = io_timeout so no later read or write can hang forever.
absl::StatusOr<UniqueFd> ConnectBlocking(const SocketAddress& ep, std::chrono::milliseconds connect_timeout,
                                         std::chrono::milliseconds io_timeout);

absl::Status SetNoDelay(int fd);
absl::Status SetNonBlocking(int fd);

// Loops over short writes/reads on a blocking socket (whose timeouts bound each call).
absl::Status WriteAll(int fd, const void* buf, size_t len);
absl::Status ReadExact(int fd, void* buf, size_t len);
// Reads until the peer's FIN; bytes after the expected response are an error.
absl::Status ReadUntilEof(int fd);

int64_t NowNs();

// Command-line flags of the form "--name value" after a positional prefix.
class Flags {
 public:
  Flags(int argc, char** argv, int first) : argc_(argc), argv_(argv), first_(first) {}
  // Returns the value after --name, or `fallback` if absent; exits with usage text on a bad number.
  int64_t Int(absl::string_view name, int64_t fallback) const;
  double Double(absl::string_view name, double fallback) const;
  bool Has(absl::string_view name) const;
  // Rejects flags not in `known` (so a typo does not silently run a different benchmark).
  absl::Status OnlyKnown(std::initializer_list<absl::string_view> known, std::initializer_list<absl::string_view> bool_flags = {}) const;

 private:
  const char* Find(absl::string_view name) const;
  int argc_;
  char** argv_;
  int first_;
};

// The command line "... ADDR [--flag value]...", ADDR at argv[addr_index], the flags after it.
struct ToolArgs {
  SocketAddress ep;
  Flags flags;
};
// Parses ADDR and rejects flags not in `known` / `bool_flags`; on an error prints why on stderr and
// returns nullopt (the caller then prints its usage).
std::optional<ToolArgs> ParseToolArgs(int argc, char** argv, int addr_index,
                                      std::initializer_list<absl::string_view> known,
                                      std::initializer_list<absl::string_view> bool_flags = {});

}  // namespace skproxy::bench
