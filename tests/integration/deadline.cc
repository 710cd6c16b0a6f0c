#include "tests/integration/deadline.h"

#include <algorithm>
#include <thread>

namespace skproxy::itest {

int PollTimeoutMs(Deadline deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left, 1000));  // re-check the clock at least once a second
}

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

bool WaitFor(const std::function<bool()>& cond, Millis timeout, Millis interval) {
  Deadline deadline = DeadlineIn(timeout);
  for (;;) {
    if (cond()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

bool PaceUntil(Clock::time_point until, Deadline deadline, const std::atomic<bool>* stop) {
  while (Clock::now() < until) {
    if (Clock::now() >= deadline) return false;
    if (stop && stop->load()) return false;
    auto slice = std::min<Clock::duration>(until - Clock::now(), 50ms);
    std::this_thread::sleep_for(slice);
  }
  return true;
}

}  // namespace skproxy::itest
