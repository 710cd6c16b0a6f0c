// One client connection from accept to close:
//   connecting (each endpoint of the cluster in turn, each with the cluster's connect timeout)
//   -> piping (a SockmapPipe, or a UserspacePipe when the kernel path is off or refuses this connection)
//   -> done (the pipe closed both legs, or no endpoint answered and the client was closed).
#pragma once

#include <linux/time_types.h>

#include <memory>
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
  // The access log line of this connection, written when it is destroyed.
  std::string AccessLogLine() const;

  WorkerContext& worker_;
  std::shared_ptr<ListenerContext> listener_owner_;  // the generation this connection was accepted under
  ListenerContext& listener_;
  State state_ = State::kConnecting;
  UniqueFd client_;
  UniqueFd upstream_;
  size_t first_endpoint_ = 0;
  size_t attempts_ = 0;
  __kernel_timespec connect_timeout_{};
  std::unique_ptr<Pipe> pipe_;
  std::unique_ptr<Pipe> retired_;  // the user-space pipe after a promotion: spent, kept until we go
  PathKind counted_kind_ = PathKind::kUserspace;
  bool counted_ = false;
  // For the access log.
  absl::Time start_ = absl::Now();
  SocketAddress client_address_;
  const SocketAddress* endpoint_ = nullptr;  // the endpoint of the last connect attempt
  const char* end_reason_ = nullptr;         // set when skproxy, not a peer, ended the connection
  uint32_t switches_ = 0;
};

}  // namespace skproxy
