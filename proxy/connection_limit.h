// max_connections of a listener or a cluster: a count shared by every worker, taken before a connection
// uses the thing it limits and given back when the connection ends.
#pragma once

#include <atomic>
#include <cstdint>

namespace skproxy {

class ConnectionLimit {
 public:
  explicit ConnectionLimit(uint32_t max) : max_(max) {}  // 0: no limit

  // False, and nothing taken, when `max` connections hold it already. Without a limit nothing is counted:
  // the shared counter would be one more contended cache line per connection for no reader.
  bool TryAcquire() {
    if (max_ == 0) return true;
    const int64_t now = active_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (now > max_) {
      active_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  void Release() {
    if (max_ != 0) active_.fetch_sub(1, std::memory_order_relaxed);
  }
  uint32_t max() const { return max_; }

 private:
  const uint32_t max_;
  std::atomic<int64_t> active_{0};
};

}  // namespace skproxy
