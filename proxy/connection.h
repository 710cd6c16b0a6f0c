// One client connection from accept to close:
//   connecting (each endpoint of the cluster in turn, each with the cluster's connect timeout; on a
//               transparent listener, the connection's original destination alone)
//   -> piping (a PathSwitch: the connection's pipe, and its moves between the two data paths)
//   -> done (the pipe closed both legs, or no endpoint answered and the client was closed).
#pragma once

#include <linux/time_types.h>

#include <memory>
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
  Connection(WorkerContext& worker, std::shared_ptr<ListenerContext> listener, UniqueFd client);
  ~Connection();
  void Start();
  bool done() const;
  // The connection is about to be destroyed unfinished: its sockets close with RST, never a FIN.
  void ResetOnClose();

 private:
  enum class State { kConnecting, kPiping, kClosed };
  enum Tag : unsigned { kConnect = 0 };

  void Handle(unsigned tag, int res, unsigned cqe_flags) override;
  void ConnectNext();
  // The next address to try, or null when every one was tried.
  const SocketAddress* NextEndpoint();
  absl::Duration ConnectTimeout() const;
  void CountConnectFailure();
  void OnConnected(int res);
  void StartPipe();
  void CloseClient();
  // The access log line of this connection, written when it is destroyed.
  std::string AccessLogLine() const;

  WorkerContext& worker_;
  std::shared_ptr<ListenerContext> listener_owner_;  // the generation this connection was accepted under
  ListenerContext& listener_;
  State state_ = State::kConnecting;
  UniqueFd client_;
  UniqueFd upstream_;
  size_t first_endpoint_ = 0;
  SocketAddress original_destination_;  // transparent listeners: where the client was headed
  size_t attempts_ = 0;
  __kernel_timespec connect_timeout_{};
  std::unique_ptr<PathSwitch> path_;  // while piping: which path the bytes take, and the pipe itself
  // For the access log.
  absl::Time start_ = absl::Now();
  SocketAddress client_address_;
  const SocketAddress* endpoint_ = nullptr;  // the endpoint of the last connect attempt
  const char* end_reason_ = nullptr;         // set when skproxy, not a peer, ended the connection
};

}  // namespace skproxy
