// One client connection from accept to close:
//   admitted (the listener's max_connections; past it the connection is closed at once)
//   -> inspecting (http, tls, or a required PROXY header: read the client's first bytes up to inspect.max_bytes
//     within inspect.timeout, route them; or answer/close: see proxy/inspect/inspection.h)
//   -> connecting (the cluster's max_connections, then the endpoint the cluster picks; on failure the next
//      one it picks among those not tried yet, each with the cluster's connect timeout; on a transparent
//      listener, the connection's original destination alone)
//   -> forwarding (the PROXY header for the cluster, then the bytes inspected, written to the upstream)
//   -> piping (a PathSwitch: the connection's pipe, and its moves between the two data paths; on an http
//      listener, an upstream that ends before its first byte gives the client back for a 502)
//   or, on an http listener whose cluster has http_keepalive and a request that can be pooled:
//   -> pooling (an HttpSession: request by request over the worker's keep-alive pool; it may hand the client
//      back for a local answer or to be spliced like above)
//   -> done (the pipe closed both legs, or no endpoint answered and the client was closed or answered).
//   An http listener answers errors itself (responding: the response, then the client's rest read off
//   so that the close does not reset the response away).
#pragma once

#include <linux/time_types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "config/address.h"
#include "proxy/connection_info.h"
#include "proxy/inspect/inspection.h"
#include "proxy/http_session.h"
#include "proxy/path_switch.h"
#include "proxy/tracked_handler.h"
#include "proxy/unique_fd.h"

namespace skproxy {

class ClusterState;
class EndpointState;
struct WorkerContext;
struct ListenerContext;

class Connection final : public TrackedHandler {
 public:
  // id: process-wide, in accept order (see ConnectionInfo::id).
  Connection(WorkerContext& worker, std::shared_ptr<ListenerContext> listener, UniqueFd client, uint64_t id);
  ~Connection();
  // Admits the connection (listener limit), then inspects or connects to the listener's cluster.
  void Start();
  bool done() const;
  // Once done(), just before the worker destroys it while its ring still runs: the piped legs close from
  // the ring instead of with close(2).
  void CloseLegsThroughRing();
  ListenerContext& listener() { return listener_; }
  // The worker's idle sweep: closes the connection (both legs, without a reset) when neither direction
  // moved a byte since `timeout` ago. True when it did.
  bool CloseIfIdle(absl::Duration timeout, absl::Time now);
  // The connection is about to be destroyed unfinished: its sockets close with RST, never a FIN.
  void ResetOnClose();
  // The worker's sweep: ends the wait for the upstream (504 before any response byte, a reset client after)
  // when nothing moved for the cluster's response_timeout while the connection waited on it. True when it did.
  bool ExpireResponse(absl::Time now);
  uint64_t id() const { return id_; }
  // For GET /connections; on the worker's thread. Costs no syscall (the kernel path's byte counts are in
  // the verdict's shared mapping).
  ConnectionInfo Describe(absl::Time now) const;

 private:
  enum class State { kInspecting, kConnecting, kForwarding, kPiping, kPooling, kResponding, kClosed };
  enum Tag : unsigned { kConnect = 0, kInspectRecv = 1, kForwardSend = 2, kResponseSend = 3, kDrain = 4 };

  void Handle(unsigned tag, int res, unsigned cqe_flags) override;
  // Inspection: one recv at a time into buffer_, each linked to what is left of inspect.timeout.
  void StartInspection();
  void ReceiveMore();
  void OnInspectReceived(int res);
  void Decide(const Inspection::Outcome& outcome);
  // Connects to `cluster` (the listener's, or the one a route chose): the cluster's limit, then its
  // endpoints; then writes forward_ (if any) before piping. Called once per connection.
  void ConnectTo(ClusterState& cluster);
  void ConnectNext();
  // The next address to try, or null when every one was tried.
  const SocketAddress* NextEndpoint();
  absl::Duration ConnectTimeout() const;
  void CountConnectFailure();
  void OnConnected(int res);
  void OnForwardSent(int res);
  void FailUpstream();  // no endpoint answered, or it went away before we wrote
  // An http listener's own answer, counted, then the close.
  void Respond(int status);
  void OnResponseSent(int res);
  void Drain();
  void Reject(const char* reason, int status);
  void SetTimeout(absl::Duration d);
  void StartPipe();
  // An http listener's upstream ended (FIN or reset) after the request was written and before it sent a
  // byte, or (`timed_out`) let the cluster's response_timeout pass: the pipe gives the client's leg back, and
  // the client gets a 502 (504).
  void OnNoResponse(UniqueFd client, bool timed_out);
  // The request in buffer_ goes over `cluster`'s keep-alive pool; false when it cannot (then spliced).
  bool StartSession(ClusterState& cluster);
  void OnSessionHandover(HttpSession::Handover handover);
  void CloseClient();
  // The access log line of this connection, written when it is destroyed.
  std::string AccessLogLine() const;
  // The client's socket wherever it is now (-1 once it has been handed on or closed), and its peer address.
  int ClientSocket() const;
  const SocketAddress& ClientPeer() const;

  WorkerContext& worker_;
  const uint64_t id_;
  std::shared_ptr<ListenerContext> listener_owner_;  // the generation this connection was accepted under
  ListenerContext& listener_;
  State state_ = State::kConnecting;
  UniqueFd client_;
  UniqueFd upstream_;
  ClusterState* cluster_ = nullptr;
  SocketAddress original_destination_;  // transparent listeners: where the client was headed
  bool original_tried_ = false;
  bool listener_admitted_ = false;
  bool cluster_admitted_ = false;
  std::optional<SocketAddress> client_address_;  // for the consistent hashes only
  std::vector<const EndpointState*> tried_;      // endpoints picked so far, in order (compared only)
  std::shared_ptr<EndpointState> held_;          // the endpoint that counts this connection now, if any
  SocketAddress upstream_address_;               // of the connect in flight
  uint64_t last_activity_ = 0;                   // the pipe's activity() at the last sweep that saw it move
  absl::Time last_active_;
  bool response_watched_ = false;  // a sweep saw the connection waiting on its upstream
  uint64_t response_progress_ = 0;  // the wait's progress count then
  absl::Time response_since_;       // when that count was first seen
  bool last_connect_timed_out_ = false;
  __kernel_timespec connect_timeout_{};
  // Inspection, and a local response's drain after it.
  std::string buffer_;  // the client's bytes so far (capacity inspect.max_bytes)
  size_t received_ = 0;
  absl::Time deadline_;
  __kernel_timespec timeout_{};
  std::unique_ptr<Inspection> inspection_;  // only while an inspecting listener's connection needs it
  std::string forward_;  // written to the upstream before piping
  size_t forwarded_ = 0;
  std::string_view response_;
  size_t response_sent_ = 0;
  size_t drained_ = 0;
  std::unique_ptr<PathSwitch> path_;  // while piping: which path the bytes take, and the pipe itself
  std::unique_ptr<HttpSession> session_;  // from pooling on (kept until the end: it may still hold operations)
  // For the access log.
  absl::Time start_ = absl::Now();
  // The client socket's peer (ClientPeer): read once, when first asked for.
  mutable SocketAddress client_peer_;
  mutable bool client_peer_read_ = false;
  const SocketAddress* endpoint_ = nullptr;  // the endpoint of the last connect attempt
  std::optional<SocketAddress> upstream_connected_;  // the address the upstream leg connected to
  const std::string* route_ = nullptr;       // the route an http/tls listener chose (a name, or "default")
  absl::Time connect_started_;               // when the connect in flight was submitted
  const char* end_reason_ = nullptr;         // set when skproxy, not a peer, ended the connection
};

}  // namespace skproxy
