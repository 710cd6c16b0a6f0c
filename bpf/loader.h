// Owner of the kernel data path's BPF objects: open -> size -> load -> attach the verdict to the sockhash,
// and detach -> destroy on destruction. Every map operation the proxy does goes through here.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bpf/skproxy.h"

struct skp_verdict_bpf;  // the bpftool skeleton

namespace skproxy::bpf {

// Summed over CPUs, indexed [direction][enum skp_stat].
using StatsSnapshot = std::array<std::array<uint64_t, SKP_STAT_COUNT>, SKP_DIRECTIONS>;

// The two legs of one connection, as the maps know them.
struct ConnectionKeys {
  skp_key downstream;  // the accepted client socket
  skp_key upstream;    // the socket connected to the endpoint
};

class SockmapProgram {
 public:
  // Loads and attaches. Fails (with the reason: privilege, missing kernel feature, verifier log) when the
  // kernel path cannot be used on this machine.
  static absl::StatusOr<std::unique_ptr<SockmapProgram>> Load(uint32_t max_sockets);
  ~SockmapProgram();
  SockmapProgram(const SockmapProgram&) = delete;
  SockmapProgram& operator=(const SockmapProgram&) = delete;

  // Puts both legs on the kernel path: per-direction state first, then the sockets, so the verdict never
  // sees a socket without its state. On failure nothing stays in the maps; the error carries the errno
  // (EBUSY, EOPNOTSUPP, ENOMEM, ...), also in *failed_errno, so the caller can fall back for this one
  // connection and say why.
  absl::Status Insert(const ConnectionKeys& keys, int downstream_fd, int upstream_fd, uint64_t gate_limit,
                      int* failed_errno = nullptr);
  // Takes both legs off the kernel path. Only call once nothing is pending in the psock backlogs.
  void Remove(const ConnectionKeys& keys);

  // The verdict's state for bytes arriving on `source`.
  absl::StatusOr<skp_dir> ReadDirection(const skp_key& source) const;
  // Tells the verdict how many passed bytes user space has written to the peer.
  absl::Status PublishUserCopied(const skp_key& source, uint64_t copied);

  StatsSnapshot ReadStats() const;
  // Sockets in the sockhash right now (walks the map: for metrics and tests, not the data path).
  uint64_t CountSockets() const;

 private:
  explicit SockmapProgram(skp_verdict_bpf* skel) : skel_(skel) {}
  int socks_fd() const;
  int dirs_fd() const;
  int users_fd() const;

  skp_verdict_bpf* skel_;
  bool attached_ = false;
};

}  // namespace skproxy::bpf
