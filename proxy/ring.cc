#include "proxy/ring.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace skproxy {
namespace {

constexpr uint64_t kTagMask = IoHandler::kMaxTags - 1;
constexpr uint64_t kUntracked = 0;  // user_data of completions nobody waits for
// user_data of a socket option set from the ring: only a failure completes (IOSQE_CQE_SKIP_SUCCESS). No
// handler has this address: handlers are 16-byte aligned and never null.
constexpr uint64_t kSocketOption = 1;
// SOCKET_URING_OP_SETSOCKOPT of enum io_uring_socket_op (Linux 6.7): the UAPI headers of Debian 12 (6.1)
// and its liburing 2.3 predate it, so the number and the SQE's fields are written here by hand.
constexpr uint32_t kSocketUringOpSetsockopt = 3;

// The SQE of IORING_OP_URING_CMD on a socket: cmd_op, then level and optname where addr is, optlen where
// splice_fd_in is, optval where addr3 is (the field names of the newer header).
void PrepareSocketCommand(io_uring_sqe* sqe, int fd, int level, int name, const int* value) {
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, nullptr, 0, 0);
  sqe->cmd_op = kSocketUringOpSetsockopt;
  sqe->addr = static_cast<uint32_t>(level) | static_cast<uint64_t>(static_cast<uint32_t>(name)) << 32;
  sqe->splice_fd_in = sizeof(*value);
  sqe->addr3 = reinterpret_cast<uint64_t>(value);
}
static_assert(sizeof(io_uring_buf) == 16, "proxy/buffer_pool_size.h counts 16 bytes per ring entry");

}  // namespace

void PrepareLimitedRecvMultishot(io_uring_sqe* sqe, int fd, uint16_t group, uint32_t per_recv, uint32_t limit) {
  io_uring_prep_recv(sqe, fd, nullptr, per_recv, 0);
  sqe->ioprio |= IORING_RECV_MULTISHOT;
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = group;
  sqe->file_index = limit;  // optlen: the total byte limit
}

void BufferRing::Return(unsigned id) {
  io_uring_buf_ring_add(ring_, buffer(id), size_, id, io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(ring_, 1);
}

absl::StatusOr<std::unique_ptr<Ring>> Ring::Create(unsigned entries, unsigned buffer_count,
                                                   unsigned buffer_size, bool single_shot_recv) {
  std::unique_ptr<Ring> ring(new Ring());
  io_uring_params params{};
  // One thread owns each ring; COOP_TASKRUN runs completions' task work at our next kernel entry instead
  // of interrupting the thread. DEFER_TASKRUN measured no better here (docs/userspace-datapath.md).
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL;
  params.flags |= IORING_SETUP_CQSIZE;
  params.cq_entries = entries * 4;
  if (int err = io_uring_queue_init_params(entries, &ring->ring_, &params); err < 0)
    return absl::ErrnoToStatus(-err, "io_uring_queue_init");
  ring->initialized_ = true;

  // The buffer ring entries and the buffers themselves, in one mapping that is touched only when used.
  const size_t ring_bytes = sizeof(io_uring_buf) * buffer_count;
  ring->buffer_memory_size_ = ring_bytes + static_cast<size_t>(buffer_count) * buffer_size;
  void* mem = mmap(nullptr, ring->buffer_memory_size_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return absl::ErrnoToStatus(errno, "mmap of the buffer ring");
  ring->buffer_memory_ = mem;
  auto* br = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br);
  reg.ring_entries = buffer_count;
  reg.bgid = BufferRing::kGroupId;
  if (int err = io_uring_register_buf_ring(&ring->ring_, &reg, 0); err < 0)
    return absl::ErrnoToStatus(-err, "io_uring_register_buf_ring");
  io_uring_buf_ring_init(br);
  ring->buffers_ = std::make_unique<BufferRing>(br, static_cast<uint8_t*>(mem) + ring_bytes, buffer_count,
                                                buffer_size);
  for (unsigned id = 0; id < buffer_count; ++id)
    io_uring_buf_ring_add(br, ring->buffers_->buffer(id), buffer_size, id,
                          io_uring_buf_ring_mask(buffer_count), id);
  io_uring_buf_ring_advance(br, buffer_count);
  ring->recv_multishot_limit_ = !single_shot_recv && ring->ProbeRecvMultishotLimit();
  ring->socket_commands_ = ring->ProbeSocketCommands();
  return ring;
}

bool Ring::ProbeSocketCommands() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  static const int kOne = 1;
  PrepareSocketCommand(io_uring_get_sqe(&ring_), fd, IPPROTO_TCP, TCP_NODELAY, &kOne);
  io_uring_submit(&ring_);
  bool supported = false;
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec timeout{1, 0};
  if (io_uring_wait_cqe_timeout(&ring_, &cqe, &timeout) == 0) {
    // An older kernel refuses the command (-EOPNOTSUPP, or -EINVAL for a field it does not know).
    int set = 0;
    socklen_t length = sizeof(set);
    supported = cqe->res == 0 && getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &set, &length) == 0 && set != 0;
    io_uring_cqe_seen(&ring_, cqe);
  }
  close(fd);
  return supported;
}

bool Ring::ProbeRecvMultishotLimit() {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0) return false;
  const char byte = 'x';
  bool supported = false;
  if (write(pair[1], &byte, 1) == 1) {
    PrepareLimitedRecvMultishot(io_uring_get_sqe(&ring_), pair[0], BufferRing::kGroupId, 0, 1);
    io_uring_submit(&ring_);
    // Until the recv's last completion: an older kernel refuses the SQE (-EINVAL), or, were it to ignore
    // the limit, would keep the recv armed until the close below ends it with 0.
    for (bool more = true; more;) {
      io_uring_cqe* cqe = nullptr;
      __kernel_timespec timeout{1, 0};
      if (io_uring_wait_cqe_timeout(&ring_, &cqe, &timeout) != 0) break;
      more = (cqe->flags & IORING_CQE_F_MORE) != 0;
      if (cqe->res == 1 && !more) supported = true;
      if (cqe->flags & IORING_CQE_F_BUFFER) buffers_->Return(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
      io_uring_cqe_seen(&ring_, cqe);
      if (more) {
        close(pair[1]);
        pair[1] = -1;
      }
    }
  }
  close(pair[0]);
  if (pair[1] >= 0) close(pair[1]);
  return supported;
}

Ring::~Ring() {
  if (initialized_) {
    // Closes still queued run now; one that cannot reach the kernel is done here, so nothing leaks.
    MoveHeldIntoRing();
    io_uring_submit(&ring_);
    for (const io_uring_sqe& sqe : held_)
      if (sqe.opcode == IORING_OP_CLOSE) close(sqe.fd);
    io_uring_queue_exit(&ring_);
  }
  if (buffer_memory_ != nullptr) munmap(buffer_memory_, buffer_memory_size_);
}

void Ring::Close(UniqueFd fd) {
  if (fd.valid()) io_uring_prep_close(PrepareUntracked(), fd.Release());
}

void Ring::SetSocketOption(int fd, int level, int name, const int* value) {
  io_uring_sqe* sqe = PrepareUntracked();
  PrepareSocketCommand(sqe, fd, level, name, value);
  sqe->flags |= IOSQE_IO_HARDLINK | IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(sqe, kSocketOption);
}

void Ring::NoteSocketOptionFailure(int res) {
  // Options the caller could set before (probed at start), on a socket just made: a failure is not
  // expected, and the connection goes on without the option, as it would after a failed setsockopt.
  if (socket_option_failure_counter_ != nullptr) socket_option_failure_counter_->Increment();
  if (socket_option_failures_++ == 0)
    std::fprintf(stderr, "skproxy: setting a socket option through io_uring: %s (reported once per worker)\n",
                 strerror(-res));
}

io_uring_sqe* Ring::Prepare(IoHandler* handler, unsigned tag) {
  io_uring_sqe* sqe = PrepareUntracked();
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(handler) | (tag & kTagMask));
  return sqe;
}

io_uring_sqe* Ring::PrepareUntracked() {
  // Once one SQE is held, later ones queue behind it: a linked pair (connect + link timeout) must reach the
  // kernel in the order it was prepared.
  io_uring_sqe* sqe = held_.empty() ? io_uring_get_sqe(&ring_) : nullptr;
  if (sqe == nullptr && held_.empty()) {
    // Full. One submit makes room; retrying a failed one here would spin forever (the error, e.g. EBUSY
    // with completions to reap first, does not go away until the loop dispatches), so hold the SQE instead.
    if (int err = io_uring_submit(&ring_); err < 0) {
      if (full_submit_errors_++ == 0)
        std::fprintf(stderr, "skproxy: io_uring submit with a full SQ failed (%s); holding SQEs until the next loop\n",
                     strerror(-err));
    }
    sqe = io_uring_get_sqe(&ring_);
  }
  if (sqe == nullptr) sqe = &held_.emplace_back();  // zeroed, as the io_uring_prep_* helpers expect
  io_uring_sqe_set_data64(sqe, kUntracked);
  return sqe;
}

void Ring::MoveHeldIntoRing() {
  while (!held_.empty()) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      if (io_uring_submit(&ring_) < 0) return;  // SubmitAndDispatch reaps completions; retried next call
      sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) return;
    }
    *sqe = held_.front();
    held_.pop_front();
  }
}

absl::Status Ring::SubmitAndDispatch() {
  io_uring_cqe* cqe = nullptr;
  MoveHeldIntoRing();
  int err = io_uring_submit_and_wait(&ring_, held_.empty() ? 1 : 0);
  if (err < 0 && err != -EINTR && err != -EAGAIN && err != -EBUSY)
    return absl::ErrnoToStatus(-err, "io_uring_submit_and_wait");
  unsigned head;
  unsigned seen = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    const uint64_t data = io_uring_cqe_get_data64(cqe);
    if (data == kUntracked) continue;
    if (data == kSocketOption) {
      NoteSocketOptionFailure(cqe->res);
      continue;
    }
    auto* handler = reinterpret_cast<IoHandler*>(data & ~kTagMask);
    handler->OnCompletion(static_cast<unsigned>(data & kTagMask), cqe->res, cqe->flags);
  }
  io_uring_cq_advance(&ring_, seen);
  return absl::OkStatus();
}

}  // namespace skproxy
