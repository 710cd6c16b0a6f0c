// Time in the tests: deadlines that bound every wait, polling for a condition, and pacing a load.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>

namespace skproxy::itest {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
using Millis = std::chrono::milliseconds;

inline Deadline DeadlineIn(Millis d) { return Clock::now() + d; }
double SecondsSince(Clock::time_point t);
// The poll() timeout that waits until `deadline` (0 once it passed), capped at a second so that a caller
// polling in a loop re-checks the clock.
int PollTimeoutMs(Deadline deadline);
// Polls `cond` every `interval` until it holds or `timeout` passes; returns the last value of `cond`.
bool WaitFor(const std::function<bool()>& cond, Millis timeout, Millis interval = 10ms);
// Sleeps until `until`, in slices, so that `stop` (optional) and the deadline are honoured; false if either
// cut it short. This paces a reader or a writer (it is the load a test applies), it synchronises nothing.
bool PaceUntil(Clock::time_point until, Deadline deadline, const std::atomic<bool>* stop);

}  // namespace skproxy::itest
