#include "proxy/connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "proxy/socket_options.h"
#include "proxy/sockmap_pipe.h"
#include "proxy/userspace_pipe.h"
#include "proxy/worker_context.h"

namespace skproxy {
namespace {

// The metric label for a socket() failure that is about resources rather than the endpoint; null otherwise.
const char* ResourceErrorReason(int error) {
  switch (error) {
    case EMFILE:
      return "emfile";
    case ENFILE:
      return "enfile";
    case ENOBUFS:
      return "enobufs";
    case ENOMEM:
      return "enomem";
    default:
      return nullptr;
  }
}

void SetNoDelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace

Connection::Connection(WorkerContext& worker, ListenerContext& listener, UniqueFd client)
    : TrackedHandler(*worker.ring), worker_(worker), listener_(listener), client_(std::move(client)) {
  SetNoDelay(client_.get());
}

Connection::~Connection() {
  if (counted_) Uncount();
  if (holds_endpoint_) cluster_->Release(tried_.back());
  if (cluster_admitted_) cluster_->Leave();
  if (listener_admitted_) listener_.limit->Release();
}

bool Connection::done() const {
  if (state_ == State::kPiping) return pipe_->done();
  return state_ == State::kClosed && inflight() == 0;
}

void Connection::Start() {
  // Envoy's behaviour past a listener's limit: accept and close at once (no byte read, nothing sent),
  // counted, rather than leave the client in the backlog.
  if (!listener_.limit->TryAcquire()) {
    listener_.metrics.rejected_listener_limit->Increment();
    CloseClient();
    return;
  }
  listener_admitted_ = true;
  ConnectTo(*listener_.cluster);
}

void Connection::ConnectTo(ClusterState& cluster) {
  cluster_ = &cluster;
  if (!cluster.Admit()) {
    listener_.metrics.rejected_cluster_limit->Increment();
    CloseClient();
    return;
  }
  cluster_admitted_ = true;
  if (cluster.needs_client_address()) {
    sockaddr_storage peer{};
    socklen_t length = sizeof(peer);
    if (getpeername(client_.get(), reinterpret_cast<sockaddr*>(&peer), &length) == 0)
      client_address_ = SocketAddressFrom(reinterpret_cast<sockaddr*>(&peer), length);
  }
  ConnectNext();
}

void Connection::ConnectNext() {
  const config::Cluster& cluster = cluster_->config();
  for (;;) {
    if (holds_endpoint_) {
      cluster_->Release(tried_.back());
      holds_endpoint_ = false;
    }
    std::optional<ClusterState::Choice> choice =
        cluster_->Pick(client_address_ ? &*client_address_ : nullptr, tried_);
    if (!choice) break;
    tried_.push_back(choice->index);
    holds_endpoint_ = true;
    // The kernel reads the address when the ring submits the connect, after this returns: keep it here.
    upstream_address_ = choice->address;
    const SocketAddress& endpoint = upstream_address_;
    upstream_.Reset(socket(endpoint.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!upstream_.valid()) {
      const int error = errno;
      if (const char* reason = ResourceErrorReason(error)) {
        // The process (or the system) is out of descriptors or memory: no fault of the endpoint, and every
        // other endpoint would fail the same way. Count it as what it is and close the client now rather
        // than leave it waiting.
        worker_.metrics->ResourceErrors(reason).Increment();
        CloseClient();
        return;
      }
      cluster_->OnConnectFailed(tried_.back());
      continue;
    }
    SetNoDelay(upstream_.get());
    if (worker_.sockmap != nullptr) {
      // Set before connecting so the window scale offered in the SYN fits it. Below ~512 KiB the kernel
      // path crawls on zero-window probes whenever the gate passes bytes to user space.
      SetReceiveBufferOrWarnOnce(upstream_.get(), static_cast<int>(worker_.sockmap_config->receive_buffer_bytes),
                                 "upstream sockets");
      SetSendBufferOrWarnOnce(upstream_.get(), KernelPathSendBuffer(*worker_.sockmap_config), "upstream sockets");
    }
    const absl::Duration timeout = cluster.connect_timeout;
    connect_timeout_.tv_sec = absl::ToInt64Seconds(timeout);
    connect_timeout_.tv_nsec = absl::ToInt64Nanoseconds(timeout - absl::Seconds(connect_timeout_.tv_sec));
    io_uring_sqe* sqe = Submit(kConnect);
    io_uring_prep_connect(sqe, upstream_.get(), endpoint.sockaddr_ptr(), endpoint.length);
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_prep_link_timeout(ring_.PrepareUntracked(), &connect_timeout_, 0);
    return;
  }
  // No endpoint answered, or none was usable to begin with.
  if (tried_.empty()) listener_.metrics.rejected_no_endpoint->Increment();
  CloseClient();
}

void Connection::Handle(unsigned tag, int res, unsigned cqe_flags) {
  if (tag == kConnect) {
    OnConnected(res);
  }
}

void Connection::OnConnected(int res) {
  if (res < 0) {  // refused, unreachable, or -ECANCELED when the linked timeout fired
    cluster_->OnConnectFailed(tried_.back());
    upstream_.Reset();
    ConnectNext();
    return;
  }
  cluster_->OnConnected(tried_.back());
  StartPipe();
}

void Connection::StartPipe() {
  state_ = State::kPiping;
  if (worker_.sockmap != nullptr && !worker_.promote) {
    pipe_ = KernelPipe(std::move(client_), std::move(upstream_));
  } else {
    if (worker_.sockmap == nullptr && !worker_.fallback_reason.empty())
      worker_.metrics->Fallback(worker_.fallback_reason).Increment();
    auto pipe = std::make_unique<UserspacePipe>(ring_, *worker_.metrics, std::move(client_), std::move(upstream_),
                                                [this] { worker_.finished->push_back(this); });
    if (worker_.promote) {
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
    pipe_ = std::move(pipe);
  }
  Count(pipe_->kind());
  listener_.metrics.connections_total[static_cast<int>(counted_kind_)]->Increment();
  last_active_ = absl::Now();
  pipe_->Start();
}

bool Connection::CloseIfIdle(absl::Duration timeout, absl::Time now) {
  if (state_ != State::kPiping || pipe_->finished()) return false;
  const uint64_t activity = pipe_->activity();
  if (activity != last_activity_) {
    last_activity_ = activity;
    last_active_ = now;
    return false;
  }
  if (now - last_active_ < timeout) return false;
  pipe_->CloseIdle();
  return true;
}

std::unique_ptr<Pipe> Connection::KernelPipe(UniqueFd downstream, UniqueFd upstream) {
  auto on_finish = [this] { worker_.finished->push_back(this); };
  SockmapPipe::InsertFailure failure;
  std::unique_ptr<Pipe> pipe = SockmapPipe::Create(
      ring_, *worker_.metrics, *worker_.sockmap, *worker_.notices,
      {worker_.sockmap_config->gate_limit_bytes, worker_.index}, std::move(downstream), std::move(upstream),
      on_finish, &failure);
  if (!failure.reason.empty()) worker_.metrics->Fallback(failure.reason).Increment();
  if (pipe == nullptr) {
    pipe = std::make_unique<UserspacePipe>(ring_, *worker_.metrics, std::move(failure.downstream),
                                           std::move(failure.upstream), on_finish);
  }
  return pipe;
}

void Connection::Promote(UniqueFd downstream, UniqueFd upstream) {
  // Called from inside the user-space pipe, which must outlive the call: it is retired, not destroyed.
  retired_ = std::move(pipe_);
  pipe_ = KernelPipe(std::move(downstream), std::move(upstream));
  last_activity_ = pipe_->activity();  // a new pipe counts from its own start
  if (pipe_->kind() == PathKind::kSockmap) worker_.metrics->DatapathSwitch("kernel").Increment();
  Count(pipe_->kind());
  pipe_->Start();
}

void Connection::Count(PathKind kind) {
  if (counted_ && kind == counted_kind_) return;
  if (counted_) Uncount();
  counted_kind_ = kind;
  counted_ = true;
  listener_.metrics.connections_active[static_cast<int>(counted_kind_)]->Increment();
  if (kind == PathKind::kUserspace) ++worker_.userspace_connections;
}

void Connection::Uncount() {
  listener_.metrics.connections_active[static_cast<int>(counted_kind_)]->Decrement();
  if (counted_kind_ == PathKind::kUserspace) --worker_.userspace_connections;
}

void Connection::CloseClient() {
  state_ = State::kClosed;
  client_.Reset();
  upstream_.Reset();
  worker_.finished->push_back(this);
}

}  // namespace skproxy
