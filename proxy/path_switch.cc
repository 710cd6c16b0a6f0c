#include "proxy/path_switch.h"

#include <cstdio>

#include "proxy/socket_options.h"
#include "proxy/sockmap_pipe.h"
#include "proxy/userspace_pipe.h"
#include "proxy/worker_context.h"

namespace skproxy {
namespace {

// How many messages (reads) a connection exchanges before a quiet worker moves it: a few exchanges
// do not pay for the insert and the delete.
constexpr uint32_t kQuietReads = 64;

}  // namespace

PathSwitch::PathSwitch(WorkerContext& worker, ListenerMetrics& listener_metrics, UniqueFd downstream,
                       UniqueFd upstream, std::function<void()> on_finish,
                       std::function<void(UniqueFd, bool)> no_response)
    : worker_(worker), listener_metrics_(listener_metrics), on_finish_(std::move(on_finish)) {
  if (worker_.sockmap != nullptr && !worker_.promote && !no_response) {
    pipe_ = KernelPipe(std::move(downstream), std::move(upstream));
    return;
  }
  if (worker_.sockmap == nullptr && !worker_.fallback_reason.empty())
    worker_.metrics->Fallback(worker_.fallback_reason).Increment();
  pipe_ = UserPipe(std::move(downstream), std::move(upstream), std::move(no_response));
}

PathSwitch::~PathSwitch() {
  Watch(false);
  if (counted_) Uncount();
}

void PathSwitch::Start(bool count_connection) {
  Count(pipe_->kind());
  if (count_connection) listener_metrics_.connections_total[static_cast<int>(counted_kind_)]->Increment();
  pipe_->Start();
}

std::unique_ptr<Pipe> PathSwitch::UserPipe(UniqueFd downstream, UniqueFd upstream,
                                           std::function<void(UniqueFd, bool)> no_response) {
  auto pipe = std::make_unique<UserspacePipe>(*worker_.ring, *worker_.metrics, std::move(downstream),
                                              std::move(upstream), on_finish_);
  if (no_response) pipe->AwaitResponse(std::move(no_response));
  if (worker_.sockmap != nullptr && !worker_.promote) {
    // datapath sockmap: only the wait for the upstream's first byte is spent here.
    UserspacePipe::Promotion promotion;
    promotion.on_response = true;
    pipe->HandOverWhen(std::move(promotion), [this](UniqueFd downstream, UniqueFd upstream) {
      Promote(std::move(downstream), std::move(upstream));
    });
  } else if (worker_.promote) {
    const config::Sockmap& sockmap = *worker_.sockmap_config;
    UserspacePipe::Promotion promotion{sockmap.promote_after_bytes, 0, nullptr};
    if (sockmap.quiet_worker_connections > 0) {
      promotion.quiet_reads = kQuietReads;
      promotion.quiet = [this, limit = sockmap.quiet_worker_connections] {
        return worker_.userspace_connections <= limit;
      };
    }
    pipe->HandOverWhen(std::move(promotion), [this](UniqueFd downstream, UniqueFd upstream) {
      Promote(std::move(downstream), std::move(upstream));
    });
  }
  return pipe;
}

std::unique_ptr<Pipe> PathSwitch::KernelPipe(UniqueFd downstream, UniqueFd upstream) {
  // The upstream's send buffer, left at its default until now (Connection::ConnectNext); the downstream
  // has it from the listener.
  if (worker_.promote) {
    SetSendBufferOrWarnOnce(upstream.get(), KernelPathSendBuffer(*worker_.sockmap_config), "upstream sockets");
  }
  SockmapPipe::InsertFailure failure;
  std::unique_ptr<SockmapPipe> pipe = SockmapPipe::Create(
      *worker_.ring, *worker_.metrics, *worker_.sockmap, *worker_.notices,
      {worker_.sockmap_config->gate_limit_bytes, worker_.index, worker_.sockmap_config->receive_buffer_bytes},
      std::move(downstream), std::move(upstream), on_finish_, &failure);
  if (!failure.reason.empty()) worker_.metrics->Fallback(failure.reason).Increment();
  if (pipe == nullptr) {
    // EBUSY: the socket left the sockhash a moment ago and its old psock is still being freed (a connection
    // that left and turned bulk again): it stays promotable, and its next bulk run tries again.
    if (worker_.promote && failure.reason == "insert_ebusy")
      return UserPipe(std::move(failure.downstream), std::move(failure.upstream), nullptr);
    return std::make_unique<UserspacePipe>(*worker_.ring, *worker_.metrics, std::move(failure.downstream),
                                           std::move(failure.upstream), on_finish_);
  }
  if (worker_.promote && worker_.switches != nullptr && pipe->both_in_map() &&
      worker_.sockmap_config->demote_below_bytes > 0) {
    kernel_ = pipe.get();
  }
  return pipe;
}

void PathSwitch::Promote(UniqueFd downstream, UniqueFd upstream) {
  // Called from inside the user-space pipe, which must outlive the call: it is retired, not destroyed.
  Retire(std::move(pipe_));
  pipe_ = KernelPipe(std::move(downstream), std::move(upstream));
  if (pipe_->kind() == PathKind::kSockmap) {
    worker_.metrics->DatapathSwitch("kernel").Increment();
    ++switches_;
  }
  if (kernel_ != nullptr) {
    last_ = Seen();
    Watch(true);
  }
  Count(pipe_->kind());
  pipe_->Start();
}

void PathSwitch::AfterLeavePass() {
  if (kernel_ != nullptr) kernel_->AfterLeavePass();
}

void PathSwitch::Demote(UniqueFd downstream, UniqueFd upstream) {
  // Called from inside the SockmapPipe, which must outlive the call: it is retired, not destroyed.
  kernel_ = nullptr;
  Watch(false);
  Retire(std::move(pipe_));
  pipe_ = UserPipe(std::move(downstream), std::move(upstream), nullptr);
  Count(pipe_->kind());
  pipe_->Start();
}

void PathSwitch::Retire(std::unique_ptr<Pipe> pipe) {
  if (retired_ != nullptr) {
    for (int d = 0; d < 2; ++d) {
      carried_kernel_[d] += retired_->kernel_bytes(d);
      carried_user_[d] += retired_->user_bytes(d);
    }
  }
  retired_ = std::move(pipe);
}

PathSwitch::Traffic PathSwitch::Seen() const {
  Traffic seen;
  const bpf::SockmapProgram& program = *worker_.sockmap;
  for (uint32_t slot : kernel_->keys().user_slots) {
    if (slot == bpf::ConnectionKeys::kNoSlot) continue;  // the pipe has ended
    seen.bytes += program.Redirected(slot) + program.Passed(slot);
    seen.skbs += program.RedirectedSkbs(slot) + program.PassedSkbs(slot);
  }
  return seen;
}

// The same limit as the quiet-worker promotion, over all of the worker's connections: where it would move a
// chatty connection into the kernel, no chatty connection is taken out, so the two rules cannot take turns.
bool PathSwitch::WorkerQuiet() const {
  const uint32_t limit = worker_.sockmap_config->quiet_worker_connections;
  return limit > 0 && worker_.userspace_connections + worker_.kernel_connections <= limit;
}

void PathSwitch::Sample() {
  if (kernel_ == nullptr || pipe_->done()) return;
  for (uint32_t slot : kernel_->keys().user_slots) {
    if (slot == bpf::ConnectionKeys::kNoSlot) return;  // the pipe is ending: its counts are gone
  }
  const Traffic now = Seen();
  const Traffic delta{now.bytes - last_.bytes, now.skbs - last_.skbs};
  last_ = now;
  const config::Sockmap& config = *worker_.sockmap_config;
  // Mean bytes per skb, without a division: small when bytes < demote_below * skbs.
  const bool small = delta.bytes < config.demote_below_bytes * delta.skbs;
  if (!kernel_->held()) {
    if (delta.skbs >= config.demote_after_messages && small && !WorkerQuiet() && kernel_->Hold(true)) {
      worker_.metrics->DatapathSwitch("user").Increment();
      ++switches_;
    }
  } else if ((delta.bytes >= config.promote_after_bytes && !small) ||
             (WorkerQuiet() && delta.skbs >= config.demote_after_messages)) {
    if (kernel_->Hold(false)) {
      worker_.metrics->DatapathSwitch("kernel").Increment();
      ++switches_;
    }
  } else if (!kernel_->leaving() && worker_.switches->leave_available()) {
    // Held for a whole interval and still not bulk: out of the map, so that its skbs no longer cost a
    // psock's work. The pipe may still decline (a leg ending); then it stays held and tries again.
    kernel_->BeginLeave([this] { worker_.switches->AskLeavePass(this); },
                        [this](UniqueFd downstream, UniqueFd upstream) {
                          Demote(std::move(downstream), std::move(upstream));
                        });
  }
  if (!pipe_->done()) Count(pipe_->kind());
}

void PathSwitch::Watch(bool on) {
  if (on == watched_ || worker_.switches == nullptr) return;
  watched_ = on;
  if (on) {
    worker_.switches->Add(this);
  } else {
    worker_.switches->Remove(this);
  }
}

void PathSwitch::Count(PathKind kind) {
  if (counted_ && kind == counted_kind_) return;
  if (counted_) Uncount();
  counted_kind_ = kind;
  counted_ = true;
  listener_metrics_.connections_active[static_cast<int>(counted_kind_)]->Increment();
  if (kind == PathKind::kUserspace) {
    ++worker_.userspace_connections;
  } else {
    ++worker_.kernel_connections;
  }
}

void PathSwitch::Uncount() {
  listener_metrics_.connections_active[static_cast<int>(counted_kind_)]->Decrement();
  if (counted_kind_ == PathKind::kUserspace) {
    --worker_.userspace_connections;
  } else {
    --worker_.kernel_connections;
  }
}

PathSwitches::PathSwitches(Ring& ring, absl::Duration interval, bpf::SockmapProgram* program)
    : ring_(ring), program_(program) {
  interval_.tv_sec = absl::ToInt64Seconds(interval);
  interval_.tv_nsec = absl::ToInt64Nanoseconds(interval - absl::Seconds(interval_.tv_sec));
  Arm();
}

void PathSwitches::Arm() { io_uring_prep_timeout(ring_.Prepare(this, kTimer), &interval_, 0, 0); }

void PathSwitches::AskLeavePass(PathSwitch* path) {
  leaving_.insert(path);
  if (pass_armed_) return;
  // A no-op through the ring: the pass runs once this round's completions have been handled, so every
  // connection that asks in the same round shares it.
  pass_armed_ = true;
  io_uring_prep_nop(ring_.Prepare(this, kLeavePass));
}

void PathSwitches::OnCompletion(unsigned tag, int res, unsigned) {
  if (tag == kLeavePass) {
    pass_armed_ = false;
    // Every connection that asked may have ended since: then there is nothing to walk the sockets for.
    if (leaving_.empty()) return;
    if (absl::Status s = program_->RunLeavePass(); !s.ok() && !pass_error_logged_) {
      pass_error_logged_ = true;  // the connections stay held: exact, only slower
      std::fprintf(stderr, "skproxy: %s (logged once per worker)\n", s.ToString().c_str());
    }
    absl::flat_hash_set<PathSwitch*> asked;
    asked.swap(leaving_);
    // A connection that leaves is removed from switches_ on the way (Demote); none is destroyed here,
    // since the worker reaps connections only between dispatches.
    for (PathSwitch* path : asked) path->AfterLeavePass();
    return;
  }
  // A sample may end a pipe (a reset found while copying) but never destroys a switch: the worker reaps
  // connections only between dispatches, so the set does not change under this loop.
  for (PathSwitch* path : switches_) path->Sample();
  if (res == -ETIME) Arm();
}

PathSwitch::Summary PathSwitch::Summarize() const {
  Summary summary;
  for (int d = 0; d < 2; ++d) {
    summary.kernel_bytes[d] = carried_kernel_[d];
    summary.user_bytes[d] = carried_user_[d];
  }
  for (const Pipe* pipe : {retired_.get(), pipe_.get()}) {
    if (pipe == nullptr) continue;
    for (int d = 0; d < 2; ++d) {
      summary.kernel_bytes[d] += pipe->kernel_bytes(d);
      summary.user_bytes[d] += pipe->user_bytes(d);
    }
  }
  summary.reset = pipe_->reset();
  summary.first_end = pipe_->first_end();
  summary.kind = pipe_->kind();
  summary.switches = switches_;
  return summary;
}

}  // namespace skproxy
