#include "proxy/worker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "proxy/buffer_pool_size.h"
#include "proxy/socket_options.h"

namespace skproxy {
namespace {

constexpr unsigned kRingEntries = 4096;

}  // namespace

absl::StatusOr<UniqueFd> BindListener(const config::Listener& listener, const config::Sockmap* kernel_path) {
  const SocketAddress& address = listener.address;
  UniqueFd fd(socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("listener ", listener.name, ": socket"));
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (address.family() == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  // Accepted sockets inherit TCP_NODELAY from the listener: one setsockopt here instead of one per
  // connection (on a VM each system call costs the proxy about a microsecond).
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (kernel_path != nullptr) {
    // Accepted sockets inherit it, before their handshake: see Connection::ConnectNext.
    SetReceiveBufferOrWarnOnce(fd.get(), static_cast<int>(kernel_path->receive_buffer_bytes),
                               absl::StrCat("listener ", listener.name));
    SetSendBufferOrWarnOnce(fd.get(), KernelPathSendBuffer(*kernel_path), absl::StrCat("listener ", listener.name));
  }
  if (bind(fd.get(), address.sockaddr_ptr(), address.length) != 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("listener ", listener.name, ": bind ", address.ToString()));
  if (listen(fd.get(), SOMAXCONN) != 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("listener ", listener.name, ": listen"));
  return fd;
}

// Multishot accept on one listening socket; a new Connection per client, under the listener's generation
// at the time of the accept.
class Worker::Acceptor final : public IoHandler {
 public:
  Acceptor(Worker& worker, Listening& listening) : worker_(worker), listening_(listening) {}

  void Arm() {
    io_uring_prep_multishot_accept(worker_.ring_->Prepare(this, kAccept), listening_.fd.get(), nullptr, nullptr,
                                   SOCK_NONBLOCK | SOCK_CLOEXEC);
  }

  void OnCompletion(unsigned tag, int res, unsigned cqe_flags) override {
    if (worker_.stopping_) {
      if (res >= 0 && tag == kAccept) close(res);
      return;
    }
    if (listening_.closed) {
      // Accepted before the listener went down: an established connection like the others, served.
      if (res >= 0 && tag == kAccept) Serve(res);
      // The last completion of a stopped listener: the worker may free it (and close its socket).
      if (tag == kRetry || !(cqe_flags & IORING_CQE_F_MORE)) listening_.ended = true;
      return;
    }
    if (tag == kRetry) {
      Arm();
      return;
    }
    if (res >= 0) Serve(res);
    if (cqe_flags & IORING_CQE_F_MORE) return;
    if (res < 0) {
      // EMFILE, ENFILE, ENOMEM: back off briefly instead of spinning on the same error.
      std::fprintf(stderr, "skproxy: accept on listener %s: %s\n", listening_.context->config->name.c_str(),
                   strerror(-res));
      io_uring_prep_timeout(worker_.ring_->Prepare(this, kRetry), &backoff_, 0, 0);
      return;
    }
    Arm();
  }

 private:
  void Serve(int fd) {
    auto connection = std::make_unique<Connection>(worker_.context_, listening_.context, UniqueFd(fd),
                                                   worker_.state_.NextConnectionId());
    Connection* raw = connection.get();
    worker_.connections_.emplace(raw, std::move(connection));
    worker_.connection_count_.store(worker_.connections_.size(), std::memory_order_relaxed);
    raw->Start();
  }

  enum Tag : unsigned { kAccept = 0, kRetry = 1 };
  Worker& worker_;
  Listening& listening_;
  __kernel_timespec backoff_{0, 10'000'000};
};

// Wakes the loop when Reload(), Drain() or Stop() writes the eventfd; what to do is in the worker's state.
class Worker::Waker final : public IoHandler {
 public:
  Waker(Worker& worker, int fd) : worker_(worker), fd_(fd) {}
  void Arm() { io_uring_prep_read(worker_.ring_->Prepare(this, 0), fd_, &value_, sizeof(value_), 0); }
  void OnCompletion(unsigned, int, unsigned) override {
    worker_.OnCommand();
    if (!worker_.stopping_) Arm();
  }

 private:
  Worker& worker_;
  int fd_;
  uint64_t value_ = 0;
};

// The per-connection timeouts that need no timer of their own: a listener's idle_timeout (close a connection
// that moved no byte for that long) and, on http listeners, a cluster's response_timeout (end the wait for an
// upstream that took no request byte and sent no response byte for that long: Connection::ExpireResponse).
// It samples each connection's progress counters every tick (a quarter of the shortest timeout served,
// 50 ms to 1 s): on the kernel path that is the verdict's per-direction counts in the shared mapping, so the
// bytes the kernel moves cost no wake-up and the sweep no syscall, and a request costs no timer. A timeout
// fires between its length and its length plus one tick after the last progress.
class Worker::TimeoutSweeper final : public IoHandler {
 public:
  explicit TimeoutSweeper(Worker& worker) : worker_(worker) {}

  // Arms the next tick from the listeners served now; none while no listener has an idle_timeout and no
  // http listener a cluster with a response_timeout (a reload that brings one calls this again).
  void Arm() {
    if (armed_ || worker_.stopping_) return;
    absl::Duration shortest = absl::InfiniteDuration();
    auto consider = [&](absl::Duration timeout) {
      if (timeout > absl::ZeroDuration()) shortest = std::min(shortest, timeout);
    };
    for (const std::unique_ptr<Listening>& listening : worker_.listening_) {
      const ListenerContext& listener = *listening->context;
      consider(listener.config->idle_timeout);
      if (listener.config->protocol != config::ListenerProtocol::kHttp) continue;
      if (listener.cluster != nullptr) consider(listener.cluster->config().response_timeout);
      for (const ClusterState* cluster : listener.route_clusters) consider(cluster->config().response_timeout);
    }
    if (shortest == absl::InfiniteDuration()) return;
    const absl::Duration tick = std::clamp(shortest / 4, absl::Milliseconds(50), absl::Seconds(1));
    tick_.tv_sec = absl::ToInt64Seconds(tick);
    tick_.tv_nsec = absl::ToInt64Nanoseconds(tick - absl::Seconds(tick_.tv_sec));
    io_uring_prep_timeout(worker_.ring_->Prepare(this, 0), &tick_, 0, 0);
    armed_ = true;
  }

  void OnCompletion(unsigned, int, unsigned) override {
    armed_ = false;
    if (worker_.stopping_) return;
    const absl::Time now = absl::Now();
    for (auto& [raw, connection] : worker_.connections_) {
      const absl::Duration timeout = connection->listener().config->idle_timeout;
      if (timeout > absl::ZeroDuration() && connection->CloseIfIdle(timeout, now)) {
        connection->listener().metrics.idle_timeouts->Increment();
        continue;
      }
      if (connection->listener().config->protocol == config::ListenerProtocol::kHttp) connection->ExpireResponse(now);
    }
    Arm();
  }

 private:
  Worker& worker_;
  __kernel_timespec tick_{};
  bool armed_ = false;
};

Worker::Worker(const config::Config& config, Metrics& metrics, bpf::SockmapProgram* sockmap, uint32_t index,
               std::string fallback_reason, std::vector<std::shared_ptr<ListenerContext>> listeners,
               ProcessState& state, AccessLog* access_log)
    : config_(config), initial_listeners_(std::move(listeners)), state_(state) {
  context_.access_log = access_log;
  context_.ring = nullptr;
  context_.metrics = &metrics;
  context_.sockmap = sockmap;
  context_.index = index;
  context_.notices = &notice_targets_;
  if (sockmap == nullptr && config.datapath == config::DatapathMode::kAuto)
    context_.fallback_reason = std::move(fallback_reason);
  context_.sockmap_config = &config.sockmap;
  context_.promote = sockmap != nullptr && config.datapath == config::DatapathMode::kAuto &&
                     config.sockmap.promote_after_bytes > 0;
  context_.finished = &finished_;
}

Worker::~Worker() { Stop(); }

absl::Status Worker::Bind(std::vector<UniqueFd> sockets) {
  if (sockets.size() != initial_listeners_.size())
    return absl::InternalError(absl::StrCat("worker ", context_.index, ": ", sockets.size(), " sockets for ",
                                            initial_listeners_.size(), " listeners"));
  for (size_t i = 0; i < sockets.size(); ++i) {
    auto listening = std::make_unique<Listening>();
    listening->context = initial_listeners_[i];
    listening->fd = std::move(sockets[i]);
    listening_.push_back(std::move(listening));
  }
  initial_listeners_.clear();
  stop_event_.Reset(eventfd(0, EFD_CLOEXEC));
  if (!stop_event_.valid()) return absl::ErrnoToStatus(errno, "eventfd");
  return absl::OkStatus();
}

absl::Status Worker::Start() {
  thread_ = std::thread([this] { Run(); });
  started_.WaitForNotification();
  return start_status_;
}

void Worker::Wake() {
  const uint64_t one = 1;
  if (write(stop_event_.get(), &one, sizeof(one)) < 0) std::perror("skproxy: waking worker");
}

void Worker::Reload(std::vector<ListenerUpdate> listeners) {
  auto applied = std::make_shared<absl::Notification>();
  {
    std::lock_guard<std::mutex> lock(reload_mu_);
    pending_reload_ = std::move(listeners);
    reload_pending_ = true;
    reload_applied_ = applied;
  }
  Wake();
  // A worker that exited (failed, or drained) applies nothing: do not wait for it.
  while (!applied->WaitForNotificationWithTimeout(absl::Milliseconds(50))) {
    if (exited_.HasBeenNotified()) return;
  }
}

std::vector<ConnectionInfo> Worker::Snapshot(uint64_t after, size_t limit, absl::Time deadline, size_t* total) {
  *total = 0;
  if (exited_.HasBeenNotified()) return {};
  auto request = std::make_shared<SnapshotRequest>();
  request->after = after;
  request->limit = limit;
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snapshot_requests_.push_back(request);
  }
  Wake();
  // A worker that exits meanwhile answers nothing; the request is shared, so leaving it unanswered is safe.
  while (!request->answered.WaitForNotificationWithDeadline(
      std::min(deadline, absl::Now() + absl::Milliseconds(50)))) {
    if (exited_.HasBeenNotified() || absl::Now() >= deadline) return {};
  }
  *total = request->total;
  return std::move(request->connections);
}

void Worker::AnswerSnapshots() {
  std::vector<std::shared_ptr<SnapshotRequest>> requests;
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    requests.swap(snapshot_requests_);
  }
  if (requests.empty()) return;
  const absl::Time now = absl::Now();
  for (const std::shared_ptr<SnapshotRequest>& request : requests) {
    // Only the page is described: a pass over the pointers, then the `limit` lowest ids.
    std::vector<const Connection*> page;
    for (const auto& [raw, connection] : connections_)
      if (raw->id() > request->after) page.push_back(raw);
    auto by_id = [](const Connection* a, const Connection* b) { return a->id() < b->id(); };
    if (page.size() > request->limit) {
      std::nth_element(page.begin(), page.begin() + static_cast<ptrdiff_t>(request->limit), page.end(), by_id);
      page.resize(request->limit);
    }
    std::sort(page.begin(), page.end(), by_id);
    request->connections.reserve(page.size());
    for (const Connection* connection : page) request->connections.push_back(connection->Describe(now));
    request->total = connections_.size();
    request->answered.Notify();
  }
}

void Worker::Drain() {
  int expected = kNone;
  command_.compare_exchange_strong(expected, kDrain);
  Wake();
}

bool Worker::WaitUntilExited(absl::Time deadline) {
  if (!thread_.joinable()) return true;
  return exited_.WaitForNotificationWithDeadline(deadline);
}

size_t Worker::Stop() {
  if (!thread_.joinable()) return 0;
  command_.store(kStop);
  Wake();
  thread_.join();
  return reset_;
}

void Worker::OnCommand() {
  const int command = command_.load();
  if (command >= kDrain && !draining_) {
    draining_ = true;
    CloseListeners();
  }
  if (command >= kStop) stopping_ = true;
  if (!stopping_) AnswerSnapshots();
  if (!draining_) ApplyReload();
}

void Worker::ApplyReload() {
  std::vector<ListenerUpdate> updates;
  std::shared_ptr<absl::Notification> applied;
  {
    std::lock_guard<std::mutex> lock(reload_mu_);
    if (!reload_pending_) return;
    reload_pending_ = false;
    updates = std::move(pending_reload_);
    applied = std::move(reload_applied_);
  }
  for (std::unique_ptr<Listening>& listening : listening_) {
    if (listening->closed) continue;
    ListenerUpdate* kept = nullptr;
    for (ListenerUpdate& update : updates) {
      if (!update.fd.valid() && update.context->config->name == listening->context->config->name) kept = &update;
    }
    if (kept != nullptr) {
      listening->context = kept->context;  // same socket, the new generation for the next accept
    } else {
      CloseListener(*listening);
    }
  }
  for (ListenerUpdate& update : updates) {
    if (!update.fd.valid()) continue;
    auto listening = std::make_unique<Listening>();
    listening->context = update.context;
    listening->fd = std::move(update.fd);
    listening_.push_back(std::move(listening));
    StartAccepting(*listening_.back());
  }
  timeout_sweeper_->Arm();
  applied->Notify();
}

void Worker::StartAccepting(Listening& listening) {
  listening.acceptor = std::make_unique<Acceptor>(*this, listening);
  listening.acceptor->Arm();
}

void Worker::CloseListener(Listening& listening) {
  if (listening.closed) return;
  listening.closed = true;
  // shutdown() on a listening socket stops it at once: it leaves the SO_REUSEPORT group (new connections
  // go to the other workers' sockets), the connections waiting in its queue are reset rather than left to
  // time out, and the multishot accept ends. The descriptor closes when the loop ends.
  shutdown(listening.fd.get(), SHUT_RDWR);
}

void Worker::CloseListeners() {
  for (std::unique_ptr<Listening>& listening : listening_) CloseListener(*listening);
}

bool Worker::FaultInjected() const {
  const char* fault = std::getenv("SKPROXY_FAULT_WORKER_RING");
  return fault != nullptr && std::to_string(context_.index) == fault;
}

void Worker::Run() {
  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(kRingEntries, kBufferPoolCount, kBufferPoolBufferSize);
  if (!ring.ok()) {
    start_status_ = ring.status();
    started_.Notify();
    exited_.Notify();
    return;
  }
  ring_ = *std::move(ring);
  context_.ring = ring_.get();
  ring_->CountSocketOptionFailuresIn(&context_.metrics->SocketOptionFailures());
  http_pool_ = std::make_unique<HttpPool>(*ring_);
  context_.http_pool = http_pool_.get();
  context_.upstream_options = DecideUpstreamOptions(
      *ring_, context_.sockmap != nullptr ? static_cast<int>(config_.sockmap.receive_buffer_bytes) : 0);
  if (context_.sockmap != nullptr) {
    absl::StatusOr<std::unique_ptr<NoticeReader>> reader =
        NoticeReader::Create(*ring_, *context_.sockmap, context_.index, notice_targets_);
    if (!reader.ok()) {
      start_status_ = reader.status();
      started_.Notify();
      exited_.Notify();
      return;
    }
    notice_reader_ = *std::move(reader);
  }
  if (context_.promote && config_.sockmap.demote_below_bytes > 0) {
    switches_ = std::make_unique<PathSwitches>(*ring_, config_.sockmap.switch_interval, context_.sockmap);
    context_.switches = switches_.get();
  }
  for (std::unique_ptr<Listening>& listening : listening_) StartAccepting(*listening);
  waker_ = std::make_unique<Waker>(*this, stop_event_.get());
  waker_->Arm();
  timeout_sweeper_ = std::make_unique<TimeoutSweeper>(*this);
  timeout_sweeper_->Arm();
  started_.Notify();

  Loop();

  // Whatever is left is cut short: its sockets close with RST, so neither peer mistakes it for complete.
  reset_ = connections_.size();
  for (auto& [raw, connection] : connections_) connection->ResetOnClose();
  // Tearing the ring down first cancels every operation, so no completion can reach a freed connection.
  ring_.reset();
  context_.http_pool = nullptr;
  http_pool_.reset();  // after the ring: no poll of an idle connection can complete any more
  connections_.clear();
  context_.switches = nullptr;
  switches_.reset();
  connection_count_.store(0);
  notice_reader_.reset();
  listening_.clear();
  exited_.Notify();
}

void Worker::Loop() {
  const bool fault = FaultInjected();
  while (!stopping_ && !(draining_ && connections_.empty())) {
    absl::Status s = fault ? absl::InternalError("io_uring_submit_and_wait: injected fault (SKPROXY_FAULT_WORKER_RING)")
                           : ring_->SubmitAndDispatch();
    if (!s.ok()) {
      // Without its ring this worker can move no byte and accept nobody: its listening sockets must not
      // stay in the SO_REUSEPORT group, where the kernel would keep queueing 1/N of new connections.
      CloseListeners();
      state_.WorkerFailed();
      std::fprintf(stderr,
                   "skproxy: worker %u failed: %s; its listeners are closed (new connections go to the other "
                   "workers), its %zu connections are reset, /ready reports not ready\n",
                   context_.index, s.ToString().c_str(), connections_.size());
      return;
    }
    Reap();
  }
}

void Worker::Reap() {
  size_t kept = 0;
  for (Connection* connection : finished_) {
    if (connection->done()) {
      connection->CloseLegsThroughRing();
      connections_.erase(connection);
    } else {
      finished_[kept++] = connection;
    }
  }
  finished_.resize(kept);
  // Listeners a reload removed, once the kernel holds no operation on them.
  listening_.erase(std::remove_if(listening_.begin(), listening_.end(),
                                  [](const std::unique_ptr<Listening>& l) { return l->ended; }),
                   listening_.end());
  connection_count_.store(connections_.size(), std::memory_order_relaxed);
}

}  // namespace skproxy
