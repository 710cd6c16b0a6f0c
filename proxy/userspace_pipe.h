// The user-space copy path: per direction one io_uring recv into a provided buffer, then one send of it,
// then the next recv. One send in flight per socket keeps bytes in order (two could complete out of order)
// and makes a slow receiver slow the sender: we stop reading until the previous bytes left.
#pragma once

#include <linux/time_types.h>

#include "proxy/datapath.h"

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
  // When to hand over: once one direction has read `bulk_bytes` in full buffers back to back (a bulk
  // flow, which a chatty connection of small messages never does however long it lives), or, every
  // `quiet_reads` reads, when `quiet()` says the worker is quiet enough for the kernel path's latency.
  struct Promotion {
    uint64_t bulk_bytes = 0;  // 0: never on bulk
    uint32_t quiet_reads = 0; // 0: never on quiet
    std::function<bool()> quiet;
  };
  void HandOverWhen(Promotion promotion, Handover handover) {
    promotion_ = std::move(promotion);
    handover_ = std::move(handover);
  }

 private:
  enum Tag : unsigned { kRecv = 0, kSend = 2, kRetry = 4, kStop = 6, kCancel = 8 };  // + direction where paired
  struct Direction {
    int buffer_id = -1;  // provided buffer holding bytes not yet sent
    size_t length = 0;
    size_t sent = 0;
    bool ended = false;  // EOF read and SHUT_WR done on the destination
    bool receiving = false;   // a recv is in flight
    uint64_t full_run = 0;    // bytes read in full buffers back to back
  };
  bool WantsHandover(const Direction& dir);

  void Handle(unsigned tag, int res, unsigned cqe_flags) override;
  void Receive(int d);
  void SendRest(int d);
  void OnReceived(int d, int res, unsigned cqe_flags);
  void OnSent(int d, int res);
  void ReleaseBuffer(int d);
  void Abort(bool reset = true);
  void StopForHandover();
  // With nothing in flight: hands the legs over, or, when a direction ended meanwhile, goes on reading.
  void FinishHandover();

  Direction dirs_[2];
  Promotion promotion_;
  uint64_t reads_ = 0;       // successful reads, both directions
  uint64_t activity_ = 0;    // successful reads and sends, both directions
  Handover handover_;
  bool stopping_ = false;    // reading stopped for the hand-over
  __kernel_timespec retry_delay_{0, 1000000};  // when the worker is out of provided buffers
  bool aborting_ = false;
};

}  // namespace skproxy
