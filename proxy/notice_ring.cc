#include "proxy/notice_ring.h"

#include <bpf/libbpf.h>
#include <poll.h>

#include <cerrno>
#include <cstdio>

#include "bpf/skproxy.h"

namespace skproxy {

absl::StatusOr<std::unique_ptr<NoticeReader>> NoticeReader::Create(Ring& ring, const bpf::SockmapProgram& program,
                                                                   uint32_t index, NoticeTargets& targets) {
  const int fd = program.NoticeRingFd(index);
  if (fd < 0) return absl::InvalidArgumentError("no notice ring for this worker");
  std::unique_ptr<NoticeReader> reader(new NoticeReader(ring, program, fd, targets));
  reader->reader_ = ring_buffer__new(fd, &NoticeReader::OnRecord, reader.get(), nullptr);
  if (reader->reader_ == nullptr) return absl::ErrnoToStatus(errno, "reading the notice ring");
  reader->lost_seen_ = program.NoticesLost();
  reader->ArmPoll();
  reader->ArmSweep();
  return reader;
}

NoticeReader::~NoticeReader() {
  if (reader_ != nullptr) ring_buffer__free(reader_);
}

void NoticeReader::ArmPoll() { io_uring_prep_poll_multishot(ring_.Prepare(this, kPoll), fd_, POLLIN); }

void NoticeReader::ArmSweep() { io_uring_prep_timeout(ring_.Prepare(this, kSweep), &sweep_interval_, 0, 0); }

int NoticeReader::OnRecord(void* self, void* data, size_t size) {
  if (size < sizeof(skp_notice)) return 0;
  const auto* notice = static_cast<const skp_notice*>(data);
  auto* reader = static_cast<NoticeReader*>(self);
  // A slot with no target: a notice for a connection that has ended since.
  if (NoticeTarget* target = reader->targets_.Find(notice->slot)) target->OnNotice(notice->slot, notice->kind);
  return 0;
}

void NoticeReader::OnCompletion(unsigned tag, int res, unsigned cqe_flags) {
  if (tag == kSweep) {
    // Lost notices are counted by the verdict: only then is every direction looked at again.
    const uint64_t lost = program_.NoticesLost();
    if (lost != lost_seen_) {
      lost_seen_ = lost;
      targets_.ForEach([](uint32_t slot, NoticeTarget* target) { target->OnSweep(slot); });
    }
    if (res == -ETIME) ArmSweep();
    return;
  }
  if (res < 0 && res != -ECANCELED) std::fprintf(stderr, "skproxy: polling the notice ring: %s\n", strerror(-res));
  if (res >= 0) ring_buffer__consume(reader_);
  if (!(cqe_flags & IORING_CQE_F_MORE) && res != -ECANCELED) ArmPoll();
}

}  // namespace skproxy
