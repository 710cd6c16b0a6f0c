// The capabilities the README names, tried for real: skproxy started as an unprivileged user holding
// exactly those (setpriv, as systemd's AmbientCapabilities and the image's file capabilities give them)
// loads the kernel path, forces its socket buffers and moves a bulk connection through the sockhash; and
// each one the README calls necessary is: without it, --datapath sockmap refuses to start. Once started, every
// thread holds only the capabilities the README says skproxy keeps, as root and as that user, and the
// kernel path and a reload still work with them.
#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/deploy/readme_capabilities.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"
#include "tests/kernel_support.h"

namespace skproxy::itest {
namespace {

const std::string kReadme = std::string(SKPROXY_SOURCE_DIR) + "/README.md";

// setpriv as nobody with `caps` (names without CAP_) ambient, inheritable and bounding, nothing else.
std::vector<std::string> AsNobodyWith(const std::set<std::string>& caps) {
  std::vector<std::string> names;
  for (const std::string& c : caps) names.push_back("+" + absl::AsciiStrToLower(c));
  const std::string list = names.empty() ? "-all" : "-all," + absl::StrJoin(names, ",");
  return {FindExecutable("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=" + list,
          "--ambient-caps=" + list, "--bounding-set=" + list, "--"};
}

// Capability numbers (linux/capability.h) of the names the README uses.
uint64_t CapMask(const std::set<std::string>& names) {
  const std::map<std::string, int> numbers = {{"NET_BIND_SERVICE", 10}, {"NET_ADMIN", 12}, {"PERFMON", 38}, {"BPF", 39}};
  uint64_t mask = 0;
  for (const std::string& name : names) {
    auto it = numbers.find(name);
    if (it == numbers.end()) ADD_FAILURE() << "unknown capability CAP_" << name;
    else mask |= uint64_t{1} << it->second;
  }
  return mask;
}

// One thread's capability sets and no_new_privs, from /proc/PID/task/TID/status.
struct ThreadPrivileges {
  std::string tid;
  uint64_t effective = ~0ull, permitted = ~0ull, bounding = ~0ull, ambient = ~0ull, inheritable = ~0ull;
  int no_new_privs = -1;
  std::string uid, gid;  // "real effective saved filesystem"
};

std::vector<ThreadPrivileges> ReadThreadPrivileges(pid_t pid) {
  std::vector<ThreadPrivileges> threads;
  const std::string tasks = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = opendir(tasks.c_str());
  if (dir == nullptr) return threads;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    ThreadPrivileges t;
    t.tid = entry->d_name;
    std::ifstream in(tasks + "/" + t.tid + "/status");
    for (std::string line; std::getline(in, line);) {
      std::vector<std::string> kv = absl::StrSplit(line, absl::MaxSplits(':', 1));
      if (kv.size() != 2) continue;
      const std::string value(absl::StripAsciiWhitespace(kv[1]));
      uint64_t* field = kv[0] == "CapEff"   ? &t.effective
                        : kv[0] == "CapPrm" ? &t.permitted
                        : kv[0] == "CapBnd" ? &t.bounding
                        : kv[0] == "CapAmb" ? &t.ambient
                        : kv[0] == "CapInh" ? &t.inheritable
                                            : nullptr;
      if (field != nullptr) absl::SimpleHexAtoi(value, field);
      if (kv[0] == "NoNewPrivs") absl::SimpleAtoi(value, &t.no_new_privs);
      if (kv[0] == "Uid") t.uid = absl::StrJoin(absl::StrSplit(value, absl::ByAnyChar(" \t"), absl::SkipEmpty()), " ");
      if (kv[0] == "Gid") t.gid = absl::StrJoin(absl::StrSplit(value, absl::ByAnyChar(" \t"), absl::SkipEmpty()), " ");
    }
    threads.push_back(t);
  }
  closedir(dir);
  return threads;
}

// Every thread of the proxy holds exactly `kept` (effective and permitted), nothing ambient or
// inheritable, has no_new_privs, and a bounding set within `bounding_at_most`.
void ExpectOnlyKept(const ProxyProcess& proxy, uint64_t kept, uint64_t bounding_at_most) {
  std::vector<ThreadPrivileges> threads = ReadThreadPrivileges(proxy.pid());
  // The main thread, the admin server's, the cluster thread and the workers: all started after the drop.
  EXPECT_GE(threads.size(), 4u);
  for (const ThreadPrivileges& t : threads) {
    EXPECT_EQ(t.effective, kept) << "thread " << t.tid << std::hex << " CapEff " << t.effective;
    EXPECT_EQ(t.permitted, kept) << "thread " << t.tid << std::hex << " CapPrm " << t.permitted;
    EXPECT_EQ(t.ambient, 0u) << "thread " << t.tid << std::hex << " CapAmb " << t.ambient;
    EXPECT_EQ(t.inheritable, 0u) << "thread " << t.tid << std::hex << " CapInh " << t.inheritable;
    EXPECT_EQ(t.bounding & ~bounding_at_most, 0u) << "thread " << t.tid << std::hex << " CapBnd " << t.bounding;
    EXPECT_EQ(t.no_new_privs, 1) << "thread " << t.tid;
  }
}

// 16 MiB echoed byte-exact through `listener`; the kernel path moved bytes.
void ExpectKernelPathEcho(const ProxyProcess& proxy, const SocketAddress& listener) {
  auto before = proxy.Metrics();
  ASSERT_TRUE(before.ok()) << before.status();
  auto fd = Connect(listener, 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EchoResult r = EchoExchange(fd->get(), NextStreamId(), 16 * MiB, DeadlineIn(60s), /*compute_sha=*/true);
  EXPECT_EQ(r.recv.bytes, 16 * MiB) << r.Describe();
  EXPECT_EQ(r.sha_received, r.sha_sent);
  fd->Reset();
  auto after = proxy.Metrics();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_GT(ReadByteCounters(*after).kernel_d2u, ReadByteCounters(*before).kernel_d2u)
      << "the bytes did not go through the sockhash";
}

class CapabilitiesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKPROXY_SKIP_IF_KERNEL_TOO_OLD();
    if (geteuid() != 0) GTEST_SKIP() << "not root: cannot hand out capabilities";
    if (FindExecutable("setpriv").empty()) GTEST_SKIP() << "setpriv (package util-linux) is not installed";
    caps_ = ReadmeCapabilities(kReadme);
    ASSERT_FALSE(caps_.empty()) << "README.md names no capabilities";
  }
  std::set<std::string> caps_;
};

TEST_F(CapabilitiesTest, TheNamedOnesRunTheKernelPathAsNobody) {
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  ProxyConfig config = SimpleProxyConfig("sockmap", {echo->endpoint()});
  config.command_prefix = AsNobodyWith(caps_);
  auto proxy = ProxyProcess::Start(config);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_NE((*proxy)->ReadyLine().find("datapath=sockmap"), std::string::npos) << (*proxy)->ReadyLine();
  auto fd = Connect((*proxy)->listener(), 5s);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EchoResult r = EchoExchange(fd->get(), NextStreamId(), 16 * MiB, DeadlineIn(60s), /*compute_sha=*/true);
  EXPECT_EQ(r.recv.bytes, 16 * MiB) << r.Describe();
  EXPECT_EQ(r.sha_received, r.sha_sent);
  fd->Reset();
  auto m = (*proxy)->Metrics();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GT(ReadByteCounters(*m).kernel_d2u, 0);
  // Every socket option the kernel path sets took: a missing capability would show as a warning here.
  EXPECT_EQ((*proxy)->Stderr().find("buffer of"), std::string::npos) << (*proxy)->Stderr();
}

TEST_F(CapabilitiesTest, EachNecessaryOneIsNeeded) {
  for (const std::string missing : {"BPF", "PERFMON", "NET_ADMIN"}) {
    ASSERT_TRUE(caps_.count(missing)) << "the README does not name CAP_" << missing;
    std::set<std::string> fewer = caps_;
    fewer.erase(missing);
    ProxyConfig config = SimpleProxyConfig("sockmap", {RefusedEndpoint()});
    config.command_prefix = AsNobodyWith(fewer);
    auto proxy = ProxyProcess::Start(config);
    EXPECT_FALSE(proxy.ok()) << "started without CAP_" << missing;
    EXPECT_TRUE(!proxy.ok() && ProxyProcess::IsBpfUnavailable(proxy.status()))
        << "without CAP_" << missing << ": " << (proxy.ok() ? "started" : proxy.status().ToString());
  }
}

// After start skproxy keeps only what the README says it keeps, in every thread, whether started as root
// (everything else leaves even the bounding set) or as nobody with the README's capabilities; the kernel
// path, its forced socket buffers and a reload that opens a new listener still work with what is left.
TEST_F(CapabilitiesTest, KernelPathKeepsOnlyNetAdminAsRootAndAsNobody) {
  const std::set<std::string> kept_per_readme = ReadmeCapabilities(kReadme, "The capabilities skproxy keeps");
  ASSERT_EQ(kept_per_readme, (std::set<std::string>{"NET_ADMIN", "NET_BIND_SERVICE"}))
      << "README.md: the line \"The capabilities skproxy keeps ...\" changed";
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  for (const bool as_root : {true, false}) {
    SCOPED_TRACE(as_root ? "as root" : "as nobody");
    ProxyConfig config = SimpleProxyConfig("sockmap", {echo->endpoint()});
    config.workers = 2;
    if (!as_root) config.command_prefix = AsNobodyWith(caps_);
    auto started = ProxyProcess::Start(config);
    ASSERT_TRUE(started.ok()) << started.status();
    ProxyProcess& proxy = **started;
    EXPECT_NE(proxy.ReadyLine().find("datapath=sockmap"), std::string::npos) << proxy.ReadyLine();
    EXPECT_NE(proxy.Stderr().find("capabilities kept: CAP_NET_ADMIN\n"), std::string::npos) << proxy.StderrTail();
    const uint64_t net_admin = CapMask({"NET_ADMIN"});
    // Root can drop its bounding set (CAP_SETPCAP); nobody keeps the one its launcher gave it.
    ExpectOnlyKept(proxy, net_admin, as_root ? net_admin : CapMask(caps_));
    ExpectKernelPathEcho(proxy, proxy.listener());

    // A reload that opens a new listener: its socket takes the kernel path's forced buffer sizes too.
    ProxyConfig next = proxy.config();
    next.listeners.push_back(ListenerSpec{"more", Loopback4(PickFreePort()), "backend"});
    auto reload = proxy.PostReload(next.ToYaml());
    ASSERT_TRUE(reload.ok()) << reload.status();
    ASSERT_EQ(reload->status, 200) << reload->body;
    ExpectKernelPathEcho(proxy, next.listeners.back().address);
    ExpectOnlyKept(proxy, net_admin, as_root ? net_admin : CapMask(caps_));
    // A socket option refused for want of a capability would show as a warning here.
    EXPECT_EQ(proxy.Stderr().find("buffer of"), std::string::npos) << proxy.Stderr();
    absl::StatusOr<int> status = proxy.Stop(10s);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(*status, 0) << proxy.StderrTail();
  }
}

// `user: nobody`: started as root, every thread runs as nobody once started, holding only what the kernel
// path needs; the kernel path and a reload (the file read as nobody) still work. An unknown user is a config
// error naming the line.
TEST_F(CapabilitiesTest, AConfiguredUserRunsTheKernelPathAsThatUser) {
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  ProxyConfig config = SimpleProxyConfig("sockmap", {echo->endpoint()});
  config.workers = 2;
  config.user = "nobody";
  auto started = ProxyProcess::Start(config);
  ASSERT_TRUE(started.ok()) << started.status();
  ProxyProcess& proxy = **started;
  EXPECT_NE(proxy.Stderr().find("running as uid 65534 gid 65534\n"), std::string::npos) << proxy.StderrTail();
  for (const ThreadPrivileges& t : ReadThreadPrivileges(proxy.pid())) {
    EXPECT_EQ(t.uid, "65534 65534 65534 65534") << "thread " << t.tid;
    EXPECT_EQ(t.gid, "65534 65534 65534 65534") << "thread " << t.tid;
  }
  const uint64_t net_admin = CapMask({"NET_ADMIN"});
  ExpectOnlyKept(proxy, net_admin, net_admin);
  ExpectKernelPathEcho(proxy, proxy.listener());
  ProxyConfig next = proxy.config();
  next.listeners.push_back(ListenerSpec{"more", Loopback4(PickFreePort()), "backend"});
  auto reload = proxy.PostReload(next.ToYaml());
  ASSERT_TRUE(reload.ok()) << reload.status();
  ASSERT_EQ(reload->status, 200) << reload->body;
  ExpectKernelPathEcho(proxy, next.listeners.back().address);
  // The user cannot change on a reload.
  next.user = "root";
  reload = proxy.PostReload(next.ToYaml());
  ASSERT_TRUE(reload.ok()) << reload.status();
  EXPECT_EQ(reload->status, 409) << reload->body;
  EXPECT_NE(reload->body.find("user: cannot change on reload"), std::string::npos) << reload->body;

  ProxyConfig unknown = SimpleProxyConfig("userspace", {echo->endpoint()});
  unknown.user = "no-such-user-skproxy";
  auto refused = ProxyProcess::Start(unknown);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().ToString().find(":4: user: no such user 'no-such-user-skproxy'"), std::string::npos)
      << refused.status();
}

// The user-space path keeps nothing at all; a listener below 1024 keeps CAP_NET_BIND_SERVICE alone (a
// reload may open another such port).
TEST_F(CapabilitiesTest, UserspaceKeepsNoneAndALowPortKeepsOnlyBindService) {
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  {
    auto started = ProxyProcess::Start(SimpleProxyConfig("userspace", {echo->endpoint()}));
    ASSERT_TRUE(started.ok()) << started.status();
    EXPECT_NE((*started)->Stderr().find("capabilities kept: none\n"), std::string::npos) << (*started)->StderrTail();
    ExpectOnlyKept(**started, 0, 0);
    EXPECT_EQ(ShortEcho((*started)->listener(), 64 * KiB, 10s), "");
  }
  uint16_t low = 0;
  for (uint16_t port = 1000; port > 900 && low == 0; --port)
    if (PortIsFree(Loopback4(port))) low = port;
  if (low == 0) GTEST_SKIP() << "no free port in 901..1000 on 127.0.0.1";
  ProxyConfig config = SimpleProxyConfig("userspace", {echo->endpoint()});
  config.listeners[0].address = Loopback4(low);
  auto started = ProxyProcess::Start(config);
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_NE((*started)->Stderr().find("capabilities kept: CAP_NET_BIND_SERVICE\n"), std::string::npos)
      << (*started)->StderrTail();
  const uint64_t bind_service = CapMask({"NET_BIND_SERVICE"});
  ExpectOnlyKept(**started, bind_service, bind_service);
  EXPECT_EQ(ShortEcho((*started)->listener(), 64 * KiB, 10s), "");
}

}  // namespace
}  // namespace skproxy::itest
