#include "bpf/loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bpf/verdict.skel.h"

namespace skproxy::bpf {
namespace {

// libbpf's own chatter goes to stderr only for warnings; the verifier log is captured per program and
// put into the error instead, where the operator sees why the kernel path is off.
int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  return vfprintf(stderr, format, args);
}

absl::Status Errno(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err < 0 ? -err : err, what);
}

// bpf_skb_adjust_room removes at most this much per call on sk_skb (SKP_TRIM_CHUNK in the verdict).
constexpr uint64_t kTrimChunk = 4095;

uint32_t RoundUpToPowerOfTwo(uint64_t n) {
  uint64_t p = 1;
  while (p < n) p <<= 1;
  return static_cast<uint32_t>(p);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SockmapProgram>> SockmapProgram::Load(const LoadOptions& options) {
  libbpf_set_print(LibbpfPrint);
  if (options.workers == 0 || options.workers > SKP_MAX_WORKERS)
    return absl::InvalidArgumentError(absl::StrCat("workers must be 1..", SKP_MAX_WORKERS));
  skp_verdict_bpf* skel = skp_verdict_bpf::open();
  if (skel == nullptr) return Errno(errno, "opening the BPF object");
  std::unique_ptr<SockmapProgram> program(new SockmapProgram(skel));
  program->max_sockets_ = options.max_sockets;

  for (bpf_map* map : {skel->maps.skp_socks, skel->maps.skp_dirs, skel->maps.skp_users}) {
    if (int err = bpf_map__set_max_entries(map, options.max_sockets); err != 0)
      return Errno(err, absl::StrCat("sizing map ", bpf_map__name(map)));
  }
  // SO_RCVBUFFORCE doubles the value, and the window we advertise never exceeds the buffer: a
  // retransmitted head is at most that large.
  skel->rodata->trim_max_calls =
      static_cast<uint32_t>((2 * static_cast<uint64_t>(options.receive_buffer_bytes) + kTrimChunk - 1) / kTrimChunk);
  // The rings are created here, at the size the sockets need; the first one is the template the outer
  // map is created with (the kernel accepts only inner maps of the template's size).
  if (absl::Status s = program->CreateNoticeRings(options.workers, NoticeRingBytes(options.max_sockets)); !s.ok())
    return s;
  if (int err = bpf_map__set_inner_map_fd(skel->maps.skp_notices, program->rings_[0].get()); err != 0)
    return Errno(err, "sizing the notice rings");
  std::vector<char> log(1 << 20);
  bpf_program__set_log_buf(skel->progs.skp_verdict, log.data(), log.size());
  if (int err = skp_verdict_bpf::load(skel); err != 0) {
    std::string verifier(log.data());
    if (verifier.size() > 1500) verifier = "..." + verifier.substr(verifier.size() - 1500);
    return Errno(err, absl::StrCat("loading the verdict program",
                                   verifier.empty() ? "" : absl::StrCat(" (verifier: ", verifier, ")")));
  }
  bpf_program__set_log_buf(skel->progs.skp_verdict, nullptr, 0);
  if (absl::Status s = program->InstallNoticeRings(); !s.ok()) return s;
  if (bpf_prog_attach(bpf_program__fd(skel->progs.skp_verdict), program->socks_fd(),
                      BPF_SK_SKB_STREAM_VERDICT, 0) != 0)
    return Errno(errno, "attaching the stream verdict to the sockhash");
  program->attached_ = true;
  if (absl::Status s = program->MapUsers(options.max_sockets); !s.ok()) return s;
  // Without the iterator a demoted connection stays held in the map: slower, equally exact.
  program->leave_link_ = bpf_program__attach_iter(skel->progs.skp_leave, nullptr);
  if (program->leave_link_ == nullptr)
    std::fprintf(stderr, "skproxy: the leave pass is unavailable (%s): demoted connections stay in the sockhash\n",
                 std::strerror(errno));
  return program;
}

uint32_t SockmapProgram::NoticeRingBytes(uint32_t slots) {
  // A record is 16 bytes (8 of header). A direction has at most one notice outstanding per time user
  // space arms it, and it arms again only after it has handled the last: 2 per slot leaves room for a
  // worker that is slow to consume. Ring buffers are a power of two, at least a page.
  const uint64_t wanted = 2 * 16 * static_cast<uint64_t>(slots);
  return RoundUpToPowerOfTwo(std::max<uint64_t>(wanted, static_cast<uint64_t>(sysconf(_SC_PAGESIZE))));
}

absl::Status SockmapProgram::CreateNoticeRings(uint32_t workers, uint32_t ring_bytes) {
  for (uint32_t i = 0; i < workers; ++i) {
    UniqueFd ring(bpf_map_create(BPF_MAP_TYPE_RINGBUF, "skp_notice", 0, 0, ring_bytes, nullptr));
    if (!ring.valid()) return Errno(errno, "creating a notice ring");
    rings_.push_back(std::move(ring));
  }
  return absl::OkStatus();
}

absl::Status SockmapProgram::InstallNoticeRings() {
  const int outer = bpf_map__fd(skel_->maps.skp_notices);
  for (uint32_t i = 0; i < rings_.size(); ++i) {
    const int fd = rings_[i].get();
    if (bpf_map_update_elem(outer, &i, &fd, BPF_ANY) != 0) return Errno(errno, "installing a notice ring");
  }
  return absl::OkStatus();
}

absl::Status SockmapProgram::MapUsers(uint32_t slots) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  users_bytes_ = (sizeof(skp_user) * slots + page - 1) / page * page;
  void* mem = mmap(nullptr, users_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED,
                   bpf_map__fd(skel_->maps.skp_users), 0);
  if (mem == MAP_FAILED) return Errno(errno, "mapping skp_users");
  users_ = static_cast<skp_user*>(mem);
  absl::MutexLock lock(&slots_mu_);
  for (uint32_t slot = 0; slot < slots; ++slot) free_slots_.push_back(slot);
  return absl::OkStatus();
}

bool SockmapProgram::TakeSlots(ConnectionKeys& keys) {
  absl::MutexLock lock(&slots_mu_);
  if (free_slots_.size() < SKP_DIRECTIONS) return false;
  for (uint32_t& slot : keys.user_slots) {
    slot = free_slots_.front();
    free_slots_.pop_front();
    // Before the slot's state is in skp_dirs, so the verdict never sees the previous owner's counts.
    users_[slot] = skp_user{};
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  return true;
}

void SockmapProgram::ReturnSlots(ConnectionKeys& keys) {
  absl::MutexLock lock(&slots_mu_);
  for (uint32_t& slot : keys.user_slots) {
    if (slot == ConnectionKeys::kNoSlot) continue;
    free_slots_.push_back(slot);
    slot = ConnectionKeys::kNoSlot;
  }
}

SockmapProgram::~SockmapProgram() {
  if (users_ != nullptr) munmap(users_, users_bytes_);
  if (leave_link_ != nullptr) bpf_link__destroy(leave_link_);
  if (attached_)
    bpf_prog_detach2(bpf_program__fd(skel_->progs.skp_verdict), socks_fd(), BPF_SK_SKB_STREAM_VERDICT);
  skp_verdict_bpf::destroy(skel_);
}

int SockmapProgram::socks_fd() const { return bpf_map__fd(skel_->maps.skp_socks); }
int SockmapProgram::dirs_fd() const { return bpf_map__fd(skel_->maps.skp_dirs); }

absl::Status SockmapProgram::Insert(ConnectionKeys& keys, int downstream_fd, int upstream_fd, uint64_t gate_limit,
                                    uint32_t worker, Inserted* inserted, int* failed_errno) {
  *inserted = Inserted::kNone;
  auto fail = [&](int err, absl::string_view what) {
    if (failed_errno != nullptr) *failed_errno = err;
    return Errno(err, what);
  };
  // A key can still be held by a connection that is ending: a reset leg gives its port back while it is
  // still open (and in the sockhash until it is closed), and on loopback the kernel reuses a TIME_WAIT
  // tuple for a new connection. Such a connection stays out of the kernel path: taking the key over would
  // point the ending connection's verdict at this one's sockets (or this one's at the ending socket, where
  // the bytes are lost), and its release would delete this one's state. No socket that is open and
  // hashed can share the tuple of a live one, so what holds the key is always the older connection.
  for (const skp_key* key : {&keys.downstream, &keys.upstream}) {
    uint64_t cookie;
    if (bpf_map_lookup_elem(socks_fd(), key, &cookie) == 0)
      return fail(EEXIST, "a socket still held has this connection's addresses");
  }
  if (!TakeSlots(keys)) {
    if (failed_errno != nullptr) *failed_errno = ENOSPC;
    return absl::ResourceExhaustedError("no free skp_users slot: sockmap.max_entries is too small");
  }
  skp_dir down{};
  down.peer = keys.upstream;
  down.direction = SKP_DOWNSTREAM_TO_UPSTREAM;
  down.gate_limit = gate_limit;
  down.user_slot = keys.user_slots[SKP_DOWNSTREAM_TO_UPSTREAM];
  down.worker = worker;
  skp_dir up{};
  up.peer = keys.downstream;
  up.direction = SKP_UPSTREAM_TO_DOWNSTREAM;
  up.gate_limit = gate_limit;
  up.user_slot = keys.user_slots[SKP_UPSTREAM_TO_DOWNSTREAM];
  up.worker = worker;
  // NOEXIST for the same reason: the state of an ending connection on the same tuple is left alone, and
  // only what this call wrote is taken back.
  if (bpf_map_update_elem(dirs_fd(), &keys.downstream, &down, BPF_NOEXIST) != 0) {
    const int err = errno;
    ReturnSlots(keys);
    return fail(err, "adding connection state");
  }
  if (bpf_map_update_elem(dirs_fd(), &keys.upstream, &up, BPF_NOEXIST) != 0) {
    const int err = errno;
    DeleteOrLog(dirs_fd(), keys.downstream, "skp_dirs");
    ReturnSlots(keys);
    return fail(err, "adding connection state");
  }
  // Downstream first: a client that has already half-closed fails here (EOPNOTSUPP) before anything of
  // the connection is on the kernel path.
  uint64_t fd = downstream_fd;
  if (bpf_map_update_elem(socks_fd(), &keys.downstream, &fd, BPF_NOEXIST) != 0) {
    const int err = errno;
    RemoveState(keys);
    return fail(err, "inserting the downstream socket");
  }
  // From here the verdict may already have passed client bytes into the downstream's psock: taking the
  // downstream out again would drop them, so a failure leaves it in and says so.
  *inserted = Inserted::kDownstreamOnly;
  keys.sockets_in_map = 1;
  sockets_held_.fetch_add(1, std::memory_order_relaxed);
  fd = upstream_fd;
  if (bpf_map_update_elem(socks_fd(), &keys.upstream, &fd, BPF_NOEXIST) != 0)
    return fail(errno, "inserting the upstream socket");
  *inserted = Inserted::kBoth;
  keys.sockets_in_map = 2;
  sockets_held_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

void SockmapProgram::DeleteOrLog(int map_fd, const skp_key& key, const char* map) const {
  // ENOENT is normal: closing a socket takes it out of the sockhash by itself.
  if (bpf_map_delete_elem(map_fd, &key) == 0 || errno == ENOENT) return;
  if (!delete_error_logged_.exchange(true))
    std::fprintf(stderr, "skproxy: deleting from %s: %s (logged once)\n", map, std::strerror(errno));
}

void SockmapProgram::Remove(ConnectionKeys& keys) {
  for (const skp_key* key : {&keys.downstream, &keys.upstream}) DeleteOrLog(socks_fd(), *key, "skp_socks");
  RemoveState(keys);
}

void SockmapProgram::RemoveState(ConnectionKeys& keys) {
  for (const skp_key* key : {&keys.downstream, &keys.upstream}) DeleteOrLog(dirs_fd(), *key, "skp_dirs");
  ReturnSlots(keys);
  // Remove deleted the legs; otherwise the caller is about to close them, which takes them out.
  sockets_held_.fetch_sub(keys.sockets_in_map, std::memory_order_relaxed);
  keys.sockets_in_map = 0;
}

absl::Status SockmapProgram::AskToLeave(int fd) {
  const uint64_t mark = (static_cast<uint64_t>(gettid()) << 32) | SKP_LEAVE_ASKED;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.skp_leaving), &fd, &mark, BPF_ANY) != 0)
    return Errno(errno, "asking a leg to leave the sockhash");
  return absl::OkStatus();
}

absl::Status SockmapProgram::RunLeavePass() {
  UniqueFd iter(bpf_iter_create(bpf_link__fd(leave_link_)));
  if (!iter.valid()) return Errno(errno, "starting the leave pass");
  char sink[64];  // the program writes nothing: read() returns 0 once it has seen every socket
  for (;;) {
    const ssize_t n = read(iter.get(), sink, sizeof(sink));
    if (n == 0) return absl::OkStatus();
    if (n < 0 && errno != EINTR && errno != EAGAIN) return Errno(errno, "running the leave pass");
  }
}

bool SockmapProgram::Left(int fd, ConnectionKeys& keys) {
  uint64_t mark = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.skp_leaving), &fd, &mark) != 0 ||
      static_cast<uint32_t>(mark) != SKP_LEAVE_DONE)
    return false;
  ForgetLeave(fd);
  if (keys.sockets_in_map > 0) {
    --keys.sockets_in_map;
    sockets_held_.fetch_sub(1, std::memory_order_relaxed);
  }
  return true;
}

void SockmapProgram::ForgetLeave(int fd) { bpf_map_delete_elem(bpf_map__fd(skel_->maps.skp_leaving), &fd); }

absl::StatusOr<skp_dir> SockmapProgram::ReadDirection(const skp_key& source) const {
  skp_dir dir;
  if (bpf_map_lookup_elem(dirs_fd(), &source, &dir) != 0) return Errno(errno, "reading direction state");
  return dir;
}

uint64_t SockmapProgram::NoticesLost() const {
  const int cpus = libbpf_num_possible_cpus();
  std::vector<uint64_t> per_cpu(cpus > 0 ? cpus : 1);
  const int fd = bpf_map__fd(skel_->maps.skp_stats);
  uint64_t lost = 0;
  for (uint32_t d = 0; d < SKP_DIRECTIONS; ++d) {
    uint32_t index = d * SKP_STAT_COUNT + SKP_STAT_NOTICES_LOST;
    if (bpf_map_lookup_elem(fd, &index, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) lost += v;
  }
  return lost;
}

StatsSnapshot SockmapProgram::ReadStats() const {
  StatsSnapshot out{};
  const int cpus = libbpf_num_possible_cpus();
  std::vector<uint64_t> per_cpu(cpus > 0 ? cpus : 1);
  const int fd = bpf_map__fd(skel_->maps.skp_stats);
  for (uint32_t d = 0; d < SKP_DIRECTIONS; ++d) {
    for (uint32_t s = 0; s < SKP_STAT_COUNT; ++s) {
      uint32_t index = d * SKP_STAT_COUNT + s;
      if (bpf_map_lookup_elem(fd, &index, per_cpu.data()) != 0) continue;
      for (uint64_t v : per_cpu) out[d][s] += v;
    }
  }
  return out;
}

uint64_t SockmapProgram::CountSockets() const {
  uint64_t count = 0;
  skp_key key, next;
  const skp_key* prev = nullptr;
  while (bpf_map_get_next_key(socks_fd(), prev, &next) == 0 && count < (1ull << 32)) {
    ++count;
    key = next;
    prev = &key;
  }
  return count;
}

}  // namespace skproxy::bpf
