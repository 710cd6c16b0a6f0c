// One client connection from accept to close:
//   admitted (the listener's max_connections, then the cluster's)
//   connecting (the endpoint the cluster picks; on failure the next one it picks among those not tried yet,
//               each with the cluster's connect timeout; on a transparent listener, the connection's
//               original destination alone)
//   -> piping (a PathSwitch: the connection's pipe, and its moves between the two data paths)
//   -> done (the pipe closed both legs, or no endpoint answered and the client was closed).
#pragma once

#include <linux/time_types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "config/address.h"
#include "proxy/path_switch.h"
#include "proxy/tracked_handler.h"
#include "proxy/unique_fd.h"

namespace skproxy {

class ClusterState;
struct WorkerContext;
struct ListenerContext;

class Connection final : public TrackedHandler {
 public:
  Connection(WorkerContext& worker, ListenerContext& listener, UniqueFd client);
  ~Connection();
  // Admits the connection (listener limit) and connects it to the listener's cluster.
  void Start();
  // Connects to `cluster` (the listener's, or the one a route chose): the cluster's limit, then its
  // endpoints. Called once per connection.
  void ConnectTo(ClusterState& cluster);
  bool done() const;
  ListenerContext& listener() { return listener_; }
  // The worker's idle sweep: closes the connection (both legs, without a reset) when neither direction
  // moved a byte since `timeout` ago. True when it did.
  bool CloseIfIdle(absl::Duration timeout, absl::Time now);

 private:
  enum class State { kConnecting, kPiping, kClosed };
  enum Tag : unsigned { kConnect = 0 };

  void Handle(unsigned tag, int res, unsigned cqe_flags) override;
  void ConnectNext();
  // The next address to try (kept in upstream_address_), or null when every one was tried.
  const SocketAddress* NextEndpoint();
  absl::Duration ConnectTimeout() const;
  void CountConnectFailure();
  void OnConnected(int res);
  void StartPipe();
  void CloseClient();

  WorkerContext& worker_;
  ListenerContext& listener_;
  State state_ = State::kConnecting;
  UniqueFd client_;
  UniqueFd upstream_;
  ClusterState* cluster_ = nullptr;
  bool listener_admitted_ = false;
  bool cluster_admitted_ = false;
  std::optional<SocketAddress> client_address_;  // for the consistent hashes only
  std::vector<uint32_t> tried_;                  // endpoints picked so far, in order
  bool holds_endpoint_ = false;                  // tried_.back() counts this connection
  SocketAddress upstream_address_;               // of the connect in flight
  uint64_t last_activity_ = 0;                   // the pipe's activity() at the last sweep that saw it move
  absl::Time last_active_;
  SocketAddress original_destination_;  // transparent listeners: where the client was headed
  bool original_tried_ = false;
  __kernel_timespec connect_timeout_{};
  std::unique_ptr<PathSwitch> path_;  // while piping: which path the bytes take, and the pipe itself
};

}  // namespace skproxy
