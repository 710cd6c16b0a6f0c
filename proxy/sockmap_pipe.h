// The kernel path for one connection. The verdict program moves the bytes; user space watches both legs
// for three things the program cannot do:
//  - bytes the gate passed to user space: copy them to the other leg, but only once every byte redirected
//    before them has left the psock backlog (else they would overtake), then tell the program how far it got;
//  - EOF: pass the FIN on (SHUT_WR) only once nothing of that direction is still in the backlog, since
//    shutting the peer down while its backlog holds bytes drops them silently;
//  - reset or error: take both legs off the map and reset the other one.
// When both directions have ended, both legs leave the map and are closed.
#pragma once

#include <linux/time_types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "bpf/loader.h"
#include "proxy/datapath.h"

namespace skproxy {

class SockmapPipe final : public Pipe {
 public:
  // Inserts both legs into the maps. On failure (EOPNOTSUPP for a leg that is already closing, EBUSY, a
  // full map) returns the legs untouched, with the reason, so the caller can use the user-space path.
  struct InsertFailure {
    std::string reason;  // short, for the fallback metric's label: "not_established", "insert_ebusy", ...
    absl::Status status;
    UniqueFd downstream;
    UniqueFd upstream;
  };
  static std::unique_ptr<SockmapPipe> Create(Ring& ring, Metrics& metrics, bpf::SockmapProgram& program,
                                             uint64_t gate_limit, UniqueFd downstream, UniqueFd upstream,
                                             std::function<void()> on_finish, InsertFailure* failure);
  PathKind kind() const override { return PathKind::kSockmap; }
  void Start() override;

 private:
  enum Tag : unsigned { kReadable = 0, kWritable = 2, kTimer = 4, kCancel = 5 };
  static constexpr size_t kCopyBufferSize = 256 * 1024;

  struct Direction {
    skp_key source_key;
    uint64_t destination_base = 0;  // bytes that had entered the destination's write queue at insertion
    uint64_t user_copied = 0;       // passed bytes user space has written to the destination
    std::unique_ptr<uint8_t[]> buffer;
    size_t length = 0;
    size_t sent = 0;
    bool eof = false;
    bool shut = false;
    bool watching = false;  // a readable/writable poll is in flight
  };

  SockmapPipe(Ring& ring, Metrics& metrics, bpf::SockmapProgram& program, uint64_t gate_limit,
              bpf::ConnectionKeys keys,
              UniqueFd downstream, UniqueFd upstream, std::function<void()> on_finish);
  void Handle(unsigned tag, int res, unsigned cqe_flags) override;
  // Moves direction d as far as it can go now; arms a poll or the timer where it has to wait.
  void Pump(int d);
  bool Flush(int d);
  bool BacklogDrained(int d);
  bool DestinationBusy(int d);
  bool AllPassedCopied(int d);
  void WatchReadable(int d);
  void WatchWritable(int d);
  void WaitForBacklog();
  void EndIfDone();
  void Abort();

  bpf::SockmapProgram& program_;
  uint64_t gate_limit_;
  bpf::ConnectionKeys keys_;
  Direction dirs_[2];
  bool timer_armed_ = false;
  __kernel_timespec timer_delay_{0, 0};
  bool aborting_ = false;
};

// A socket's TCP state, and the bytes that have entered its write queue since it connected
// (tcpi_bytes_acked + SIOCOUTQ), up to a constant per socket: only differences are meaningful.
struct WriteProgress {
  uint8_t tcp_state;
  uint64_t entered;
};
absl::StatusOr<WriteProgress> ReadWriteProgress(int fd);

}  // namespace skproxy
