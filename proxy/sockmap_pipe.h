// The kernel path for one connection. The verdict program moves the bytes; user space does not watch a
// direction the verdict redirects (that would wake it for every skb), only its hang-up. It works when:
//  - the gate passed bytes to user space (a notice from the verdict, see notice_ring.h): copy them to the
//    other leg, but only once every byte redirected before them has left the psock backlog (else they
//    would overtake), then tell the program how far it got; while bytes are passed, watch for POLLIN;
//  - EOF: pass the FIN on (SHUT_WR) only once nothing of that direction is still in the backlog, since
//    shutting the peer down while its backlog holds bytes drops them silently;
//  - reset or error, or a trim that fell short: take both legs off the map and reset the other one.
// When both directions have ended, both legs leave the map and are closed.
// Held (a demoted connection, see path_switch.h), every byte is passed, and the copy goes through the ring
// instead: a recv into the worker's provided buffers, then a send, no synchronous syscall per message;
// when the pool is dry, a read into a small buffer of the direction's own (own_buffer.h). A held
// connection can leave the sockhash exactly (BeginLeave) and hand its legs to a UserspacePipe.
#pragma once

#include <linux/time_types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "bpf/loader.h"
#include "proxy/datapath.h"
#include "proxy/notice_ring.h"
#include "proxy/own_buffer.h"

namespace skproxy {

class SockmapPipe final : public Pipe, public NoticeTarget {
 public:
  // Inserts both legs into the maps. When nothing could be inserted (EOPNOTSUPP for a client that is
  // already closing, EBUSY, a full map) returns the legs untouched, with the reason, so the caller can use
  // the user-space path. When only the downstream went in, the pipe copies every byte in user space
  // (through the verdict's pass) and *failure still says why, for the fallback metric.
  struct InsertFailure {
    std::string reason;  // short, for the fallback metric's label: "insert_ebusy", ...
    absl::Status status;
    UniqueFd downstream;
    UniqueFd upstream;
  };
  struct Options {
    uint64_t gate_limit;
    uint32_t worker;  // the notice ring of the worker that owns the connection
    uint64_t receive_buffer;  // the legs' receive buffer (sockmap.receive_buffer): sizes the copy buffer
  };
  // How much one recv takes from a source whose bytes the gate passed: all that the source's receive buffer
  // holds, so that one read catches up with the verdict and it may redirect again sooner (the share of one
  // stream that stays on the kernel path follows from it: docs/kernel-datapath.md). Held within
  // [256 KiB, 4 MiB], since it is allocated for every direction in user mode.
  static size_t CopyBufferSize(uint64_t receive_buffer);
  static std::unique_ptr<SockmapPipe> Create(Ring& ring, Metrics& metrics, bpf::SockmapProgram& program,
                                             NoticeTargets& notices, Options options, UniqueFd downstream,
                                             UniqueFd upstream, std::function<void()> on_finish,
                                             InsertFailure* failure);
  ~SockmapPipe() override;
  // A connection with only one leg in the map, or held, runs entirely in user space.
  PathKind kind() const override {
    return upstream_in_map_ && !held_ ? PathKind::kSockmap : PathKind::kUserspace;
  }
  void Start() override;
  // The verdict's per-direction byte counts in the shared mapping, and what user space copied.
  uint64_t activity() const override;
  void CloseIdle() override { Abort(/*reset=*/false); }
  uint64_t kernel_bytes(int direction) const override;
  // Per direction (d2u, u2d): what the verdict redirected and passed, what user space copied, and the
  // polls, recv, send or timer the direction waits on.
  std::string Operations() const override;

  // Holds both directions in user mode (the verdict passes every byte, this pipe copies it once every
  // byte redirected before has left the backlog) or gives them back to the gate. Both are exact at any
  // moment, with bytes in flight: see docs/adaptive-datapath.md. Only with both legs in the map.
  // False when nothing changed (already so, or the pipe is ending).
  bool Hold(bool hold);
  bool held() const { return held_; }

  // Held, takes both legs out of the sockhash, so that the connection goes on as a plain user-space one
  // without the psock's work per skb (docs/adaptive-datapath.md, "Leaving the map"). The pipe stops
  // reading, writes what it has read, raises both legs' SO_RCVLOWAT so that arriving bytes wait in the
  // receive queue instead of running the verdict, and marks each leg for the leave pass, which deletes it
  // under its socket lock when every byte the verdict passed has been copied. `ask_pass` is called once
  // the legs are marked; then AfterLeavePass. False when it cannot start (not held, ending).
  using Left = std::function<void(UniqueFd downstream, UniqueFd upstream)>;
  bool BeginLeave(std::function<void()> ask_pass, Left left);
  bool leaving() const { return leave_ != Leave::kNone; }
  // After the leave pass: both legs out, the legs go to `left` (and this pipe is spent); otherwise the
  // pipe copies again, held, with what is still in the map. Each attempt is counted in
  // skproxy_sockmap_leaves_total.
  void AfterLeavePass();
  bool both_in_map() const { return upstream_in_map_; }
  const bpf::ConnectionKeys& keys() const { return keys_; }

  void OnNotice(uint32_t slot, uint32_t kind) override;
  void OnSweep(uint32_t slot) override;

 private:
  // + direction where paired.
  enum Tag : unsigned { kReadable = 0, kWritable = 2, kHangup = 4, kTimer = 6, kCancel = 7, kRecv = 8, kSend = 10 };
  static constexpr int kNoRingBuffer = -1;
  static constexpr int kOwnBuffer = -2;

  struct Direction {
    skp_key source_key;
    uint32_t slot = bpf::ConnectionKeys::kNoSlot;
    bool source_in_map = true;      // false: the verdict never sees this source, read it like a plain socket
    uint64_t destination_base = 0;  // bytes that had entered the destination's write queue at insertion
    uint64_t user_copied = 0;       // passed bytes user space has written to the destination
    std::unique_ptr<uint8_t[]> buffer;
    size_t length = 0;
    size_t sent = 0;
    bool eof = false;
    bool shut = false;
    bool readable_poll = false;  // a POLLIN poll is in flight on the source (only while bytes are passed)
    bool hangup_poll = false;    // the POLLRDHUP poll on the source, in flight until the FIN or an error
    bool writable_poll = false;  // a POLLOUT poll is in flight on the destination
    bool on_timer = false;       // waiting for the backlog: the pipe's timer pumps it again
    // Held, a direction copies through the ring like the user-space path: one recv into a provided buffer
    // of the worker's pool, then one send of it, no synchronous syscall per message. [sent, length) of
    // `ring_buffer` is what is left to send: a pool buffer's id, or kOwnBuffer (the bytes are in `own`);
    // kNoRingBuffer: the bytes, if any, are in `buffer` (synchronous copy).
    bool recv_inflight = false;
    bool send_inflight = false;
    int ring_buffer = kNoRingBuffer;
    // The last recv found the pool empty: the next read goes into `own` once the source is readable,
    // rather than waiting for the pool, which could wait for ever (see own_buffer.h).
    bool pool_dry = false;
    OwnBuffer own;
    // The verdict's redirected count when the backlog was last found drained: until it grows, nothing new
    // entered the backlog, and a held direction's copies skip the two syscalls of the check.
    uint64_t drained_at_redirected = ~0ull;
    // DestinationBusy's last SIOCOUTQ, and the bytes written towards the destination by then (user_copied +
    // redirected). The queue grows only by what is written into it, so until the last count plus what was
    // written since passes the limit, the destination cannot be busy and the check costs no syscall.
    bool queue_known = false;
    uint64_t queued_at_check = 0;
    uint64_t written_at_check = 0;
  };

  SockmapPipe(Ring& ring, Metrics& metrics, bpf::SockmapProgram& program, NoticeTargets& notices,
              uint64_t gate_limit, size_t copy_buffer_size, bpf::ConnectionKeys keys, UniqueFd downstream,
              UniqueFd upstream, std::function<void()> on_finish);
  void Handle(unsigned tag, int res, unsigned cqe_flags) override;
  // Moves direction d as far as it can go now; arms a poll or the timer where it has to wait.
  void Pump(int d);
  // recv() found nothing: watch for POLLIN while passed bytes are outstanding, else only for hang-up.
  void Idle(int d);
  bool Flush(int d);
  // Held: the recv through the ring, and its completion; the send of a ring buffer and its completion.
  void Receive(int d);
  void OnReceived(int d, int res, unsigned cqe_flags);
  void OnSent(int d, int res);
  // Held and the pool dry: reads into the direction's own buffer. False when it has to wait or aborted.
  bool ReadIntoOwnBuffer(int d);
  uint8_t* RingBytes(const Direction& dir);
  void ReturnRingBuffer(int d);
  // recv() (or the ring's) said EOF: true when the direction has ended, false when it waits or aborted.
  bool AtEof(int d);
  bool BacklogDrained(int d);
  bool DestinationBusy(int d);
  bool AllPassedCopied(int d) const;
  void WatchReadable(int d);
  void WatchHangup(int d);
  void WatchWritable(int d);
  void WaitForBacklog(int d);
  void ShutDestination(int d);
  void EndIfDone();
  // Leaving: cancels reads and polls once no send is in flight, then, with nothing in flight, AskToLeave
  // marks the legs if nothing is left to copy, or copies again.
  void StopForLeave();
  // SO_RCVLOWAT on both legs; setting it also runs the data-ready path once (the verdict, for a leg in the
  // map). False on the first leg that refused.
  bool SetLowWater(int bytes);
  void AskToLeave();
  void ResumeAfterLeave();
  void ReleaseKernelState() override;
  void Abort(bool reset = true);

  bpf::SockmapProgram& program_;
  NoticeTargets& notices_;
  uint64_t gate_limit_;
  size_t copy_buffer_size_;
  bpf::ConnectionKeys keys_;
  bool upstream_in_map_ = true;
  bool held_ = false;
  bool state_released_ = false;
  uint64_t activity_at_release_ = 0;
  uint64_t kernel_bytes_[2] = {0, 0};  // the verdict's counts, kept when the slots are returned
  Direction dirs_[2];
  bool timer_armed_ = false;
  __kernel_timespec timer_delay_{0, 0};
  bool aborting_ = false;
  // kStopping: cancelling the reads and polls; kAsked: legs marked, waiting for the leave pass.
  enum class Leave { kNone, kStopping, kAsked };
  Leave leave_ = Leave::kNone;
  bool leave_cancelled_ = false;
  std::function<void()> ask_pass_;
  Left left_;
};

// A socket's TCP state, and the bytes that have entered its write queue since it connected
// (tcpi_bytes_acked + SIOCOUTQ), up to a constant per socket: only differences are meaningful.
struct WriteProgress {
  uint8_t tcp_state;
  uint64_t entered;
};
absl::StatusOr<WriteProgress> ReadWriteProgress(int fd);

}  // namespace skproxy
