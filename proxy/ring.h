// A thin RAII owner of one io_uring and its provided-buffer ring. Completions are dispatched to the
// IoHandler whose address (with a 4-bit tag for which of its operations it was) is in user_data, so the
// hot path allocates nothing per operation.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <deque>
#include <memory>

#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "proxy/unique_fd.h"

namespace skproxy {

// 16-byte aligned so the low 4 bits of its address carry the tag.
class alignas(16) IoHandler {
 public:
  static constexpr unsigned kMaxTags = 16;

  // Called once per CQE; IORING_CQE_F_MORE in cqe_flags means a multishot operation completes again.
  virtual void OnCompletion(unsigned tag, int res, unsigned cqe_flags) = 0;

 protected:
  ~IoHandler() = default;
};

// Provided buffers for recv (IOSQE_BUFFER_SELECT): a connection holds a buffer only while bytes it read
// wait to be sent, so idle connections cost no buffer memory.
class BufferRing {
 public:
  static constexpr uint16_t kGroupId = 1;

  BufferRing(io_uring_buf_ring* ring, uint8_t* memory, unsigned count, unsigned size)
      : ring_(ring), memory_(memory), count_(count), size_(size) {}
  uint8_t* buffer(unsigned id) const { return memory_ + static_cast<size_t>(id) * size_; }
  unsigned buffer_size() const { return size_; }
  unsigned count() const { return count_; }
  // Gives buffer `id` back to the kernel for the next recv.
  void Return(unsigned id);
  // Recvs that found the pool empty (-ENOBUFS): the tests' proof that they exhausted it.
  void NoteEmpty() { ++empty_; }
  uint64_t empty_count() const { return empty_; }

 private:
  io_uring_buf_ring* ring_;
  uint8_t* memory_;
  unsigned count_;
  unsigned size_;
  uint64_t empty_ = 0;
};

class Ring {
 public:
  // single_shot_recv: never use the limited multishot recv even where the kernel has it (tests of the
  // older kernels' loop).
  static absl::StatusOr<std::unique_ptr<Ring>> Create(unsigned entries, unsigned buffer_count,
                                                      unsigned buffer_size, bool single_shot_recv = false);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // An SQE whose completion goes to handler->OnCompletion(tag, ...). Never null and never blocks: when the
  // SQ is full it submits once, and if that cannot make room (the submit failed) the SQE is held in user
  // space until the next SubmitAndDispatch, in order.
  io_uring_sqe* Prepare(IoHandler* handler, unsigned tag);
  // An SQE whose completion is ignored (e.g. the timeout half of a linked pair we track elsewhere).
  io_uring_sqe* PrepareUntracked();
  // Closes fd with IORING_OP_CLOSE, issued with the next submit: a socket has no flush, so the kernel closes
  // it inline there and the close costs no system call of its own. The number stays allocated until then,
  // so no SQE prepared before can name a reused descriptor. Used for the legs of a finished connection.
  void Close(UniqueFd fd);
  // setsockopt(fd, level, name, *value) as an SQE (IORING_OP_URING_CMD; Linux 6.7+, see socket_commands),
  // hard-linked to the SQE prepared next, which therefore runs after it whether or not it succeeded. A
  // socket option is set inline at submit, so it costs no system call of its own. *value is read when the
  // SQE runs: it must outlive the submit. Success posts no completion; a failure is written to stderr
  // once per ring and counted (socket_option_failures, and the counter given to CountSocketOptionFailuresIn).
  void SetSocketOption(int fd, int level, int name, const int* value);
  // Also counts each refused socket option in *counter (the worker's metric), which must outlive the ring.
  void CountSocketOptionFailuresIn(prometheus::Counter* counter) { socket_option_failure_counter_ = counter; }
  // Submits what is queued (held SQEs first), waits for at least one completion and dispatches every
  // ready one. Does not wait while SQEs are still held, so they are retried on the next call.
  absl::Status SubmitAndDispatch();
  // SQEs prepared while the SQ was full and could not be submitted, not yet in the SQ.
  size_t held() const { return held_.size(); }
  // io_uring_submit failures met while the SQ was full (the errors SubmitAndDispatch tolerates are not counted).
  uint64_t full_submit_errors() const { return full_submit_errors_; }

  BufferRing& buffers() { return *buffers_; }
  // The kernel takes a multishot recv with a total byte limit (sqe->optlen, IORING_OP_RECV; Linux 6.17+):
  // the recv re-arms itself until that many bytes arrived, then ends. Probed once at Create.
  bool recv_multishot_limit() const { return recv_multishot_limit_; }
  // The kernel sets socket options from the ring (SetSocketOption). Probed once at Create.
  bool socket_commands() const { return socket_commands_; }
  uint64_t socket_option_failures() const { return socket_option_failures_; }

 private:
  Ring() = default;
  // Moves held SQEs into the SQ, submitting when it fills; stops at the first submit that fails.
  void MoveHeldIntoRing();
  // Sends one byte through a socketpair into a limited multishot recv: supported if it ends after it.
  bool ProbeRecvMultishotLimit();
  // Sets TCP_NODELAY on a new TCP socket from the ring: supported if it succeeds and the socket shows it.
  bool ProbeSocketCommands();
  void NoteSocketOptionFailure(int res);

  io_uring ring_{};
  bool initialized_ = false;
  // A deque: the caller fills the SQE after Prepare returns, so earlier ones must not move.
  std::deque<io_uring_sqe> held_;
  uint64_t full_submit_errors_ = 0;
  void* buffer_memory_ = nullptr;
  size_t buffer_memory_size_ = 0;
  std::unique_ptr<BufferRing> buffers_;
  bool recv_multishot_limit_ = false;
  bool socket_commands_ = false;
  uint64_t socket_option_failures_ = 0;
  prometheus::Counter* socket_option_failure_counter_ = nullptr;
};

// Prepares a multishot recv into a provided buffer of `group` that reads at most `limit` bytes in all
// (then completes without IORING_CQE_F_MORE), each completion at most `per_recv` bytes (0: a whole buffer).
// liburing 2.3 (Debian 12) predates the limit, so the field is set by hand: sqe->optlen shares its place
// with file_index.
void PrepareLimitedRecvMultishot(io_uring_sqe* sqe, int fd, uint16_t group, uint32_t per_recv, uint32_t limit);

}  // namespace skproxy
