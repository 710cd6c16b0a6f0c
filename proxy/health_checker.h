// Active health checks of one cluster's endpoints, run on the cluster thread: every `interval`, a TCP
// connect (type tcp) or a GET whose status line must carry `expected_status` (type http), each bounded by
// `timeout`. `unhealthy_threshold` failures in a row take a healthy endpoint out of rotation,
// `healthy_threshold` passes in a row bring it back. Endpoints start healthy and the first check's
// result counts at once, so a dead endpoint is out within one timeout of start. Every address of a host
// name is checked on its own; the probes follow the cluster's current set (an address DNS adds is checked
// at once, one it removes is no longer checked).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "proxy/cluster.h"
#include "proxy/poll_set.h"
#include "proxy/unique_fd.h"

namespace skproxy {

// The status code in the first bytes of an HTTP/1.x response ("HTTP/1.1 200 OK\r\n..."): the code (100..999),
// 0 when the bytes are not an HTTP status line, -1 when more bytes are needed to tell.
int ParseHttpStatus(std::string_view response);

class HealthChecker final : public LoopTask {
 public:
  explicit HealthChecker(ClusterState& cluster);
  void Prepare(absl::Time now, PollSet& set, absl::Time& wake) override;
  void Dispatch(absl::Time now, const PollSet& set) override;

 private:
  enum class Phase { kWaiting, kConnecting, kSending, kReading };
  struct Probe {
    std::shared_ptr<EndpointState> endpoint;
    Phase phase = Phase::kWaiting;
    absl::Time next;      // kWaiting: when to start
    absl::Time deadline;  // otherwise: when the check has failed
    UniqueFd fd;
    std::string request;  // http: the bytes still to send
    std::string response;
    size_t poll_index = 0;
    bool polled = false;
    bool first = true;  // no result yet: the first one counts at once
    uint32_t passes = 0, failures = 0;
  };

  // Probes for the cluster's current endpoints: kept for those that stay, new ones for new endpoints.
  void Follow(absl::Time now);
  void Begin(size_t i, absl::Time now);
  void Advance(size_t i, short revents, absl::Time now);
  void Finish(size_t i, bool passed, absl::Time now);

  ClusterState& cluster_;
  const config::HealthCheck& config_;
  std::vector<Probe> probes_;
  std::shared_ptr<const HostSet> followed_;  // the set probes_ was built for
};

}  // namespace skproxy
