#include "proxy/connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proxy/access_log.h"
#include "proxy/config_json.h"
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
  if (worker_.access_log != nullptr) worker_.access_log->Write(AccessLogLine());
}

void Connection::ResetOnClose() {
  end_reason_ = "drain";
  if (path_ != nullptr) {
    path_->ResetOnClose();
    return;
  }
  const linger reset{1, 0};
  for (const UniqueFd* fd : {&client_, &upstream_})
    if (fd->valid()) setsockopt(fd->get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
}

std::string Connection::AccessLogLine() const {
  PathSwitch::Summary summary;
  if (path_ != nullptr) summary = path_->Summarize();
  const char* end = end_reason_;
  if (end == nullptr && path_ != nullptr) {
    end = summary.reset ? "reset" : summary.first_end == 0 ? "client_close" : summary.first_end == 1 ? "upstream_close" : "closed";
  }
  if (end == nullptr) end = "closed";
  const uint64_t* kernel = summary.kernel_bytes;
  const uint64_t* user = summary.user_bytes;
  return absl::StrCat(
      "{\"start\":", JsonString(absl::FormatTime(absl::RFC3339_full, start_, absl::UTCTimeZone())),
      ",\"duration_s\":", absl::ToDoubleSeconds(absl::Now() - start_),
      ",\"listener\":", JsonString(listener_.config->name),
      ",\"cluster\":", listener_.cluster != nullptr ? JsonString(listener_.cluster->config().name) : "null",
      ",\"endpoint\":", endpoint_ != nullptr ? JsonString(endpoint_->ToString()) : "null",
      ",\"client\":", client_address_.length > 0 ? JsonString(client_address_.ToString()) : "null",
      ",\"datapath\":", JsonString(path_ != nullptr ? PathKindName(summary.kind) : "none"),
      ",\"switches\":", summary.switches,
      ",\"bytes_downstream_to_upstream\":", kernel[0] + user[0],
      ",\"bytes_upstream_to_downstream\":", kernel[1] + user[1],
      ",\"kernel_bytes\":{\"downstream_to_upstream\":", kernel[0], ",\"upstream_to_downstream\":", kernel[1], "}",
      ",\"user_bytes\":{\"downstream_to_upstream\":", user[0], ",\"upstream_to_downstream\":", user[1], "}",
      ",\"end\":", JsonString(end), "}");
}

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
  end_reason_ = "connect_failed";
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
