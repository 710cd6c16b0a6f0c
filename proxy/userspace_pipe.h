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

 private:
  enum Tag : unsigned { kRecv = 0, kSend = 2, kRetry = 4, kCancel = 6 };  // + direction where paired
  struct Direction {
    int buffer_id = -1;  // provided buffer holding bytes not yet sent
    size_t length = 0;
    size_t sent = 0;
    bool ended = false;  // EOF read and SHUT_WR done on the destination
  };

  void Handle(unsigned tag, int res, unsigned cqe_flags) override;
  void Receive(int d);
  void SendRest(int d);
  void OnReceived(int d, int res, unsigned cqe_flags);
  void OnSent(int d, int res);
  void ReleaseBuffer(int d);
  void Abort();

  Direction dirs_[2];
  __kernel_timespec retry_delay_{0, 1000000};  // when the worker is out of provided buffers
  bool aborting_ = false;
};

}  // namespace skproxy
