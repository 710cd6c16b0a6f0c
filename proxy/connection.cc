#include "proxy/connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proxy/access_log.h"
#include "proxy/config_json.h"
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

Connection::Connection(WorkerContext& worker, std::shared_ptr<ListenerContext> listener, UniqueFd client)
    : TrackedHandler(*worker.ring),
      worker_(worker),
      listener_owner_(std::move(listener)),
      listener_(*listener_owner_),
      client_(std::move(client)) {
  SetNoDelay(client_.get());
  if (worker_.access_log != nullptr) {
    sockaddr_storage peer{};
    socklen_t length = sizeof(peer);
    if (getpeername(client_.get(), reinterpret_cast<sockaddr*>(&peer), &length) == 0)
      client_address_ = SocketAddressFrom(reinterpret_cast<sockaddr*>(&peer), length);
  }
}

Connection::~Connection() {
  if (counted_) Uncount();
  if (worker_.access_log != nullptr) worker_.access_log->Write(AccessLogLine());
}

std::string Connection::AccessLogLine() const {
  uint64_t kernel[2] = {0, 0}, user[2] = {0, 0};
  for (const Pipe* pipe : {retired_.get(), pipe_.get()}) {
    if (pipe == nullptr) continue;
    for (int d = 0; d < 2; ++d) {
      kernel[d] += pipe->kernel_bytes(d);
      user[d] += pipe->user_bytes(d);
    }
  }
  const char* end = end_reason_;
  if (end == nullptr && pipe_ != nullptr) {
    end = pipe_->reset() ? "reset" : pipe_->first_end() == 0 ? "client_close" : pipe_->first_end() == 1 ? "upstream_close" : "closed";
  }
  if (end == nullptr) end = "closed";
  const absl::Time now = absl::Now();
  return absl::StrCat(
      "{\"start\":", JsonString(absl::FormatTime(absl::RFC3339_full, start_, absl::UTCTimeZone())),
      ",\"duration_s\":", absl::ToDoubleSeconds(now - start_),
      ",\"listener\":", JsonString(listener_.config->name),
      ",\"cluster\":", JsonString(listener_.cluster->config().name),
      ",\"endpoint\":", endpoint_ != nullptr ? JsonString(endpoint_->ToString()) : "null",
      ",\"client\":", client_address_.length > 0 ? JsonString(client_address_.ToString()) : "null",
      ",\"datapath\":", JsonString(pipe_ != nullptr ? PathKindName(pipe_->kind()) : "none"),
      ",\"switches\":", switches_,
      ",\"bytes_downstream_to_upstream\":", kernel[0] + user[0],
      ",\"bytes_upstream_to_downstream\":", kernel[1] + user[1],
      ",\"kernel_bytes\":{\"downstream_to_upstream\":", kernel[0], ",\"upstream_to_downstream\":", kernel[1], "}",
      ",\"user_bytes\":{\"downstream_to_upstream\":", user[0], ",\"upstream_to_downstream\":", user[1], "}",
      ",\"end\":", JsonString(end), "}");
}

bool Connection::done() const {
  if (state_ == State::kPiping) return pipe_->done();
  return state_ == State::kClosed && inflight() == 0;
}

void Connection::ResetOnClose() {
  end_reason_ = "drain";
  if (pipe_ != nullptr) {
    pipe_->ResetOnClose();
    return;
  }
  const linger reset{1, 0};
  for (const UniqueFd* fd : {&client_, &upstream_})
    if (fd->valid()) setsockopt(fd->get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
}

void Connection::Start() {
  first_endpoint_ = listener_.cluster->NextStart();
  ConnectNext();
}

void Connection::ConnectNext() {
  const config::Cluster& cluster = listener_.cluster->config();
  while (attempts_ < cluster.endpoints.size()) {
    const SocketAddress& endpoint = cluster.endpoints[(first_endpoint_ + attempts_++) % cluster.endpoints.size()];
    endpoint_ = &endpoint;
    upstream_.Reset(socket(endpoint.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!upstream_.valid()) {
      const int error = errno;
      if (const char* reason = ResourceErrorReason(error)) {
        // The process (or the system) is out of descriptors or memory: no fault of the endpoint, and every
        // other endpoint would fail the same way. Count it as what it is and close the client now rather
        // than leave it waiting.
        worker_.metrics->ResourceErrors(reason).Increment();
        CloseClient();
        end_reason_ = "resource_exhausted";
        return;
      }
      listener_.cluster->CountConnectFailure();
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
  CloseClient();  // no endpoint answered
  end_reason_ = "connect_failed";
}

void Connection::Handle(unsigned tag, int res, unsigned cqe_flags) {
  if (tag == kConnect) {
    OnConnected(res);
  }
}

void Connection::OnConnected(int res) {
  if (res < 0) {  // refused, unreachable, or -ECANCELED when the linked timeout fired
    listener_.cluster->CountConnectFailure();
    upstream_.Reset();
    ConnectNext();
    return;
  }
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
  pipe_->Start();
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
  if (pipe_->kind() == PathKind::kSockmap) {
    worker_.metrics->DatapathSwitch("kernel").Increment();
    ++switches_;
  }
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
