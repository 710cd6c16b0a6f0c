// What the host reports about memory, a process, and TCP in this thread's network namespace; this
// process's descriptor limit.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace skproxy::itest {

// MemAvailable from /proc/meminfo, bytes.
uint64_t MemAvailableBytes();
// Samples MemAvailable every 20 ms in a thread; max_drop() is baseline - lowest sample seen.
class MemAvailableSampler {
 public:
  MemAvailableSampler();
  ~MemAvailableSampler();
  int64_t max_drop() const { return static_cast<int64_t>(baseline_) - static_cast<int64_t>(min_.load()); }
  uint64_t baseline() const { return baseline_; }

 private:
  uint64_t baseline_;
  std::atomic<uint64_t> min_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// VmRSS of a process, bytes (0 if unknown).
uint64_t ProcessRssBytes(pid_t pid);

// An address range [start, end) of a process.
struct AddressRange {
  uint64_t start;
  uint64_t end;
};
// The private anonymous read-write mappings of a process whose size is a non-zero multiple of `unit`
// bytes (from /proc/PID/maps): how a test finds fixed-size pools the process mapped, before anything
// else could have been mapped next to them (adjacent mappings of the same kind merge into one).
std::vector<AddressRange> AnonymousMappingsInUnitsOf(pid_t pid, uint64_t unit);
// Bytes of `ranges` resident in the process's memory now, page by page from /proc/PID/pagemap (root):
// exact whatever the mappings around them became since.
uint64_t ResidentBytes(pid_t pid, const std::vector<AddressRange>& ranges);

// Raises this process's RLIMIT_NOFILE (soft, and hard if it must: root) to at least `descriptors`, for a
// test that holds thousands of sockets; children (the proxy) inherit it. False if it could not.
bool RaiseOpenFileLimit(uint64_t descriptors);

// Readers of this thread's network namespace (/proc/thread-self/net/...).
uint64_t TcpRetransSegs();  // Tcp: RetransSegs from snmp
// True if a socket in SYN-SENT towards `remote_port` on loopback exists.
bool HasSynSentTo(uint16_t remote_port);

}  // namespace skproxy::itest
