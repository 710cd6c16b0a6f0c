#include "proxy/http_session.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proxy/cluster.h"
#include "proxy/http_pool.h"
#include "proxy/inspect/inspection.h"
#include "proxy/socket_options.h"
#include "proxy/worker_context.h"

namespace skproxy {
namespace {

// One buffer per session carries the response: its head must fit, and the body streams through it.
constexpr size_t kResponseBuffer = 64 << 10;
// After a response that ends the connection: how long and how much of the client's rest is read.
constexpr absl::Duration kDrainTimeout = absl::Seconds(2);
constexpr size_t kMaxDrainBytes = 256 << 10;

// RFC 9110 9.2.2: what may be sent twice. POST and PATCH are not retried (nginx and Envoy likewise).
bool Idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" || method == "OPTIONS" ||
         method == "TRACE";
}

// A reused connection the upstream may have closed while it sat idle (its FIN not yet seen by the pool's
// watch): a peek costs one syscall, paid only where a failure could not be retried.
bool StillOpen(int fd) {
  char c;
  return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

HttpSession::HttpSession(WorkerContext& worker, ListenerContext& listener, UniqueFd client, std::string buffer,
                         size_t received, const SocketAddress& client_address, ClusterState& cluster,
                         std::function<void()> on_finish, std::function<void(Handover)> on_handover)
    : TrackedHandler(*worker.ring),
      worker_(worker),
      listener_(listener),
      client_(std::move(client)),
      client_address_(client_address),
      on_finish_(std::move(on_finish)),
      on_handover_(std::move(on_handover)),
      in_(std::move(buffer)),
      in_len_(received),
      cluster_(&cluster) {
  // Counted like a spliced connection on the io_uring path (a later fallback to the splice counts again).
  listener_.metrics.connections_total[static_cast<int>(PathKind::kUserspace)]->Increment();
  listener_.metrics.connections_active[static_cast<int>(PathKind::kUserspace)]->Increment();
}

HttpSession::~HttpSession() {
  // Whatever way it ended, the endpoint and the cluster's count are given back.
  if (endpoint_) cluster_->Release(*endpoint_);
  if (admitted_) cluster_->Leave();
}

void HttpSession::Start() { NextRequest(); }

__kernel_timespec* HttpSession::Timeout(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  timeout_.tv_sec = absl::ToInt64Seconds(d);
  timeout_.tv_nsec = absl::ToInt64Nanoseconds(d - absl::Seconds(timeout_.tv_sec));
  return &timeout_;
}

void HttpSession::Handle(unsigned tag, int res, unsigned) {
  ++activity_;
  if (finished_) return;  // a completion after the end (e.g. a linked timeout's cancellation)
  if (closing_) {  // the idle timeout shut both legs down: nothing moved for that long, so end quietly
    Finish();
    return;
  }
  if (tag == kUpstreamSend || tag == kUpstreamRecv) upstream_wait_ = false;
  switch (tag) {
    case kCancel: break;
    case kClientRecv: OnClientReceived(res); break;
    case kClientSend: OnClientSent(res); break;
    case kConnect: OnConnected(res); break;
    case kUpstreamSend: OnUpstreamSent(res); break;
    case kUpstreamRecv: OnUpstreamReceived(res); break;
    case kBodyRecv: OnBodyReceived(res); break;
    case kDrain:
      if (res > 0 && (drained_ += static_cast<size_t>(res)) < kMaxDrainBytes) {
        Drain();
      } else {
        Finish();
      }
      break;
  }
}

// ---- request side ----

void HttpSession::NextRequest() {
  inspector_ = HttpInspector();
  head_deadline_set_ = false;
  if (in_len_ == 0) {
    ReadClient();
    return;
  }
  ParseHead();
}

// The next request's head, as far as it is in the buffer: on to the request, an error answer, or more bytes.
void HttpSession::ParseHead() {
  switch (inspector_.Feed(std::string_view(in_.data(), in_len_))) {
    case HttpInspector::Result::kDone:
      OnHead();
      return;
    case HttpInspector::Result::kMalformed:
      Answer(400, "http_malformed");
      return;
    case HttpInspector::Result::kNeedMore:
      if (in_len_ == in_.size()) {
        Answer(431, "http_head_too_large");
        return;
      }
      ReadClient();
      return;
  }
}

void HttpSession::ReadClient() {
  io_uring_sqe* sqe = Submit(kClientRecv);
  io_uring_prep_recv(sqe, client_.get(), in_.data() + in_len_, in_.size() - in_len_, 0);
  // A head once begun must be complete within inspect.timeout, as the first one (408 otherwise); between
  // requests the connection waits like any other (the listener's idle_timeout).
  if (in_len_ > 0) {
    if (!head_deadline_set_) {
      head_deadline_set_ = true;
      head_deadline_ = absl::Now() + listener_.config->inspect.timeout;
    }
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_prep_link_timeout(ring_.PrepareUntracked(), Timeout(head_deadline_ - absl::Now()), 0);
  }
}

void HttpSession::OnClientReceived(int res) {
  if (res == -ECANCELED || res == -ETIME) {
    Answer(408, "timeout");
    return;
  }
  if (res <= 0) {  // the client closed (between requests: the usual end) or reset
    Finish();
    return;
  }
  in_len_ += static_cast<size_t>(res);
  ParseHead();
}

void HttpSession::OnHead() {
  const HttpHead& head = inspector_.head();
  const std::string_view bytes(in_.data(), in_len_);
  const RequestFraming framing = FrameRequest(bytes, head);
  if (!first_) {
    // Each request is routed by its own Host and path (the first was routed by the Connection).
    const int route = listener_.routes->Match({head.host, head.path, {}});
    ClusterState* cluster = nullptr;
    size_t decision = listener_.route_decisions.size() - 1;  // "none"
    if (route >= 0) {
      cluster = listener_.route_clusters[static_cast<size_t>(route)];
      decision = static_cast<size_t>(route);
    } else if (route == RouteTable::kDefault) {
      cluster = listener_.cluster;
      decision = listener_.route_decisions.size() - 2;
    }
    listener_.route_decisions[decision]->Increment();
    // The connection kept from the last request serves only its own cluster: elsewhere it goes to the pool.
    if (held_ && cluster != cluster_) ReleaseUpstream(/*reusable=*/true);
    if (cluster == nullptr) {
      Answer(404, "no_route");
      return;
    }
    cluster_ = cluster;
  }
  first_ = false;
  const std::string xff =
      listener_.config->x_forwarded_for ? absl::StrCat("X-Forwarded-For: ", ForwardedFor(client_address_), "\r\n") : "";
  if (!framing.poolable || !cluster_->config().http_keepalive.enabled()) {
    // Spliced from here on, as without a pool: the head as the splice path writes it, then the rest read.
    Handover handover;
    handover.cluster = cluster_;
    handover.forward.assign(in_.data(), head.blank_line);
    handover.forward.append(xff);
    handover.forward.append(in_.data() + head.blank_line, in_len_ - head.blank_line);
    HandOver(std::move(handover));
    return;
  }
  if (!cluster_->HasHealthyEndpoint()) {
    Answer(503, "no_healthy_endpoint");
    return;
  }
  method_.assign(head.method);
  client_close_ = framing.client_close;
  out_ = RewriteRequestHead(bytes, head, xff);
  const size_t body_here = static_cast<size_t>(std::min<uint64_t>(framing.content_length, in_len_ - head.length));
  out_.append(in_.data() + head.length, body_here);
  body_left_ = framing.content_length - body_here;
  retryable_ = body_left_ == 0 && Idempotent(method_);
  retried_ = false;
  // What follows this request in the buffer (a pipelined next request) stays for NextRequest.
  const size_t consumed = head.length + body_here;
  std::memmove(in_.data(), in_.data() + consumed, in_len_ - consumed);
  in_len_ -= consumed;
  tried_.clear();
  last_timed_out_ = false;
  if (held_) {
    // The upstream connection of the last request, kept while this client stayed (HAProxy's
    // `http-reuse safe` does the same): no pool round trip, no new pick, as long as its endpoint is usable.
    held_ = false;
    if (endpoint_->usable(ClusterState::NowNs()) &&
        (retryable_ || StillOpen(upstream_.get()))) {
      cluster_->metrics().pool_hits->Increment();
      reused_ = true;
      tried_.push_back(endpoint_.get());
      SendRequest();
      return;
    }
    ReleaseUpstream(/*reusable=*/false);
  }
  if (!cluster_->Admit()) {
    listener_.metrics.rejected_cluster_limit->Increment();
    Answer(503);
    return;
  }
  admitted_ = true;
  Acquire(/*allow_pool=*/true);
}

void HttpSession::Acquire(bool allow_pool) {
  for (;;) {
    if (endpoint_) {
      cluster_->Release(*endpoint_);
      endpoint_ = nullptr;
    }
    std::shared_ptr<EndpointState> choice =
        cluster_->Pick(cluster_->needs_client_address() ? &client_address_ : nullptr, tried_);
    if (!choice) {
      if (tried_.empty()) listener_.metrics.rejected_no_endpoint->Increment();
      Answer(tried_.empty() ? 503 : last_timed_out_ ? 504 : 502);
      return;
    }
    tried_.push_back(choice.get());
    endpoint_ = std::move(choice);
    upstream_address_ = endpoint_->address();
    if (allow_pool) {
      upstream_ = worker_.http_pool->Take(*endpoint_);
      if (upstream_.valid() && !retryable_ && !StillOpen(upstream_.get())) upstream_.Reset();
      if (upstream_.valid()) {
        cluster_->metrics().pool_hits->Increment();
        reused_ = true;
        SendRequest();
        return;
      }
      cluster_->metrics().pool_misses->Increment();
    }
    reused_ = false;
    upstream_.Reset(socket(upstream_address_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!upstream_.valid()) {
      cluster_->OnConnectFailed(*endpoint_);
      continue;
    }
    if (const uint32_t mark = listener_.config->upstream_mark; mark != 0 && !SetMarkOrWarnOnce(upstream_.get(), mark)) {
      worker_.metrics->PipeError("so_mark").Increment();
      Abort();
      return;
    }
    // Linked ahead of the connect. A pooled leg never enters the sockhash.
    SetUpstreamOptions(ring_, worker_.upstream_options, upstream_.get(), /*kernel_path=*/false);
    connect_started_ = absl::Now();
    io_uring_sqe* sqe = Submit(kConnect);
    io_uring_prep_connect(sqe, upstream_.get(), upstream_address_.sockaddr_ptr(), upstream_address_.length);
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_prep_link_timeout(ring_.PrepareUntracked(), Timeout(cluster_->config().connect_timeout), 0);
    return;
  }
}

void HttpSession::OnConnected(int res) {
  if (res < 0) {
    cluster_->OnConnectFailed(*endpoint_);
    last_timed_out_ = res == -ECANCELED || res == -ETIME || res == -ETIMEDOUT;
    upstream_.Reset();
    Acquire(/*allow_pool=*/false);
    return;
  }
  cluster_->OnConnected(*endpoint_, absl::Now() - connect_started_);
  SendRequest();
}

void HttpSession::SendRequest() {
  out_sent_ = 0;
  resp_len_ = 0;
  parser_ = HttpResponseParser();
  head_done_ = false;
  sent_to_client_ = false;
  upstream_eof_ = false;
  SendUpstream(out_.data(), out_.size());
}

void HttpSession::SendUpstream(const char* data, size_t size) {
  upstream_wait_ = true;
  ++upstream_progress_;
  io_uring_prep_send(Submit(kUpstreamSend), upstream_.get(), data, size, MSG_NOSIGNAL | MSG_WAITALL);
}

void HttpSession::OnUpstreamSent(int res) {
  if (timing_out_ && res == -ECANCELED) {
    OnResponseTimeout();
    return;
  }
  timing_out_ = false;
  if (res < 0) {
    UpstreamFailed();
    return;
  }
  out_sent_ += static_cast<size_t>(res);
  if (out_sent_ < out_.size()) {
    SendUpstream(out_.data() + out_sent_, out_.size() - out_sent_);
    return;
  }
  if (body_left_ > 0) {  // the body streams through in_ (empty now: it held nothing past the head's body)
    const size_t want = static_cast<size_t>(std::min<uint64_t>(body_left_, in_.size()));
    io_uring_prep_recv(Submit(kBodyRecv), client_.get(), in_.data(), want, 0);
    return;
  }
  ReadResponse();
}

void HttpSession::OnBodyReceived(int res) {
  if (res <= 0) {  // the client went away mid-body: the upstream connection is mid-request, not reusable
    Abort();
    return;
  }
  body_left_ -= static_cast<uint64_t>(res);
  out_.assign(in_.data(), static_cast<size_t>(res));
  out_sent_ = 0;
  SendUpstream(out_.data(), out_.size());
}

// ---- response side ----

void HttpSession::ReadResponse() {
  // Not zeroed: recv overwrites what is parsed and sent (a zeroed 64 KiB was 5% of the proxy's CPU under
  // `Connection: close`, where every session reads one response).
  if (!resp_) resp_.reset(new char[kResponseBuffer]);
  upstream_wait_ = true;
  ++upstream_progress_;
  io_uring_prep_recv(Submit(kUpstreamRecv), upstream_.get(), resp_.get() + resp_len_, kResponseBuffer - resp_len_, 0);
}

void HttpSession::OnUpstreamReceived(int res) {
  if (timing_out_ && res == -ECANCELED) {
    OnResponseTimeout();
    return;
  }
  timing_out_ = false;  // bytes came after all (or the end): the cancel finds nothing
  if (!head_done_) {
    if (res <= 0) {
      if (resp_len_ == 0 && !sent_to_client_) {
        UpstreamFailed();
      } else if (!sent_to_client_) {
        Answer(502);
      } else {
        Abort();
      }
      return;
    }
    resp_len_ += static_cast<size_t>(res);
    switch (parser_.Feed(std::string_view(resp_.get(), resp_len_))) {
      case HttpResponseParser::Result::kNeedMore:
        if (resp_len_ == kResponseBuffer) {  // a head larger than the buffer
          sent_to_client_ ? Abort() : Answer(502);
          return;
        }
        ReadResponse();
        return;
      case HttpResponseParser::Result::kMalformed:
        sent_to_client_ ? Abort() : Answer(502);
        return;
      case HttpResponseParser::Result::kDone:
        OnResponseHead();
        return;
    }
    return;
  }
  if (res <= 0) {
    if (res == 0 && body_.mode() == HttpBodyReader::Mode::kUntilClose) {  // the body's end
      upstream_eof_ = true;
      EndResponse();
    } else {
      Abort();  // cut short: the client must not take it for whole
    }
    return;
  }
  const size_t n = body_.Consume(std::string_view(resp_.get(), static_cast<size_t>(res)));
  if (body_.malformed()) {
    Abort();
    return;
  }
  if (n < static_cast<size_t>(res)) upstream_reusable_ = false;  // bytes after the response: not trusted
  SendClient(resp_.get(), n);
}

void HttpSession::OnResponseHead() {
  const HttpResponseHead& head = parser_.head();
  const std::string_view raw(resp_.get(), head.length);
  if (head.status == 101) {  // never asked for (Upgrade requests are spliced)
    sent_to_client_ ? Abort() : Answer(502);
    return;
  }
  head_done_ = true;
  if (head.status < 200) {  // 1xx: passed on as it is; the final head follows
    informational_ = true;
    client_out_.assign(raw);
  } else {
    informational_ = false;
    body_ = HttpBodyReader::ForResponse(head, method_);
    const bool until_close = body_.mode() == HttpBodyReader::Mode::kUntilClose;
    upstream_reusable_ = !head.close && !until_close;
    if (until_close) client_close_ = true;  // the client learns the end from our close
    client_out_ = RewriteResponseHead(raw, client_close_, head.minor_version == 0);
  }
  // Bytes read past the head: the body's first bytes (or the next head after a 1xx).
  const std::string_view rest(resp_.get() + head.length, resp_len_ - head.length);
  if (informational_) {
    std::memmove(resp_.get(), rest.data(), rest.size());
    resp_len_ = rest.size();
  } else {
    const size_t n = body_.Consume(rest);
    if (body_.malformed()) {
      Answer(502);
      return;
    }
    if (n < rest.size()) upstream_reusable_ = false;
    client_out_.append(rest.substr(0, n));
    resp_len_ = 0;
  }
  SendClient(client_out_.data(), client_out_.size());
}

void HttpSession::SendClient(const char* data, size_t size) {
  send_data_ = data;
  send_left_ = size;
  if (size == 0) {
    OnClientSent(0);
    return;
  }
  io_uring_prep_send(Submit(kClientSend), client_.get(), data, size, MSG_NOSIGNAL | MSG_WAITALL);
}

void HttpSession::OnClientSent(int res) {
  if (res < 0) {  // the client went away mid-response
    Abort();
    return;
  }
  if (res > 0) sent_to_client_ = true;
  send_data_ += res;
  send_left_ -= static_cast<size_t>(res);
  if (send_left_ > 0) {
    io_uring_prep_send(Submit(kClientSend), client_.get(), send_data_, send_left_, MSG_NOSIGNAL | MSG_WAITALL);
    return;
  }
  if (informational_) {  // the final head next, perhaps already read
    head_done_ = false;
    parser_ = HttpResponseParser();
    if (resp_len_ > 0) {  // parsed as if just received
      const size_t have = resp_len_;
      resp_len_ = 0;
      OnUpstreamReceived(static_cast<int>(have));
      return;
    }
    ReadResponse();
    return;
  }
  if (body_.done()) {
    EndResponse();
    return;
  }
  resp_len_ = 0;
  ReadResponse();
}

void HttpSession::EndResponse() {
  ++requests_;
  const bool reusable = upstream_reusable_ && !upstream_eof_ && !closing_;
  if (client_close_) {
    ReleaseUpstream(reusable);
    CloseClient();
    return;
  }
  // The client stays: its next request most likely goes where this one went, so the connection stays with
  // it (with its endpoint and cluster counts) until that request is routed, or the client leaves.
  if (reusable) {
    held_ = true;
  } else {
    ReleaseUpstream(false);
  }
  NextRequest();
}

// ---- failures and the end ----

void HttpSession::UpstreamFailed() {
  if (reused_ && retryable_ && !retried_) {
    Retry();
    return;
  }
  Answer(last_timed_out_ ? 504 : 502);
}

void HttpSession::TimeOutResponse() {
  if (!awaiting_upstream() || closing_ || timing_out_) return;
  timing_out_ = true;
  io_uring_prep_cancel_fd(Submit(kCancel), upstream_.get(), IORING_ASYNC_CANCEL_ALL);
}

void HttpSession::OnResponseTimeout() {
  // Not retried, not even an idempotent request: the upstream has it and is slow, and a second try would
  // double both its load and the client's wait (Envoy retries a timeout only when told to).
  timing_out_ = false;
  end_reason_ = "response_timeout";
  if (sent_to_client_) {
    cluster_->metrics().response_timeouts_mid->Increment();
    Abort();
    return;
  }
  cluster_->metrics().response_timeouts_before->Increment();
  Answer(504);
}

void HttpSession::Retry() {
  // A pooled connection the upstream had closed (its FIN not seen yet) or reset: the request never
  // reached it, so it goes once more on a new connection, to any endpoint the cluster picks.
  retried_ = true;
  cluster_->metrics().pool_retries->Increment();
  upstream_.Reset();
  tried_.clear();
  Acquire(/*allow_pool=*/false);
}

void HttpSession::ReleaseUpstream(bool reusable) {
  held_ = false;
  if (upstream_.valid()) {
    if (reusable && !closing_) {
      worker_.http_pool->Put(listener_.clusters, *cluster_, endpoint_, std::move(upstream_));
    } else {
      ring_.Close(std::move(upstream_));
    }
  }
  if (endpoint_) {
    cluster_->Release(*endpoint_);
    endpoint_ = nullptr;
  }
  if (admitted_) {
    cluster_->Leave();
    admitted_ = false;
  }
}

void HttpSession::Answer(int status, const char* reason) {
  if (sent_to_client_) {  // too late to answer: part of a response is out
    Abort();
    return;
  }
  ReleaseUpstream(held_);  // a kept connection is still good; one that just failed is not
  Handover handover;
  handover.status = status;
  handover.reason = reason;
  HandOver(std::move(handover));
}

void HttpSession::HandOver(Handover handover) {
  ReleaseUpstream(held_);
  handover.client = std::move(client_);
  finished_ = true;
  listener_.metrics.connections_active[static_cast<int>(PathKind::kUserspace)]->Decrement();
  on_handover_(std::move(handover));
}

void HttpSession::Abort() {
  ReleaseUpstream(false);
  if (client_.valid()) {
    const linger reset{1, 0};
    setsockopt(client_.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  }
  Finish();
}

void HttpSession::CloseClient() {
  // A client that sent nothing past its request (the usual `Connection: close` client) is closed at once:
  // with nothing unread the close is a plain FIN (nginx lingers likewise only when more data may come).
  int unread = 0;
  if (in_len_ == 0 && ioctl(client_.get(), FIONREAD, &unread) == 0 && unread == 0) {
    Finish();
    return;
  }
  // Otherwise our FIN after the response; then read what the client still sends until it closes too
  // (bounded), because closing with unread bytes would send a RST that can discard the response before it
  // is read.
  shutdown(client_.get(), SHUT_WR);
  head_deadline_ = absl::Now() + kDrainTimeout;
  Drain();
}

void HttpSession::Drain() {
  io_uring_sqe* sqe = Submit(kDrain);
  io_uring_prep_recv(sqe, client_.get(), in_.data(), in_.size(), 0);
  sqe->flags |= IOSQE_IO_LINK;
  io_uring_prep_link_timeout(ring_.PrepareUntracked(), Timeout(head_deadline_ - absl::Now()), 0);
}

void HttpSession::Finish() {
  if (finished_) return;
  ReleaseUpstream(held_);  // the client left between requests: its kept connection goes to the pool
  ring_.Close(std::move(client_));  // with the next submit: no close(2) of its own
  finished_ = true;
  listener_.metrics.connections_active[static_cast<int>(PathKind::kUserspace)]->Decrement();
  on_finish_();
}

void HttpSession::CloseIdle() {
  if (finished_) return;
  // Between requests the kept upstream connection is sound: the pool keeps it for the next client.
  if (held_) ReleaseUpstream(/*reusable=*/true);
  closing_ = true;
  // Whatever is in flight completes (a recv with 0, a send with an error) and ends the session.
  if (client_.valid()) shutdown(client_.get(), SHUT_RDWR);
  if (upstream_.valid()) shutdown(upstream_.get(), SHUT_RDWR);
  if (inflight() == 0) Finish();
}

void HttpSession::ResetOnClose() {
  const linger reset{1, 0};
  for (const UniqueFd* fd : {&client_, &upstream_})
    if (fd->valid()) setsockopt(fd->get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
}

}  // namespace skproxy
