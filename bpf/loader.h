// Owner of the kernel data path's BPF objects: open -> size -> load -> attach the verdict to the sockhash,
// and detach -> destroy on destruction. Every map operation the proxy does goes through here.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "bpf/skproxy.h"
#include "proxy/unique_fd.h"

struct skp_verdict_bpf;  // the bpftool skeleton
struct bpf_link;

namespace skproxy::bpf {

// Summed over CPUs, indexed [direction][enum skp_stat].
using StatsSnapshot = std::array<std::array<uint64_t, SKP_STAT_COUNT>, SKP_DIRECTIONS>;

// The two legs of one connection, as the maps know them.
struct ConnectionKeys {
  skp_key downstream;  // the accepted client socket
  skp_key upstream;    // the socket connected to the endpoint
  // skp_users slots, by direction; assigned by Insert, returned by RemoveState.
  uint32_t user_slots[SKP_DIRECTIONS] = {kNoSlot, kNoSlot};
  // Legs Insert put into the sockhash and Remove/RemoveState have not yet released (0, 1 or 2).
  uint32_t sockets_in_map = 0;
  static constexpr uint32_t kNoSlot = ~0u;
};

struct LoadOptions {
  uint32_t max_sockets = 65536;
  // The receive buffer the proxy sets on both legs (SO_RCVBUFFORCE, which the kernel doubles): the
  // verdict's trim must cover an old head as large as the window that buffer allows.
  uint32_t receive_buffer_bytes = 1 << 20;
  uint32_t workers = 1;  // one notice ring each
};

// Which legs Insert put into the sockhash.
enum class Inserted {
  kNone,            // nothing is on the kernel path: copy in user space
  kDownstreamOnly,  // the upstream leg failed after the downstream went in: the verdict passes every
                    // byte arriving on the downstream to user space (its peer is not in the map), so
                    // the connection is copied in user space exactly, without taking the downstream out
                    // (which would drop what the verdict already passed to it)
  kBoth,
};

class SockmapProgram {
 public:
  // Loads and attaches. Fails (with the reason: privilege, missing kernel feature, verifier log) when the
  // kernel path cannot be used on this machine.
  static absl::StatusOr<std::unique_ptr<SockmapProgram>> Load(const LoadOptions& options);
  ~SockmapProgram();
  SockmapProgram(const SockmapProgram&) = delete;
  SockmapProgram& operator=(const SockmapProgram&) = delete;

  // Puts both legs on the kernel path: per-direction state first, then the sockets, so the verdict never
  // sees a socket without its state. `worker` names the notice ring of the worker that owns the
  // connection. The status is the first failure (its errno, EBUSY, EOPNOTSUPP, E2BIG, ..., also in
  // *failed_errno) and *inserted says what is in the map despite it, so the caller can fall back for this
  // one connection and say why.
  absl::Status Insert(ConnectionKeys& keys, int downstream_fd, int upstream_fd, uint64_t gate_limit,
                      uint32_t worker, Inserted* inserted, int* failed_errno = nullptr);
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
  // The verdict's counts for a direction, read from the shared mapping.
  uint64_t Passed(uint32_t slot) const { return __atomic_load_n(&users_[slot].passed, __ATOMIC_SEQ_CST); }
  uint64_t Redirected(uint32_t slot) const { return __atomic_load_n(&users_[slot].redirected, __ATOMIC_ACQUIRE); }
  // User space stops watching the source of this direction: the verdict's next pass posts a notice.
  // Sequentially consistent, so that a Passed() after it sees any pass that did not see the flag.
  void Arm(uint32_t slot) { __atomic_store_n(&users_[slot].armed, 1u, __ATOMIC_SEQ_CST); }
  // Holds a direction in user mode (every byte passed to user space) or lets the gate decide again.
  void Hold(uint32_t slot, bool hold) { __atomic_store_n(&users_[slot].hold, hold ? 1u : 0u, __ATOMIC_SEQ_CST); }
  // Skbs the verdict passed / redirected for a direction: with the byte counts, the mean message size.
  uint64_t PassedSkbs(uint32_t slot) const { return __atomic_load_n(&users_[slot].passed_skbs, __ATOMIC_RELAXED); }
  uint64_t RedirectedSkbs(uint32_t slot) const {
    return __atomic_load_n(&users_[slot].redirected_skbs, __ATOMIC_RELAXED);
  }

  // The leave pass (skp_leave in verdict.bpf.c) takes legs of held connections out of the sockhash under
  // their socket lock, so that no byte the verdict passes can be lost with the psock. AskToLeave marks a
  // leg (the caller has made sure that nothing redirected towards it is still in its backlog and that the
  // connection is held); RunLeavePass walks every TCP socket of the namespace once, which takes
  // milliseconds with many sockets, so run it at most once per sampling interval for all that asked;
  // Left says whether the pass took the leg out (and then forgets the mark, and counts the leg as gone).
  // A pass takes out only the legs its own thread marked: ask, run and check on the same thread.
  // Unavailable (false) when the kernel could not attach the iterator: held connections then stay held.
  bool leave_available() const { return leave_link_ != nullptr; }
  absl::Status AskToLeave(int fd);
  absl::Status RunLeavePass();
  bool Left(int fd, ConnectionKeys& keys);
  void ForgetLeave(int fd);

  // The notice ring of worker `index` (a BPF ring buffer map), for the worker to poll and consume.
  int NoticeRingFd(uint32_t index) const { return index < rings_.size() ? rings_[index].get() : -1; }
  uint32_t workers() const { return static_cast<uint32_t>(rings_.size()); }

  StatsSnapshot ReadStats() const;
  // Notices the verdict could not post (SKP_STAT_NOTICES_LOST, both directions): cheaper than ReadStats.
  uint64_t NoticesLost() const;
  // Sockets in the sockhash right now, by walking the map: one syscall per entry, and an entry deleted
  // under the walk restarts it (counting some twice). For tests on a quiet map only.
  uint64_t CountSockets() const;
  // Sockets Insert put into the sockhash and Remove/RemoveState have not released yet: kept in user space
  // as sockets go in and out, so reading it costs nothing (metrics read it on every scrape).
  uint64_t SocketsHeld() const {
    const int64_t n = sockets_held_.load(std::memory_order_relaxed);
    return n > 0 ? static_cast<uint64_t>(n) : 0;
  }
  uint32_t max_sockets() const { return max_sockets_; }

 private:
  explicit SockmapProgram(skp_verdict_bpf* skel) : skel_(skel) {}
  int socks_fd() const;
  int dirs_fd() const;
  absl::Status MapUsers(uint32_t slots);
  absl::Status CreateNoticeRings(uint32_t workers, uint32_t ring_bytes);
  absl::Status InstallNoticeRings();
  static uint32_t NoticeRingBytes(uint32_t slots);
  // A failed delete of something that should have been there: logged once per process, not per connection.
  void DeleteOrLog(int map_fd, const skp_key& key, const char* map) const;
  bool TakeSlots(ConnectionKeys& keys);
  void ReturnSlots(ConnectionKeys& keys);

  skp_verdict_bpf* skel_;
  bool attached_ = false;
  bpf_link* leave_link_ = nullptr;
  skp_user* users_ = nullptr;  // skp_users, mapped
  size_t users_bytes_ = 0;
  std::vector<UniqueFd> rings_;
  mutable std::atomic<bool> delete_error_logged_{false};
  std::atomic<int64_t> sockets_held_{0};
  uint32_t max_sockets_ = 0;
  absl::Mutex slots_mu_;
  // First in, first out: a slot is reused as late as possible, so that a verdict still running for the
  // connection that returned it (an RCU reader of its old state) cannot count into the next owner's slot.
  std::deque<uint32_t> free_slots_ ABSL_GUARDED_BY(slots_mu_);
};

}  // namespace skproxy::bpf
