// Upstream servers that run in threads of the test process: a listener with one thread per accepted
// connection and a handler per behaviour (echo, verifying sink, pattern source, a server that dies
// mid-stream, half-close in either order). Each connection's outcome is kept as ConnStats.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/integration/deadline.h"
#include "tests/integration/pattern.h"
#include "tests/integration/sockets.h"
#include "tests/integration/stream_io.h"
#include "tests/integration/units.h"

namespace skproxy::itest {

struct ConnStats {
  uint64_t index = 0;  // accept order, from 0
  uint64_t bytes_in = 0, bytes_out = 0;
  int64_t first_bad = -1;   // of the bytes read, checked against the counter pattern
  std::string pattern;      // PatternChecker::Describe() of the bytes read
  bool eof = false;         // the read side ended with a clean EOF
  int error = 0;            // errno that ended the connection, if any
  bool timed_out = false;   // the handler's deadline passed
  uint32_t sent_stream_id = 0;  // pattern id of the bytes this handler sent
  uint32_t received_stream_id = 0;  // pattern id learnt from the bytes read (handlers that check them)
  std::string sha_in;       // hex SHA-256 of the bytes read (handlers that compute it)
  Clock::time_point accepted, ended;
  std::string Describe() const;
};

class TcpServer {
 public:
  using Handler = std::function<void(int fd, ConnStats& stats, TcpServer& server)>;
  struct Options {
    int family = AF_INET;
    int backlog = 1024;
    SocketOptions socket;       // set on the listener, inherited by accepted sockets
    bool hold_accepts = false;  // do not accept() until ReleaseAccepts()
    Millis handler_timeout = 300s;
    // Address to listen on; unset (family 0): the loopback address of `family` on a free port.
    SocketAddress address;
  };
  static absl::StatusOr<std::unique_ptr<TcpServer>> Start(Options options, Handler handler);
  ~TcpServer();
  TcpServer(const TcpServer&) = delete;
  TcpServer& operator=(const TcpServer&) = delete;

  SocketAddress endpoint() const { return endpoint_; }
  void ReleaseAccepts();
  size_t accepted() const;
  size_t finished() const;
  // Waits until `n` connections have finished their handler.
  bool WaitForFinished(size_t n, Millis timeout);
  std::vector<ConnStats> Finished() const;  // by accept order
  // Stops accepting, shuts down live connections and joins every thread. Idempotent.
  void Stop();

  // Live totals over all connections, for progress sampling.
  std::atomic<uint64_t> bytes_in{0}, bytes_out{0};
  const std::atomic<bool>& stopping() const { return stopping_; }
  Deadline handler_deadline() const { return DeadlineIn(options_.handler_timeout); }

 private:
  TcpServer() = default;
  void AcceptLoop();

  Options options_;
  Handler handler_;
  SocketAddress endpoint_;
  UniqueFd listener_;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  size_t accepted_ = 0;
  std::map<int, uint64_t> live_;  // fd -> index; closed only under mu_, so Stop() never hits a reused fd
  std::vector<std::thread> threads_;
  std::vector<ConnStats> finished_;
};

// Echoes every byte; on EOF shuts down its write side.
struct EchoOptions {
  // Check the bytes read against the counter pattern (first_bad, pattern, received_stream_id).
  bool check_pattern = false;
  // SO_LINGER 0 from the start: however the socket ends (the handler returns, or its process is killed),
  // the peer gets a RST. A process that dies with nothing unread would otherwise send a FIN, and a peer
  // could not tell the kill from the end of the stream.
  bool reset_on_close = false;
};
TcpServer::Handler EchoHandler(EchoOptions options = {});

// Reads to EOF, checking the counter pattern (the stream id is learnt from the first word).
struct SinkOptions {
  ReadPacing pacing;
  bool sha = false;
};
TcpServer::Handler SinkHandler(SinkOptions options = {});

// Sends `bytes` of a fresh pattern stream, shuts down its write side, then reads to EOF.
struct SourceOptions {
  uint64_t bytes = 0;
  double rate = 0;  // bytes/s, 0 = as fast as the peer takes it
};
TcpServer::Handler SourceHandler(SourceOptions options);

// Dies mid-stream: reads `read_before` bytes and/or sends `send_before` bytes, then closes, with a RST if
// `reset` (SO_LINGER 0), else a plain close().
struct KillOptions {
  uint64_t read_before = 0;
  uint64_t send_before = 0;
  bool reset = true;
};
TcpServer::Handler KillHandler(KillOptions options);

// Reads the request to EOF (paced at read_rate if > 0), then replies with the 32-byte SHA-256 of the
// request, its length as 8 little-endian bytes, and `reply_bytes` of a pattern stream; then closes.
struct ReplyAfterEofOptions {
  uint64_t reply_bytes = 4 * MiB;
  double read_rate = 0;
};
TcpServer::Handler ReplyAfterEofHandler(ReplyAfterEofOptions options);

// Sends `bytes` of a pattern stream, shuts down its write side first, then reads the peer's stream to EOF.
TcpServer::Handler HalfCloseFirstHandler(uint64_t bytes);

// Starts a server or fails the current test (use in a test body: ASSERT_TRUE(server)).
std::unique_ptr<TcpServer> StartServer(TcpServer::Handler handler, int family = AF_INET,
                                       SocketOptions socket = {}, bool hold_accepts = false, int backlog = 1024);

}  // namespace skproxy::itest
