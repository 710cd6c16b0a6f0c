// The user-space copy path. Per direction: one multishot recv into the worker's provided buffers, limited
// to the bytes this direction may still hold (read but not yet written), and one send in flight at a time,
// of the oldest buffer read. One send at a time keeps bytes in order (two could complete out of order);
// the read-ahead limit makes a slow receiver slow the sender: once `kReadAhead` bytes wait, the recv ends
// and is re-armed only as sends drain them. On a kernel without the limited multishot recv (before 6.17)
// the same loop runs with one single-shot recv per buffer, which holds at most one buffer per direction.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/container/inlined_vector.h"
#include "proxy/datapath.h"
#include "proxy/own_buffer.h"

namespace skproxy {

class UserspacePipe final : public Pipe {
 public:
  UserspacePipe(Ring& ring, Metrics& metrics, UniqueFd downstream, UniqueFd upstream,
                std::function<void()> on_finish);
  PathKind kind() const override { return PathKind::kUserspace; }
  void Start() override;
  uint64_t activity() const override { return activity_; }
  void CloseIdle() override { Abort(/*reset=*/false); }

  // Receives both legs once the pipe has stopped: nothing in flight, every byte it read written to the
  // other leg, neither direction ended. The pipe is then spent: its owner only destroys it.
  using Handover = std::function<void(UniqueFd downstream, UniqueFd upstream)>;
  // When to hand over: once one direction has read `bulk_bytes` back to back in reads that filled their
  // buffer or left more bytes waiting in the socket (a bulk flow, which a chatty connection of small
  // messages never does however long it lives), or, every
  // `quiet_reads` reads, when `quiet()` says the worker is quiet enough for the kernel path's latency.
  struct Promotion {
    uint64_t bulk_bytes = 0;  // 0: never on bulk
    uint32_t quiet_reads = 0; // 0: never on quiet
    std::function<bool()> quiet;
    bool on_response = false;  // as soon as the upstream has sent its first byte (datapath: sockmap)
  };
  void HandOverWhen(Promotion promotion, Handover handover) {
    promotion_ = std::move(promotion);
    handover_ = std::move(handover);
  }

  // An http listener's pipe, until the upstream's first byte: when the upstream ends (FIN or reset) or
  // fails a write before it sent any byte, nothing is passed on to the client; the pipe stops, closes the
  // upstream leg and gives the client's leg to `no_response` (which answers 502; with `timed_out`, after
  // TimeOutResponse, 504). Once the upstream has sent a byte, its end or reset passes through as on any
  // connection. No hand-over to the kernel path happens before that first byte: the kernel path could not
  // tell these cases apart.
  using NoResponse = std::function<void(UniqueFd downstream, bool timed_out)>;
  void AwaitResponse(NoResponse no_response) { no_response_ = std::move(no_response); }
  bool awaiting_response() const override { return no_response_ != nullptr && !aborting_; }
  // The owner's response timeout (the worker's sweep saw no byte move for that long): stop as above.
  void TimeOutResponse() override;
  // Per direction (d2u, u2d): the operation in flight, the bytes queued and the flags that gate a recv.
  std::string Operations() const override;

  // Bytes one direction may hold read but not yet written, in provided buffers: two buffers, so the next
  // recv overlaps the send of the previous one.
  static constexpr uint32_t kReadAheadBuffers = 2;
  // Buffers one direction may hold however few bytes they carry (a sender of tiny segments): beyond this
  // the recv is cancelled, so one connection cannot drain the worker's shared pool.
  static constexpr uint32_t kMaxQueuedBuffers = 8;

 private:
  // + direction where paired; kCancel is shared by both legs' cancels on abort.
  enum Tag : unsigned { kRecv = 0, kSend = 2, kReadable = 4, kStop = 6, kCancel = 8, kPause = 10 };
  // The buffer id of a chunk read into the direction's own buffer (pool ids are below the pool size).
  static constexpr uint16_t kOwnBufferId = 0xffff;
  struct Chunk {
    uint16_t buffer_id;
    uint32_t length;
  };
  struct Direction {
    // Buffers read, oldest (being sent) first. Past kMaxQueuedBuffers only while a pause's cancel is on
    // its way; inline for the usual one or two, so an idle connection allocates nothing.
    absl::InlinedVector<Chunk, 4> queue;
    uint32_t sent = 0;             // bytes of the head buffer already sent
    uint64_t queued_bytes = 0;     // bytes in the queue not yet sent
    bool receiving = false;        // a recv is in flight (multishot: until its last completion)
    uint32_t recv_cap = 0;         // the most one completion of that recv can carry
    bool awaiting_readable = false;  // the pool was dry: a POLLIN poll, then a read into `own`
    OwnBuffer own;                 // while a chunk read into it waits to be sent (see own_buffer.h)
    bool pausing = false;          // its cancel was sent because too many buffers wait
    bool sending = false;
    bool eof = false;              // the source sent FIN; passed on once the queue is empty
    bool ended = false;            // EOF read and SHUT_WR done on the destination
    uint64_t full_run = 0;         // bytes read in full buffers back to back
  };
  bool WantsHandover(const Direction& dir);

  void Handle(unsigned tag, int res, unsigned cqe_flags) override;
  // Arms a recv for direction d if it may read more now.
  void MaybeReceive(int d);
  void SendHead(int d);
  // The pool was dry and direction d holds nothing: reads what its source has into its own buffer.
  void ReceiveIntoOwnBuffer(int d);
  uint8_t* ChunkData(const Direction& dir, const Chunk& chunk);
  void ReturnBuffer(Direction& dir, uint16_t buffer_id);
  void OnEof(int d);
  void OnReceived(int d, int res, unsigned cqe_flags);
  void OnSent(int d, int res);
  // Passes a FIN read on direction d once everything before it was written.
  void MaybeEnd(int d);
  void ReleaseAll(int d);
  void Abort(bool reset = true);
  // The upstream went away before its first byte while no_response_ is armed: stop, then call it.
  void FailBeforeResponse();
  void StopForHandover();
  // With nothing in flight: hands the legs over, or, when a direction ended meanwhile, goes on reading.
  void FinishHandover();

  Direction dirs_[2];
  Promotion promotion_;
  uint64_t reads_ = 0;       // successful reads, both directions
  uint64_t activity_ = 0;    // successful reads and sends, both directions
  Handover handover_;
  NoResponse no_response_;        // armed until the upstream's first byte
  bool failed_before_response_ = false;
  bool response_timed_out_ = false;
  bool stopping_ = false;    // reading stopped for the hand-over
  bool aborting_ = false;
};

}  // namespace skproxy
