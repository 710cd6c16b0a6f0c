// skproxy_itest_upstream ADDRESS: the echo upstream of upstream_process.h, in a process of its own. Prints
// "listening on ADDRESS" once bound, then serves until it is killed (or, as a bound, for an hour).
#include <stdio.h>

#include <thread>

#include "tests/integration/upstreams.h"

int main(int argc, char** argv) {
  using namespace skproxy::itest;
  if (argc != 2) {
    fprintf(stderr, "usage: %s IP:PORT\n", argv[0]);
    return 2;
  }
  absl::StatusOr<skproxy::SocketAddress> address = skproxy::ParseSocketAddress(argv[1]);
  if (!address.ok()) {
    fprintf(stderr, "%s\n", std::string(address.status().message()).c_str());
    return 2;
  }
  TcpServer::Options options;
  options.address = *address;
  options.backlog = 4096;
  EchoOptions echo;
  echo.reset_on_close = true;
  absl::StatusOr<std::unique_ptr<TcpServer>> server = TcpServer::Start(options, EchoHandler(echo));
  if (!server.ok()) {
    fprintf(stderr, "%s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  printf("listening on %s\n", (*server)->endpoint().ToString().c_str());
  fflush(stdout);
  // Waiting to be killed is this process's job; the hour only bounds it should nobody do so.
  std::this_thread::sleep_for(std::chrono::hours(1));
  return 0;
}
