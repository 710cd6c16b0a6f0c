#include "tests/integration/netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "tests/integration/command.h"
#include "absl/strings/str_split.h"
#include "absl/strings/numbers.h"

#include <fstream>

namespace skproxy::itest {

absl::StatusOr<std::unique_ptr<ScopedNetns>> ScopedNetns::Enter() {
  std::unique_ptr<ScopedNetns> ns(new ScopedNetns());
  ns->original_ = UniqueFd(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!ns->original_.valid()) return absl::UnavailableError(absl::StrCat("open own netns: ", strerror(errno)));
  if (unshare(CLONE_NEWNET) != 0) return absl::UnavailableError(absl::StrCat("unshare(CLONE_NEWNET): ", strerror(errno)));
  UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (!s.valid() || ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return absl::UnavailableError("SIOCGIFFLAGS lo");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0)
    return absl::UnavailableError(absl::StrCat("bring lo up: ", strerror(errno)));
  return ns;
}

ScopedNetns::~ScopedNetns() {
  if (original_.valid() && setns(original_.get(), CLONE_NEWNET) != 0) {
    // The test thread would stay in the namespace and every later test would run there: fail loudly.
    fprintf(stderr, "FATAL: setns back to the original network namespace failed: %s\n", strerror(errno));
    abort();
  }
}

absl::Status WriteSysctl(const std::string& path, const std::string& value) {
  const std::string file = "/proc/sys/" + path;
  std::ofstream out(file);
  out << value << "\n";
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write \"", value, "\" to ", file));
  return absl::OkStatus();
}

absl::StatusOr<std::array<uint64_t, 3>> ReadSysctlTriple(const std::string& path) {
  const std::string file = "/proc/sys/" + path;
  std::ifstream in(file);
  std::array<uint64_t, 3> values{};
  in >> values[0] >> values[1] >> values[2];
  if (!in) return absl::UnavailableError(absl::StrCat("cannot read three numbers from ", file));
  return values;
}

uint64_t NetstatCounter(const std::string& group, const std::string& name) {
  // Pairs of lines: "TcpExt: Name1 Name2 ..." then "TcpExt: value1 value2 ...".
  std::ifstream in("/proc/thread-self/net/netstat");
  std::string names, values;
  while (std::getline(in, names) && std::getline(in, values)) {
    std::vector<std::string> n = absl::StrSplit(names, ' ', absl::SkipEmpty());
    std::vector<std::string> v = absl::StrSplit(values, ' ', absl::SkipEmpty());
    if (n.empty() || n[0] != group + ":" || n.size() != v.size()) continue;
    for (size_t i = 1; i < n.size(); ++i) {
      uint64_t value = 0;
      if (n[i] == name && absl::SimpleAtoi(v[i], &value)) return value;
    }
  }
  return 0;
}

uint64_t TcpMemoryPages() {
  std::ifstream in("/proc/thread-self/net/sockstat");
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, "TCP:")) continue;
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    for (size_t i = 0; i + 1 < f.size(); ++i) {
      uint64_t pages = 0;
      if (f[i] == "mem" && absl::SimpleAtoi(f[i + 1], &pages)) return pages;
    }
  }
  return 0;
}

absl::Status InstallTcpLoss(const std::vector<std::string>& matches, int percent) {
  std::string nft = FindExecutable("nft");
  if (nft.empty()) return absl::UnavailableError("nft (package nftables) is not installed");
  std::vector<std::vector<std::string>> commands = {
      {nft, "add", "table", "inet", "skt"},
      // The input hook, not output: a segment dropped at output never left TCP (the sender gets -EPERM
      // back and simply sends it again later, with no retransmission), so only a drop on the receiving
      // side makes the peer retransmit. Measured: output-hook drops gave 357 drops, 6 retransmissions.
      {nft, "add", "chain", "inet", "skt", "i", "{ type filter hook input priority 0; }"},
  };
  for (const auto& m : matches) {
    std::vector<std::string> cmd = {nft, "add", "rule", "inet", "skt", "i", "tcp"};
    for (absl::string_view w : absl::StrSplit(m, ' ', absl::SkipEmpty())) cmd.emplace_back(std::string(w));
    for (const char* w : {"numgen", "random", "mod", "100", "<"}) cmd.emplace_back(w);
    cmd.push_back(std::to_string(percent));
    cmd.push_back("counter");
    cmd.push_back("drop");
    commands.push_back(cmd);
  }
  for (const auto& cmd : commands) {
    CommandResult r = RunCommand(cmd, 10s);
    if (r.exit_code != 0)
      return absl::UnavailableError(absl::StrCat("'", absl::StrJoin(cmd, " "), "' failed: ", r.Describe()));
  }
  return absl::OkStatus();
}

uint64_t NftDroppedPackets() {
  std::string nft = FindExecutable("nft");
  if (nft.empty()) return 0;
  CommandResult r = RunCommand({nft, "list", "table", "inet", "skt"}, 10s);
  uint64_t total = 0;
  for (size_t at = r.out.find("counter packets "); at != std::string::npos;
       at = r.out.find("counter packets ", at + 1))
    total += strtoull(r.out.c_str() + at + 16, nullptr, 10);
  return total;
}

}  // namespace skproxy::itest
