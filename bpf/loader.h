// Owner of the kernel data path's BPF objects: open -> size -> load -> attach the verdict to the sockhash,
// and detach -> destroy on destruction. Every map operation the proxy does goes through here.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "bpf/skproxy.h"

struct skp_verdict_bpf;  // the bpftool skeleton

namespace skproxy::bpf {

// Summed over CPUs, indexed [direction][enum skp_stat].
using StatsSnapshot = std::array<std::array<uint64_t, SKP_STAT_COUNT>, SKP_DIRECTIONS>;

// The two legs of one connection, as the maps know them.
struct ConnectionKeys {
  skp_key downstream;  // the accepted client socket
  skp_key upstream;    // the socket connected to the endpoint
  // skp_users slots, by direction; assigned by Insert, returned by RemoveState.
  uint32_t user_slots[SKP_DIRECTIONS] = {kNoSlot, kNoSlot};
  static constexpr uint32_t kNoSlot = ~0u;
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
  absl::Status Insert(ConnectionKeys& keys, int downstream_fd, int upstream_fd, uint64_t gate_limit,
                      int* failed_errno = nullptr);
  // Takes both legs off the kernel path. Only call once nothing is pending in the psock backlogs.
  void Remove(ConnectionKeys& keys);
  // Drops the connection's state only, for legs about to be closed: closing a socket takes it out of the
  // sockhash by itself, which saves two syscalls per connection.
  void RemoveState(ConnectionKeys& keys);

  // The verdict's state for bytes arriving on `source`.
  absl::StatusOr<skp_dir> ReadDirection(const skp_key& source) const;
  // Tells the verdict how many passed bytes user space has written to the peer: a store, no syscall.
  void PublishUserCopied(uint32_t slot, uint64_t copied) {
    __atomic_store_n(&users_[slot].copied, copied, __ATOMIC_RELEASE);
  }

  StatsSnapshot ReadStats() const;
  // Sockets in the sockhash right now (walks the map: for metrics and tests, not the data path).
  uint64_t CountSockets() const;

 private:
  explicit SockmapProgram(skp_verdict_bpf* skel) : skel_(skel) {}
  int socks_fd() const;
  int dirs_fd() const;
  absl::Status MapUsers(uint32_t slots);
  bool TakeSlots(ConnectionKeys& keys);
  void ReturnSlots(ConnectionKeys& keys);

  skp_verdict_bpf* skel_;
  bool attached_ = false;
  skp_user* users_ = nullptr;  // skp_users, mapped
  size_t users_bytes_ = 0;
  absl::Mutex slots_mu_;
  std::vector<uint32_t> free_slots_ ABSL_GUARDED_BY(slots_mu_);
};

}  // namespace skproxy::bpf
