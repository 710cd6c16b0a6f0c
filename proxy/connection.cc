#include "proxy/connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "proxy/original_destination.h"
#include "proxy/socket_options.h"
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

Connection::~Connection() = default;

bool Connection::done() const {
  if (state_ == State::kPiping) return path_->done();
  return state_ == State::kClosed && inflight() == 0;
}

void Connection::Start() {
  if (listener_.config->transparent) {
    absl::StatusOr<SocketAddress> destination = OriginalDestination(client_.get());
    if (!destination.ok()) {  // not redirected: there is nowhere to go
      worker_.metrics->PipeError("original_destination").Increment();
      CloseClient();
      return;
    }
    original_destination_ = *destination;
  } else {
    first_endpoint_ = listener_.cluster->NextStart();
  }
  ConnectNext();
}

const SocketAddress* Connection::NextEndpoint() {
  if (listener_.config->transparent) return attempts_++ == 0 ? &original_destination_ : nullptr;
  const std::vector<SocketAddress>& endpoints = listener_.cluster->config().endpoints;
  if (attempts_ >= endpoints.size()) return nullptr;
  return &endpoints[(first_endpoint_ + attempts_++) % endpoints.size()];
}

absl::Duration Connection::ConnectTimeout() const {
  return listener_.config->transparent ? listener_.config->connect_timeout
                                       : listener_.cluster->config().connect_timeout;
}

void Connection::CountConnectFailure() {
  if (listener_.cluster != nullptr) {
    listener_.cluster->CountConnectFailure();
  } else {
    worker_.metrics->ConnectFailures("original_destination").Increment();
  }
}

void Connection::ConnectNext() {
  while (const SocketAddress* next = NextEndpoint()) {
    const SocketAddress& endpoint = *next;
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
      CountConnectFailure();
      continue;
    }
    if (const uint32_t mark = listener_.config->upstream_mark; mark != 0 && !SetMarkOrWarnOnce(upstream_.get(), mark)) {
      // Unmarked, the connection would be redirected back into skproxy by the sidecar rules.
      worker_.metrics->PipeError("so_mark").Increment();
      CloseClient();
      return;
    }
    SetNoDelay(upstream_.get());
    if (worker_.sockmap != nullptr) {
      // Set before connecting so the window scale offered in the SYN fits it. Below ~512 KiB the kernel
      // path crawls on zero-window probes whenever the gate passes bytes to user space.
      SetReceiveBufferOrWarnOnce(upstream_.get(), static_cast<int>(worker_.sockmap_config->receive_buffer_bytes),
                                 "upstream sockets");
      SetSendBufferOrWarnOnce(upstream_.get(), KernelPathSendBuffer(*worker_.sockmap_config), "upstream sockets");
    }
    const absl::Duration timeout = ConnectTimeout();
    connect_timeout_.tv_sec = absl::ToInt64Seconds(timeout);
    connect_timeout_.tv_nsec = absl::ToInt64Nanoseconds(timeout - absl::Seconds(connect_timeout_.tv_sec));
    io_uring_sqe* sqe = Submit(kConnect);
    io_uring_prep_connect(sqe, upstream_.get(), endpoint.sockaddr_ptr(), endpoint.length);
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_prep_link_timeout(ring_.PrepareUntracked(), &connect_timeout_, 0);
    return;
  }
  CloseClient();  // no endpoint answered
}

void Connection::Handle(unsigned tag, int res, unsigned cqe_flags) {
  if (tag == kConnect) {
    OnConnected(res);
  }
}

void Connection::OnConnected(int res) {
  if (res < 0) {  // refused, unreachable, or -ECANCELED when the linked timeout fired
    CountConnectFailure();
    upstream_.Reset();
    ConnectNext();
    return;
  }
  StartPipe();
}

void Connection::StartPipe() {
  state_ = State::kPiping;
  path_ = std::make_unique<PathSwitch>(worker_, listener_.metrics, std::move(client_), std::move(upstream_),
                                       [this] { worker_.finished->push_back(this); });
  path_->Start();
}

void Connection::CloseClient() {
  state_ = State::kClosed;
  client_.Reset();
  upstream_.Reset();
  worker_.finished->push_back(this);
}

}  // namespace skproxy
