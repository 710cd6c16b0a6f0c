// max_connections of a listener or a cluster: a count shared by every worker, taken before a connection
// uses the thing it limits and given back when the connection ends.
#pragma once

#include <atomic>
#include <cstdint>

namespace skproxy {

class ConnectionLimit {
 public:
  explicit ConnectionLimit(uint32_t max) : max_(max) {}  // 0: no limit (still counted)

  // False, and nothing taken, when `max` connections hold it already.
  bool TryAcquire() {
    const int64_t now = active_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (max_ != 0 && now > max_) {
      active_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  void Release() { active_.fetch_sub(1, std::memory_order_relaxed); }
  int64_t active() const { return active_.load(std::memory_order_relaxed); }
  uint32_t max() const { return max_; }

 private:
  const uint32_t max_;
  std::atomic<int64_t> active_{0};
};

}  // namespace skproxy
