// One client connection from accept to close:
//   admitted (the listener's max_connections, then the cluster's)
//   connecting (the endpoint the cluster picks; on failure the next one it picks among those not tried yet,
//   each with the cluster's connect timeout)
//   -> piping (a SockmapPipe, or a UserspacePipe when the kernel path is off or refuses this connection)
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
#include "proxy/datapath.h"
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
  void OnConnected(int res);
  void StartPipe();
  // Puts the legs on the kernel path (or, when they cannot be inserted, back on the user-space path).
  std::unique_ptr<Pipe> KernelPipe(UniqueFd downstream, UniqueFd upstream);
  // The user-space pipe handed its legs over: the connection moves into the sockhash.
  void Promote(UniqueFd downstream, UniqueFd upstream);
  void Count(PathKind kind);
  void Uncount();
  // How many messages (reads) a connection exchanges before a quiet worker moves it: a few exchanges
  // do not pay for the insert and the delete.
  static constexpr uint32_t kQuietReads = 64;
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
  __kernel_timespec connect_timeout_{};
  std::unique_ptr<Pipe> pipe_;
  std::unique_ptr<Pipe> retired_;  // the user-space pipe after a promotion: spent, kept until we go
  PathKind counted_kind_ = PathKind::kUserspace;
  bool counted_ = false;
};

}  // namespace skproxy
