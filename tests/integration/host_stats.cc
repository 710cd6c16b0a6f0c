#include "tests/integration/host_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace skproxy::itest {

namespace {

std::string ReadFileToString(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

uint64_t MemAvailableBytes() {
  FILE* f = fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  uint64_t v = 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "MemAvailable:", 13) == 0) {
      v = strtoull(line + 13, nullptr, 10) * 1024;
      break;
    }
  }
  fclose(f);
  return v;
}

MemAvailableSampler::MemAvailableSampler() : baseline_(MemAvailableBytes()), min_(baseline_) {
  thread_ = std::thread([this] {
    while (!stop_.load()) {
      uint64_t v = MemAvailableBytes();
      uint64_t cur = min_.load();
      while (v && v < cur && !min_.compare_exchange_weak(cur, v)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // sampling period, not synchronisation
    }
  });
}

MemAvailableSampler::~MemAvailableSampler() {
  stop_ = true;
  thread_.join();
}

uint64_t ProcessRssBytes(pid_t pid) {
  std::string text = ReadFileToString(absl::StrCat("/proc/", pid, "/status"));
  size_t at = text.find("VmRSS:");
  if (at == std::string::npos) return 0;
  return strtoull(text.c_str() + at + 6, nullptr, 10) * 1024;
}

std::vector<AddressRange> AnonymousMappingsInUnitsOf(pid_t pid, uint64_t unit) {
  std::vector<AddressRange> out;
  std::ifstream maps(absl::StrCat("/proc/", pid, "/maps"));
  for (std::string line; std::getline(maps, line);) {
    // start-end perms offset dev inode [path]: anonymous when the inode is 0 and there is no path.
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() != 5 || f[1] != "rw-p" || f[4] != "0") continue;
    std::vector<absl::string_view> range = absl::StrSplit(f[0], '-');
    if (range.size() != 2) continue;
    const uint64_t start = strtoull(std::string(range[0]).c_str(), nullptr, 16);
    const uint64_t end = strtoull(std::string(range[1]).c_str(), nullptr, 16);
    if (end > start && (end - start) % unit == 0) out.push_back({start, end});
  }
  return out;
}

uint64_t ResidentBytes(pid_t pid, const std::vector<AddressRange>& ranges) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const int fd = open(absl::StrCat("/proc/", pid, "/pagemap").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  uint64_t resident = 0;
  std::vector<uint64_t> entries(4096);
  for (const AddressRange& r : ranges) {
    for (uint64_t at = r.start; at < r.end;) {
      const size_t pages = static_cast<size_t>(std::min<uint64_t>(entries.size(), (r.end - at) / page));
      const ssize_t n = pread(fd, entries.data(), pages * sizeof(uint64_t), static_cast<off_t>(at / page * sizeof(uint64_t)));
      if (n <= 0) break;
      for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(uint64_t); ++i)
        if (entries[i] >> 63) resident += page;  // bit 63: the page is present
      at += static_cast<uint64_t>(n) / sizeof(uint64_t) * page;
    }
  }
  close(fd);
  return resident;
}

uint64_t TcpRetransSegs() {
  std::string text = ReadFileToString("/proc/thread-self/net/snmp");
  std::vector<std::string> tcp_lines;
  for (absl::string_view line : absl::StrSplit(text, '\n'))
    if (absl::StartsWith(line, "Tcp:")) tcp_lines.emplace_back(line);
  if (tcp_lines.size() < 2) return 0;
  std::vector<std::string> names = absl::StrSplit(tcp_lines[0], ' ', absl::SkipEmpty());
  std::vector<std::string> values = absl::StrSplit(tcp_lines[1], ' ', absl::SkipEmpty());
  for (size_t i = 0; i < names.size() && i < values.size(); i++)
    if (names[i] == "RetransSegs") return strtoull(values[i].c_str(), nullptr, 10);
  return 0;
}

bool HasSynSentTo(uint16_t remote_port) {
  for (const char* file : {"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"}) {
    std::string text = ReadFileToString(file);
    bool header = true;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (header) {
        header = false;
        continue;
      }
      std::vector<absl::string_view> cols = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (cols.size() < 4) continue;
      absl::string_view rem = cols[2];
      size_t colon = rem.rfind(':');
      if (colon == absl::string_view::npos) continue;
      unsigned port = strtoul(std::string(rem.substr(colon + 1)).c_str(), nullptr, 16);
      if (port == remote_port && cols[3] == "02") return true;
    }
  }
  return false;
}

bool RaiseOpenFileLimit(uint64_t descriptors) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return false;
  if (limit.rlim_cur >= descriptors) return true;
  limit.rlim_cur = descriptors;
  if (limit.rlim_max < descriptors) limit.rlim_max = descriptors;
  return setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

}  // namespace skproxy::itest
