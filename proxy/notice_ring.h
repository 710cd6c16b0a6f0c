// One worker's end of the verdict's notice ring. The kernel path does not wake user space per skb: a
// direction whose bytes the verdict redirects is not watched for POLLIN at all. When the gate passes
// bytes of such a direction to user space, or a connection has to be reset, the verdict posts a record
// naming the direction's slot to the ring of the worker that owns the connection; this reader polls the
// ring through the worker's io_uring and hands each record to the pipe registered for that slot.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "bpf/loader.h"
#include "proxy/ring.h"

struct ring_buffer;  // libbpf

namespace skproxy {

// Who handles the notices of a slot (a direction of a kernel-path connection of this worker).
class NoticeTarget {
 public:
  virtual void OnNotice(uint32_t slot, uint32_t kind) = 0;
  // A notice may have been lost (the ring was full): look at the direction as if one had come.
  virtual void OnSweep(uint32_t slot) = 0;

 protected:
  ~NoticeTarget() = default;
};

class NoticeTargets {
 public:
  void Add(uint32_t slot, NoticeTarget* target) { targets_[slot] = target; }
  void Remove(uint32_t slot) { targets_.erase(slot); }
  NoticeTarget* Find(uint32_t slot) const {
    auto it = targets_.find(slot);
    return it == targets_.end() ? nullptr : it->second;
  }
  template <typename F>
  void ForEach(F f) const {
    for (const auto& [slot, target] : targets_) f(slot, target);
  }

 private:
  absl::flat_hash_map<uint32_t, NoticeTarget*> targets_;
};

class NoticeReader final : public IoHandler {
 public:
  // Reads ring `index` of `program`. Arms its poll at once.
  static absl::StatusOr<std::unique_ptr<NoticeReader>> Create(Ring& ring, const bpf::SockmapProgram& program,
                                                              uint32_t index, NoticeTargets& targets);
  ~NoticeReader();
  NoticeReader(const NoticeReader&) = delete;
  NoticeReader& operator=(const NoticeReader&) = delete;

  void OnCompletion(unsigned tag, int res, unsigned cqe_flags) override;

 private:
  enum Tag : unsigned { kPoll = 0, kSweep = 1 };
  NoticeReader(Ring& ring, const bpf::SockmapProgram& program, int fd, NoticeTargets& targets)
      : ring_(ring), program_(program), fd_(fd), targets_(targets) {}
  static int OnRecord(void* self, void* data, size_t size);
  void ArmPoll();
  void ArmSweep();

  Ring& ring_;
  const bpf::SockmapProgram& program_;
  int fd_;
  NoticeTargets& targets_;
  ring_buffer* reader_ = nullptr;
  uint64_t lost_seen_ = 0;
  __kernel_timespec sweep_interval_{0, 100'000'000};
};

}  // namespace skproxy
