#include "tests/integration/host_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

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
