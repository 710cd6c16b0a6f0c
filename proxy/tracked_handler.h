// An IoHandler that counts its operations in flight, so its owner frees it only when the kernel holds no
// pointer to it (multishot operations count once, until their last CQE).
#pragma once

#include "proxy/ring.h"

namespace skproxy {

class TrackedHandler : public IoHandler {
 public:
  int inflight() const { return inflight_; }

  void OnCompletion(unsigned tag, int res, unsigned cqe_flags) final {
    if (!(cqe_flags & IORING_CQE_F_MORE)) --inflight_;
    Handle(tag, res, cqe_flags);
  }

 protected:
  explicit TrackedHandler(Ring& ring) : ring_(ring) {}
  ~TrackedHandler() = default;

  io_uring_sqe* Submit(unsigned tag) {
    ++inflight_;
    return ring_.Prepare(this, tag);
  }
  virtual void Handle(unsigned tag, int res, unsigned cqe_flags) = 0;

  Ring& ring_;

 private:
  int inflight_ = 0;
};

}  // namespace skproxy
