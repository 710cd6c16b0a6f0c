#include "proxy/worker.h"

#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "proxy/socket_options.h"

namespace skproxy {
namespace {

constexpr unsigned kRingEntries = 4096;
// Provided buffers for the user-space path: only a direction with bytes in transit holds one.
constexpr unsigned kBufferCount = 1024;
constexpr unsigned kBufferSize = 64 * 1024;

}  // namespace

// Multishot accept on one listening socket; a new Connection per client.
class Worker::Acceptor final : public IoHandler {
 public:
  Acceptor(Worker& worker, int fd, ListenerContext& listener) : worker_(worker), fd_(fd), listener_(listener) {}

  void Arm() {
    io_uring_prep_multishot_accept(worker_.ring_->Prepare(this, kAccept), fd_, nullptr, nullptr,
                                   SOCK_NONBLOCK | SOCK_CLOEXEC);
  }

  void OnCompletion(unsigned tag, int res, unsigned cqe_flags) override {
    if (worker_.stopping_) return;
    if (tag == kRetry) {
      Arm();
      return;
    }
    if (res >= 0) {
      auto connection = std::make_unique<Connection>(worker_.context_, listener_, UniqueFd(res));
      Connection* raw = connection.get();
      worker_.connections_.emplace(raw, std::move(connection));
      raw->Start();
    }
    if (cqe_flags & IORING_CQE_F_MORE) return;
    if (res < 0) {
      // EMFILE, ENFILE, ENOMEM: back off briefly instead of spinning on the same error.
      std::fprintf(stderr, "skproxy: accept on listener %s: %s\n", listener_.config->name.c_str(), strerror(-res));
      io_uring_prep_timeout(worker_.ring_->Prepare(this, kRetry), &backoff_, 0, 0);
      return;
    }
    Arm();
  }

 private:
  enum Tag : unsigned { kAccept = 0, kRetry = 1 };
  Worker& worker_;
  int fd_;
  ListenerContext& listener_;
  __kernel_timespec backoff_{0, 10'000'000};
};

// Wakes the loop when Stop() writes the eventfd.
class Worker::Waker final : public IoHandler {
 public:
  Waker(Worker& worker, int fd) : worker_(worker), fd_(fd) {}
  void Arm() { io_uring_prep_read(worker_.ring_->Prepare(this, 0), fd_, &value_, sizeof(value_), 0); }
  void OnCompletion(unsigned, int, unsigned) override { worker_.stopping_ = true; }

 private:
  Worker& worker_;
  int fd_;
  uint64_t value_ = 0;
};

Worker::Worker(const config::Config& config, Metrics& metrics, bpf::SockmapProgram* sockmap, uint32_t index,
               std::string fallback_reason, std::vector<ListenerContext>& listeners)
    : config_(config), listeners_(listeners) {
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

absl::Status Worker::Bind() {
  for (const ListenerContext& listener : listeners_) {
    const SocketAddress& address = listener.config->address;
    UniqueFd fd(socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("listener ", listener.config->name, ": socket"));
    const int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (address.family() == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (context_.sockmap != nullptr) {
      // Accepted sockets inherit it, before their handshake: see Connection::ConnectNext.
      SetReceiveBufferOrWarnOnce(fd.get(), static_cast<int>(config_.sockmap.receive_buffer_bytes),
                                 absl::StrCat("listener ", listener.config->name));
      SetSendBufferOrWarnOnce(fd.get(), KernelPathSendBuffer(config_.sockmap), absl::StrCat("listener ", listener.config->name));
    }
    if (bind(fd.get(), address.sockaddr_ptr(), address.length) != 0)
      return absl::ErrnoToStatus(errno, absl::StrCat("listener ", listener.config->name, ": bind ", address.ToString()));
    if (listen(fd.get(), SOMAXCONN) != 0)
      return absl::ErrnoToStatus(errno, absl::StrCat("listener ", listener.config->name, ": listen"));
    listen_fds_.push_back(std::move(fd));
  }
  stop_event_.Reset(eventfd(0, EFD_CLOEXEC));
  if (!stop_event_.valid()) return absl::ErrnoToStatus(errno, "eventfd");
  return absl::OkStatus();
}

absl::Status Worker::Start() {
  thread_ = std::thread([this] { Run(); });
  started_.WaitForNotification();
  return start_status_;
}

void Worker::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  if (write(stop_event_.get(), &one, sizeof(one)) < 0) std::perror("skproxy: waking worker");
  thread_.join();
}

void Worker::Run() {
  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::Create(kRingEntries, kBufferCount, kBufferSize);
  if (!ring.ok()) {
    start_status_ = ring.status();
    started_.Notify();
    return;
  }
  ring_ = *std::move(ring);
  context_.ring = ring_.get();
  if (context_.sockmap != nullptr) {
    absl::StatusOr<std::unique_ptr<NoticeReader>> reader =
        NoticeReader::Create(*ring_, *context_.sockmap, context_.index, notice_targets_);
    if (!reader.ok()) {
      start_status_ = reader.status();
      started_.Notify();
      return;
    }
    notice_reader_ = *std::move(reader);
  }
  if (context_.promote && config_.sockmap.demote_below_bytes > 0) {
    switches_ = std::make_unique<PathSwitches>(*ring_, config_.sockmap.switch_interval);
    context_.switches = switches_.get();
  }
  for (size_t i = 0; i < listeners_.size(); ++i) {
    acceptors_.push_back(std::make_unique<Acceptor>(*this, listen_fds_[i].get(), listeners_[i]));
    acceptors_.back()->Arm();
  }
  waker_ = std::make_unique<Waker>(*this, stop_event_.get());
  waker_->Arm();
  started_.Notify();

  while (!stopping_) {
    if (absl::Status s = ring_->SubmitAndDispatch(); !s.ok()) {
      std::fprintf(stderr, "skproxy: worker stops: %s\n", s.ToString().c_str());
      break;
    }
    Reap();
  }
  // Tearing the ring down first cancels every operation, so no completion can reach a freed connection.
  ring_.reset();
  connections_.clear();
  context_.switches = nullptr;
  switches_.reset();
  notice_reader_.reset();
}

void Worker::Reap() {
  size_t kept = 0;
  for (Connection* connection : finished_) {
    if (connection->done()) {
      connections_.erase(connection);
    } else {
      finished_[kept++] = connection;
    }
  }
  finished_.resize(kept);
}

}  // namespace skproxy
