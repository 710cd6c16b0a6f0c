#include "proxy/connection.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proxy/access_log.h"
#include "proxy/config_json.h"
#include "proxy/http_pool.h"
#include "proxy/inspect/http_request_framing.h"
#include "proxy/inspect/local_response.h"
#include "proxy/inspect/proxy_protocol.h"
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

// After a local response: how long and how much of the client's rest is read before the close.
constexpr absl::Duration kDrainTimeout = absl::Seconds(2);
constexpr size_t kMaxDrainBytes = 256 << 10;
constexpr size_t kDrainChunk = 4 << 10;

// The address the client connected to, as the socket sees it (for the PROXY header and inspection).
SocketAddress LocalAddress(int fd) {
  sockaddr_storage local{};
  socklen_t length = sizeof(local);
  getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length);
  return SocketAddressFrom(reinterpret_cast<sockaddr*>(&local), length);
}

}  // namespace

Connection::Connection(WorkerContext& worker, std::shared_ptr<ListenerContext> listener, UniqueFd client,
                       uint64_t id)
    : TrackedHandler(*worker.ring),
      worker_(worker),
      id_(id),
      listener_owner_(std::move(listener)),
      listener_(*listener_owner_),
      client_(std::move(client)) {
  // TCP_NODELAY comes with the accepted socket, from its listener (BindListener).
  // The access log is written after the legs are closed: read the peer while the socket is open.
  if (worker_.access_log != nullptr) ClientPeer();
}

int Connection::ClientSocket() const {
  if (client_.valid()) return client_.get();
  if (state_ == State::kPiping) return path_->downstream_fd();
  return -1;
}

const SocketAddress& Connection::ClientPeer() const {
  // The multishot accept gives no address. Read on first use (access log, inspection, PROXY header, hash,
  // GET /connections): a plain tcp listener's connection that nobody asks about skips the system call.
  if (!client_peer_read_) {
    const int fd = ClientSocket();
    if (fd < 0) return client_peer_;
    client_peer_read_ = true;
    sockaddr_storage peer{};
    socklen_t length = sizeof(peer);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) == 0)
      client_peer_ = SocketAddressFrom(reinterpret_cast<sockaddr*>(&peer), length);
  }
  return client_peer_;
}

Connection::~Connection() {
  if (worker_.access_log != nullptr) worker_.access_log->Write(AccessLogLine());
  // path_ goes first (members are destroyed after this body): the endpoint and limits are given back here,
  // whatever state the connection ended in.
  if (held_ != nullptr) cluster_->Release(*held_);
  if (cluster_admitted_) cluster_->Leave();
  if (listener_admitted_) listener_.limit->Release();
}

void Connection::ResetOnClose() {
  end_reason_ = "drain";
  if (session_ != nullptr) session_->ResetOnClose();
  if (state_ == State::kPiping) {
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
  if (end == nullptr && path_ == nullptr && session_ != nullptr) end = session_->end_reason();
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
      ",\"route\":", route_ != nullptr ? JsonString(*route_) : "null",
      ",\"cluster\":", cluster_ != nullptr ? JsonString(cluster_->config().name) : "null",
      ",\"endpoint\":", endpoint_ != nullptr ? JsonString(endpoint_->ToString()) : "null",
      ",\"upstream\":", upstream_connected_ ? JsonString(upstream_connected_->ToString()) : "null",
      ",\"client\":", client_peer_.length > 0 ? JsonString(client_peer_.ToString()) : "null",
      ",\"datapath\":", JsonString(path_ != nullptr ? PathKindName(summary.kind) : session_ != nullptr ? "http_pool" : "none"),
      ",\"switches\":", summary.switches,
      ",\"bytes_downstream_to_upstream\":", kernel[0] + user[0],
      ",\"bytes_upstream_to_downstream\":", kernel[1] + user[1],
      ",\"kernel_bytes\":{\"downstream_to_upstream\":", kernel[0], ",\"upstream_to_downstream\":", kernel[1], "}",
      ",\"user_bytes\":{\"downstream_to_upstream\":", user[0], ",\"upstream_to_downstream\":", user[1], "}",
      ",\"end\":", JsonString(end), "}");
}

ConnectionInfo Connection::Describe(absl::Time now) const {
  ConnectionInfo info;
  info.id = id_;
  info.worker = worker_.index;
  info.listener = listener_.config->name;
  if (route_ != nullptr) info.route = *route_;
  if (cluster_ != nullptr) info.cluster = cluster_->config().name;
  info.client = ClientPeer();
  if (endpoint_ != nullptr) info.upstream = *endpoint_;
  switch (state_) {
    case State::kInspecting: info.state = "inspecting"; break;
    case State::kConnecting: info.state = "connecting"; break;
    case State::kForwarding: info.state = "forwarding"; break;
    case State::kPiping: info.state = path_->finished() ? "closing" : "piping"; break;
    case State::kPooling: info.state = session_->finished() ? "closing" : "pooling"; break;
    case State::kResponding: info.state = "responding"; break;
    case State::kClosed: info.state = "closing"; break;
  }
  info.datapath = "none";
  if (path_ != nullptr) {
    const PathSwitch::Summary summary = path_->Summarize();
    info.datapath = PathKindName(summary.kind);
    info.switches = summary.switches;
    for (int d = 0; d < 2; ++d) {
      info.kernel_bytes[d] = summary.kernel_bytes[d];
      info.user_bytes[d] = summary.user_bytes[d];
    }
    info.operations = path_->Operations();
  }
  info.age = now - start_;
  return info;
}

void Connection::CloseLegsThroughRing() {
  if (state_ == State::kPiping) path_->CloseLegsThroughRing();
}

bool Connection::done() const {
  if (state_ == State::kPiping) return path_->done() && (session_ == nullptr || session_->done());
  if (state_ == State::kPooling) return session_->done();
  return state_ == State::kClosed && inflight() == 0 && (session_ == nullptr || session_->done());
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
  if (listener_.config->transparent) {
    absl::StatusOr<SocketAddress> destination = OriginalDestination(client_.get());
    if (!destination.ok()) {  // not redirected: there is nowhere to go
      worker_.metrics->PipeError("original_destination").Increment();
      CloseClient();
      return;
    }
    original_destination_ = *destination;
    ConnectNext();
    return;
  }
  if (listener_.inspects) {
    StartInspection();
    return;
  }
  ConnectTo(*listener_.cluster);
}

void Connection::SetTimeout(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  timeout_.tv_sec = absl::ToInt64Seconds(d);
  timeout_.tv_nsec = absl::ToInt64Nanoseconds(d - absl::Seconds(timeout_.tv_sec));
}

void Connection::StartInspection() {
  state_ = State::kInspecting;
  const config::Listener& listener = *listener_.config;
  inspection_ = std::make_unique<Inspection>(listener, *listener_.routes, ClientPeer(),
                                             LocalAddress(client_.get()));
  buffer_.resize(listener.inspect.max_bytes);
  deadline_ = absl::Now() + listener.inspect.timeout;
  ReceiveMore();
}

void Connection::ReceiveMore() {
  SetTimeout(deadline_ - absl::Now());
  io_uring_sqe* sqe = Submit(kInspectRecv);
  io_uring_prep_recv(sqe, client_.get(), buffer_.data() + received_, buffer_.size() - received_, 0);
  sqe->flags |= IOSQE_IO_LINK;
  io_uring_prep_link_timeout(ring_.PrepareUntracked(), &timeout_, 0);
}

void Connection::OnInspectReceived(int res) {
  if (res == -ECANCELED || res == -ETIME) {  // the linked timeout: inspect.timeout passed
    Decide(inspection_->Timeout());
    return;
  }
  if (res <= 0) {  // EOF or reset before we could route: nobody to answer
    Decide(inspection_->ClientClosed());
    return;
  }
  received_ += static_cast<size_t>(res);
  const Inspection::Outcome outcome = inspection_->Feed(std::string_view(buffer_.data(), received_));
  if (outcome.kind == Inspection::Outcome::Kind::kNeedMore) {
    ReceiveMore();
    return;
  }
  Decide(outcome);
}

void Connection::Decide(const Inspection::Outcome& outcome) {
  if (outcome.kind == Inspection::Outcome::Kind::kRejected) {
    Reject(outcome.reason, outcome.status);
    return;
  }
  ClusterState* cluster = nullptr;
  size_t decision = listener_.route_decisions.size() - 1;  // "none"
  if (outcome.route >= 0) {
    cluster = listener_.route_clusters[static_cast<size_t>(outcome.route)];
    decision = static_cast<size_t>(outcome.route);
    route_ = &listener_.config->routes[decision].name;
  } else if (outcome.route == RouteTable::kDefault) {
    cluster = listener_.cluster;
    decision = listener_.route_decisions.size() - 2;
    static const std::string kDefaultRoute = "default";
    route_ = &kDefaultRoute;
  }
  listener_.route_decisions[decision]->Increment();
  if (cluster == nullptr) {
    Reject("no_route", 404);
    return;
  }
  if (!cluster->HasHealthyEndpoint()) {
    Reject("no_healthy_endpoint", 503);
    return;
  }
  if (StartSession(*cluster)) return;
  forward_ = inspection_->Forward(std::string_view(buffer_.data(), received_));
  ConnectTo(*cluster);
}

bool Connection::StartSession(ClusterState& cluster) {
  if (listener_.config->protocol != config::ListenerProtocol::kHttp || !cluster.config().http_keepalive.enabled() ||
      worker_.http_pool == nullptr)
    return false;
  const size_t offset = inspection_->client_offset();
  const std::string_view client(buffer_.data() + offset, received_ - offset);
  if (!FrameRequest(client, inspection_->http_head()).poolable) return false;
  state_ = State::kPooling;
  cluster_ = &cluster;
  buffer_.erase(0, offset);
  buffer_.resize(listener_.config->inspect.max_bytes);  // the limit for every later head as well
  session_ = std::make_unique<HttpSession>(
      worker_, listener_, std::move(client_), std::move(buffer_), received_ - offset, inspection_->client(), cluster,
      [this] { worker_.finished->push_back(this); },
      [this](HttpSession::Handover handover) { OnSessionHandover(std::move(handover)); });
  buffer_ = std::string();
  received_ = 0;
  last_active_ = absl::Now();
  session_->Start();
  return true;
}

void Connection::OnSessionHandover(HttpSession::Handover handover) {
  client_ = std::move(handover.client);
  if (handover.status != 0) {
    if (handover.reason != nullptr) {
      Reject(handover.reason, handover.status);
    } else {
      Respond(handover.status);
    }
    return;
  }
  // A request the pool does not carry (Upgrade, chunked body, ...): spliced from here on, as without a pool.
  forward_ = std::move(handover.forward);
  ConnectTo(*handover.cluster);
}

void Connection::Reject(const char* reason, int status) {
  worker_.metrics->InspectionFailure(listener_.config->name, reason).Increment();
  if (status != 0 && listener_.config->protocol == config::ListenerProtocol::kHttp) {
    Respond(status);
    return;
  }
  CloseClient();
}

void Connection::ConnectTo(ClusterState& cluster) {
  state_ = State::kConnecting;
  cluster_ = &cluster;
  if (!cluster.Admit()) {
    listener_.metrics.rejected_cluster_limit->Increment();
    FailUpstream();
    return;
  }
  cluster_admitted_ = true;
  // The client as the PROXY header and the consistent hashes see it: the address a PROXY header in front
  // gave, when the listener required one, else the socket's peer.
  const config::ProxyProtocolVersion proxy = cluster.config().proxy_protocol;
  if (proxy != config::ProxyProtocolVersion::kNone || cluster.needs_client_address()) {
    SocketAddress client, local;
    if (inspection_) {
      client = inspection_->client();
      local = inspection_->local();
    } else {
      client = ClientPeer();
      local = LocalAddress(client_.get());
    }
    if (cluster.needs_client_address() && client.length > 0) client_address_ = client;
    if (proxy != config::ProxyProtocolVersion::kNone) forward_.insert(0, BuildProxyHeader(proxy, client, local));
  }
  ConnectNext();
}

const SocketAddress* Connection::NextEndpoint() {
  if (cluster_ == nullptr) {  // transparent: the original destination, once
    if (original_tried_) return nullptr;
    original_tried_ = true;
    upstream_address_ = original_destination_;
    return &upstream_address_;
  }
  if (held_ != nullptr) {
    cluster_->Release(*held_);
    held_ = nullptr;
  }
  held_ = cluster_->Pick(client_address_ ? &*client_address_ : nullptr, tried_);
  if (held_ == nullptr) return nullptr;
  tried_.push_back(held_.get());
  // The kernel reads the address when the ring submits the connect, after ConnectNext returns: keep it here.
  upstream_address_ = held_->address();
  return &upstream_address_;
}

absl::Duration Connection::ConnectTimeout() const {
  return cluster_ == nullptr ? listener_.config->connect_timeout : cluster_->config().connect_timeout;
}

void Connection::CountConnectFailure() {
  if (cluster_ != nullptr) {
    cluster_->OnConnectFailed(*held_);
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
    // The send buffer matters only in the sockhash: with datapath auto it is set when the connection is
    // promoted (PathSwitch::KernelPipe), so a short connection saves the syscall.
    if (worker_.sockmap != nullptr && !worker_.promote)
      SetSendBufferOrWarnOnce(upstream_.get(), KernelPathSendBuffer(*worker_.sockmap_config), "upstream sockets");
    // Linked ahead of the connect: nothing may be prepared in between.
    SetUpstreamOptions(ring_, worker_.upstream_options, upstream_.get(), /*kernel_path=*/true);
    const absl::Duration timeout = ConnectTimeout();
    connect_timeout_.tv_sec = absl::ToInt64Seconds(timeout);
    connect_timeout_.tv_nsec = absl::ToInt64Nanoseconds(timeout - absl::Seconds(connect_timeout_.tv_sec));
    connect_started_ = absl::Now();
    io_uring_sqe* sqe = Submit(kConnect);
    io_uring_prep_connect(sqe, upstream_.get(), endpoint.sockaddr_ptr(), endpoint.length);
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_prep_link_timeout(ring_.PrepareUntracked(), &connect_timeout_, 0);
    return;
  }
  // No endpoint answered, or none was usable to begin with.
  if (cluster_ != nullptr && tried_.empty()) listener_.metrics.rejected_no_endpoint->Increment();
  end_reason_ = "connect_failed";
  FailUpstream();
}

void Connection::FailUpstream() {
  // HTTP clients learn why: 503 when the cluster had no endpoint to offer (none healthy, or its
  // max_connections reached), 504 when the last endpoint tried did not answer in time, else 502 (refused,
  // unreachable, or reset before skproxy could pass the request on).
  if (inspection_ && listener_.config->protocol == config::ListenerProtocol::kHttp) {
    upstream_.Reset();
    Respond(tried_.empty() ? 503 : last_connect_timed_out_ ? 504 : 502);
    return;
  }
  CloseClient();
}

void Connection::Handle(unsigned tag, int res, unsigned cqe_flags) {
  switch (tag) {
    case kConnect:
      OnConnected(res);
      break;
    case kInspectRecv:
      OnInspectReceived(res);
      break;
    case kForwardSend:
      OnForwardSent(res);
      break;
    case kResponseSend:
      OnResponseSent(res);
      break;
    case kDrain:
      if (res > 0 && (drained_ += static_cast<size_t>(res)) < kMaxDrainBytes) {
        Drain();
      } else {
        CloseClient();
      }
      break;
  }
}

void Connection::OnConnected(int res) {
  if (res < 0) {  // refused, unreachable, or -ECANCELED when the linked timeout fired
    CountConnectFailure();
    last_connect_timed_out_ = res == -ECANCELED || res == -ETIME || res == -ETIMEDOUT;
    upstream_.Reset();
    ConnectNext();
    return;
  }
  const absl::Duration connect_time = absl::Now() - connect_started_;
  if (cluster_ != nullptr) {
    cluster_->OnConnected(*held_, connect_time);
  } else {
    worker_.metrics->ConnectDuration("original_destination").Observe(absl::ToDoubleSeconds(connect_time));
  }
  upstream_connected_ = upstream_address_;
  if (!forward_.empty()) {
    state_ = State::kForwarding;
    OnForwardSent(0);
    return;
  }
  StartPipe();
}

void Connection::OnForwardSent(int res) {
  if (res < 0) {  // the upstream went away before it had the request
    FailUpstream();
    return;
  }
  forwarded_ += static_cast<size_t>(res);
  if (forwarded_ < forward_.size()) {
    io_uring_prep_send(Submit(kForwardSend), upstream_.get(), forward_.data() + forwarded_,
                       forward_.size() - forwarded_, MSG_NOSIGNAL | MSG_WAITALL);
    return;
  }
  // Every byte inspected is with the upstream: what the client sends next follows on the pipe.
  forward_ = std::string();
  buffer_ = std::string();
  inspection_.reset();
  StartPipe();
}

void Connection::Respond(int status) {
  state_ = State::kResponding;
  worker_.metrics->LocalResponse(listener_.config->name, status).Increment();
  response_ = LocalResponse(status);
  response_sent_ = 0;
  OnResponseSent(0);
}

void Connection::OnResponseSent(int res) {
  if (res < 0) {
    CloseClient();
    return;
  }
  response_sent_ += static_cast<size_t>(res);
  if (response_sent_ < response_.size()) {
    io_uring_prep_send(Submit(kResponseSend), client_.get(), response_.data() + response_sent_,
                       response_.size() - response_sent_, MSG_NOSIGNAL | MSG_WAITALL);
    return;
  }
  // Our FIN after the response; then read what the client still sends until it closes too (bounded in
  // bytes and time), because closing with unread bytes would send a RST that can discard the response
  // before the client read it.
  shutdown(client_.get(), SHUT_WR);
  if (buffer_.empty()) buffer_.resize(kDrainChunk);
  deadline_ = absl::Now() + kDrainTimeout;
  Drain();
}

void Connection::Drain() {
  SetTimeout(deadline_ - absl::Now());
  io_uring_sqe* sqe = Submit(kDrain);
  io_uring_prep_recv(sqe, client_.get(), buffer_.data(), buffer_.size(), 0);
  sqe->flags |= IOSQE_IO_LINK;
  io_uring_prep_link_timeout(ring_.PrepareUntracked(), &timeout_, 0);
}

void Connection::StartPipe() {
  state_ = State::kPiping;
  std::function<void(UniqueFd, bool)> no_response;
  if (listener_.config->protocol == config::ListenerProtocol::kHttp) {
    no_response = [this](UniqueFd client, bool timed_out) { OnNoResponse(std::move(client), timed_out); };
  }
  path_ = std::make_unique<PathSwitch>(worker_, listener_.metrics, std::move(client_), std::move(upstream_),
                                       [this] { worker_.finished->push_back(this); }, std::move(no_response));
  last_active_ = absl::Now();
  // A client connection that began as an HttpSession was counted there.
  path_->Start(/*count_connection=*/session_ == nullptr);
}

void Connection::OnNoResponse(UniqueFd client, bool timed_out) {
  // HAProxy's answer when the server closes or resets without a byte of response ("SH" termination):
  // the request head was written, so the client is owed a status, and no byte of a response reached it.
  // The pipe that called this is spent; it stays in path_ until the connection goes. A response_timeout
  // that passed is HAProxy's "sH" (and Envoy's route timeout): 504.
  client_ = std::move(client);
  if (timed_out) {
    cluster_->metrics().response_timeouts_before->Increment();
    end_reason_ = "response_timeout";
    Respond(504);
    return;
  }
  end_reason_ = "upstream_no_response";
  Respond(502);
}

bool Connection::ExpireResponse(absl::Time now) {
  // The wait for the upstream, and whether anything moved since the last sweep: a pooled request's upstream
  // send or receive in flight (each one submitted counts as progress), or a spliced connection before the
  // upstream's first byte (any byte moved counts).
  bool waiting = false;
  uint64_t progress = 0;
  absl::Duration timeout;
  if (state_ == State::kPooling && !session_->finished()) {
    waiting = session_->awaiting_upstream();
    progress = session_->upstream_progress();
    timeout = session_->cluster().config().response_timeout;
  } else if (state_ == State::kPiping && !path_->finished() && cluster_ != nullptr) {
    waiting = path_->awaiting_response();
    progress = path_->activity();
    timeout = cluster_->config().response_timeout;
  }
  if (!waiting || timeout <= absl::ZeroDuration()) {
    response_watched_ = false;
    return false;
  }
  if (!response_watched_ || progress != response_progress_) {
    response_watched_ = true;
    response_progress_ = progress;
    response_since_ = now;
    return false;
  }
  if (now - response_since_ < timeout) return false;
  response_watched_ = false;
  if (state_ == State::kPooling) {
    session_->TimeOutResponse();
  } else {
    path_->TimeOutResponse();
  }
  return true;
}

bool Connection::CloseIfIdle(absl::Duration timeout, absl::Time now) {
  if (state_ == State::kPooling ? session_->finished() : state_ != State::kPiping || path_->finished()) return false;
  // A move between the paths changes the pipe and so the count: that too counts as activity.
  const uint64_t activity = state_ == State::kPooling ? session_->activity() : path_->activity();
  if (activity != last_activity_) {
    last_activity_ = activity;
    last_active_ = now;
    return false;
  }
  if (now - last_active_ < timeout) return false;
  end_reason_ = "timeout";
  if (state_ == State::kPooling) {
    session_->CloseIdle();
    return true;
  }
  path_->CloseIdle();
  return true;
}

void Connection::CloseClient() {
  state_ = State::kClosed;
  inspection_.reset();
  client_.Reset();
  upstream_.Reset();
  worker_.finished->push_back(this);
}

}  // namespace skproxy
