// The requests of one http-listener client connection sent over a cluster's keep-alive pool
// (`http_keepalive`), one at a time: read the request head (and a Content-Length body), route it (the first
// request arrives routed; later ones are routed by their own Host and path), take an idle connection to the
// chosen endpoint from the worker's HttpPool or connect, write the request with the hop-by-hop headers
// rewritten, read the response head, stream the response to the client through one bounded buffer while
// tracking where its body ends, then give the upstream connection back to the pool when both sides keep
// it. A request that is not poolable (docs/l7-routing.md), a local answer (404, 503, 502, ...) and the end
// of the connection are handed back to the Connection, which splices, answers or closes as before.
#pragma once

#include <linux/time_types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "config/address.h"
#include "proxy/inspect/http_inspector.h"
#include "proxy/inspect/http_request_framing.h"
#include "proxy/inspect/http_response_parser.h"
#include "proxy/tracked_handler.h"
#include "proxy/unique_fd.h"

namespace skproxy {

class ClusterState;
class EndpointState;
struct ListenerContext;
struct WorkerContext;

class HttpSession final : public TrackedHandler {
 public:
  // What the Connection does with the client when the session stops short of closing it.
  struct Handover {
    UniqueFd client;
    // status != 0: answer it (reason set: counted as an inspection failure with that reason).
    int status = 0;
    const char* reason = nullptr;
    // status == 0: splice the client to `cluster`, `forward` (the request read so far, head rewritten as
    // the splice path rewrites it) first.
    ClusterState* cluster = nullptr;
    std::string forward;
  };

  // `buffer`: the client's bytes (its size is the head limit, inspect.max_bytes); the first `received`
  // of them start with a poolable request head already routed to `cluster`. `client_address`: for
  // X-Forwarded-For and the consistent hashes.
  HttpSession(WorkerContext& worker, ListenerContext& listener, UniqueFd client, std::string buffer, size_t received,
              const SocketAddress& client_address, ClusterState& cluster, std::function<void()> on_finish,
              std::function<void(Handover)> on_handover);
  ~HttpSession();
  void Start();

  // Ended (closed, or handed over); done() once the kernel holds no operation on it either.
  bool finished() const { return finished_; }
  bool done() const { return finished_ && inflight() == 0; }
  uint64_t activity() const { return activity_; }
  uint64_t requests() const { return requests_; }
  // The listener's idle timeout: both legs are shut down, which ends whatever is in flight.
  void CloseIdle();
  // The cluster's response_timeout (the worker's sweep: docs/l7-routing.md). Waiting on the upstream: a
  // send of the request or a receive of the response in flight; each one submitted is progress.
  bool awaiting_upstream() const { return upstream_wait_ && !finished_; }
  uint64_t upstream_progress() const { return upstream_progress_; }
  ClusterState& cluster() const { return *cluster_; }
  // The wait passed response_timeout: cancels it; then 504 if no response byte reached the client, else the
  // client is reset. The upstream connection is closed, never pooled.
  void TimeOutResponse();
  // For the access log: "response_timeout" after one, else null.
  const char* end_reason() const { return end_reason_; }
  // The connection is destroyed unfinished: RST on both legs.
  void ResetOnClose();

 private:
  enum Tag : unsigned {
    kClientRecv = 0, kClientSend = 1, kConnect = 2, kUpstreamSend = 3, kUpstreamRecv = 4, kBodyRecv = 5, kDrain = 6,
    kCancel = 7,
  };
  void Handle(unsigned tag, int res, unsigned cqe_flags) override;

  // Request side.
  void NextRequest();
  void ParseHead();
  void ReadClient();
  void OnClientReceived(int res);
  void OnHead();
  void Acquire(bool allow_pool);
  void OnConnected(int res);
  void SendRequest();
  void SendUpstream(const char* data, size_t size);
  void OnUpstreamSent(int res);
  void OnBodyReceived(int res);
  // Response side.
  void ReadResponse();
  void OnUpstreamReceived(int res);
  void OnResponseHead();
  void SendClient(const char* data, size_t size);
  void OnClientSent(int res);
  void EndResponse();
  // Failures.
  void UpstreamFailed();  // before any response byte: retry once, or 502
  void Retry();
  void OnResponseTimeout();
  void Answer(int status, const char* reason = nullptr);  // a local answer, by the Connection
  void Abort();          // mid-response: both legs end at once (RST to the client, so it cannot mistake a cut
                         // body for a whole one)
  void ReleaseUpstream(bool reusable);
  void CloseClient();    // after a response that ends the connection: FIN, then read the client's rest
  void Drain();
  void Finish();
  void HandOver(Handover handover);
  __kernel_timespec* Timeout(absl::Duration d);

  WorkerContext& worker_;
  ListenerContext& listener_;
  UniqueFd client_;
  UniqueFd upstream_;
  const SocketAddress client_address_;
  std::function<void()> on_finish_;
  std::function<void(Handover)> on_handover_;
  bool finished_ = false;
  bool closing_ = false;  // CloseIdle: completions only wind down
  uint64_t activity_ = 0;
  uint64_t requests_ = 0;
  bool upstream_wait_ = false;    // an upstream send or receive is in flight
  uint64_t upstream_progress_ = 0;
  bool timing_out_ = false;       // TimeOutResponse cancelled that operation
  const char* end_reason_ = nullptr;

  // The client's bytes: the head being read, then what follows it.
  std::string in_;
  size_t in_len_ = 0;
  HttpInspector inspector_;
  bool first_ = true;
  bool head_deadline_set_ = false;
  absl::Time head_deadline_;

  // The request in flight.
  ClusterState* cluster_;
  std::string method_;
  std::string out_;  // the request head (and body bytes) for the upstream, then each body chunk
  size_t out_sent_ = 0;
  uint64_t body_left_ = 0;  // request body bytes still to read from the client
  bool client_close_ = false;
  bool retryable_ = false;  // idempotent, and all of it is in out_
  bool retried_ = false;
  bool reused_ = false;     // the upstream came from the pool, or was kept from the last request
  bool held_ = false;       // between requests: upstream_ kept from the last one (endpoint and count held)
  bool admitted_ = false;   // the cluster's max_connections
  std::shared_ptr<EndpointState> endpoint_;  // the one this session counts in (Release), while it holds one
  std::vector<const EndpointState*> tried_;
  bool last_timed_out_ = false;
  SocketAddress upstream_address_;
  absl::Time connect_started_;

  // The response in flight.
  std::unique_ptr<char[]> resp_;  // kResponseBuffer bytes, allocated at the first response
  size_t resp_len_ = 0;
  HttpResponseParser parser_;
  HttpBodyReader body_;
  bool head_done_ = false;
  bool sent_to_client_ = false;  // some byte of this response reached the client
  bool upstream_reusable_ = false;
  bool upstream_eof_ = false;  // the body ended with the upstream's close
  std::string client_out_;     // the rewritten head (and the body bytes read with it)
  const char* send_data_ = nullptr;
  size_t send_left_ = 0;
  bool informational_ = false;  // the head being sent is a 1xx: another head follows

  size_t drained_ = 0;
  __kernel_timespec timeout_{};
};

}  // namespace skproxy
