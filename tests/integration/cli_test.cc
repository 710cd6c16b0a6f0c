// The binary's command line and config errors, as a user meets them: exit codes, "FILE:LINE: key:" on
// stderr, and nothing bound when the config is wrong.
#include <unistd.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_helpers.h"
#include "tests/integration/upstreams.h"

namespace skproxy::itest {
namespace {

// A config file in a temp dir, removed afterwards.
class TempConfig {
 public:
  explicit TempConfig(const std::string& text) {
    char tmpl[] = "/tmp/skproxy-cli-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/skproxy.yaml";
    std::ofstream(path_) << text;
  }
  ~TempConfig() {
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
};

CommandResult RunProxy(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {ProxyBinaryPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, 10s);
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(ProxyBinaryPath().c_str(), X_OK) != 0)
      FAIL() << "proxy binary '" << ProxyBinaryPath() << "' is not executable; set SKPROXY_BINARY";
  }
};

std::string GoodConfig() {
  return absl::StrCat("admin: { address: \"127.0.0.1:", PickFreePort(), "\" }\n",
                      "datapath: userspace\n",
                      "listeners:\n",
                      "  - name: web\n",
                      "    address: \"127.0.0.1:", PickFreePort(), "\"\n",
                      "    cluster: backend\n",
                      "clusters:\n",
                      "  - name: backend\n",
                      "    connect_timeout: 1s\n",
                      "    endpoints: [\"127.0.0.1:", PickFreePort(), "\", \"[::1]:", PickFreePort(), "\"]\n");
}

TEST_F(CliTest, HelpExitsZero) {
  CommandResult r = RunProxy({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE((r.out + r.err).find("--config"), std::string::npos) << r.Describe();
}

TEST_F(CliTest, VersionExitsZero) {
  CommandResult r = RunProxy({"--version"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_FALSE((r.out + r.err).empty());
}

// Without the capabilities BPF needs, `auto` says why once and carries every connection in user space,
// counted as a fallback; `sockmap` refuses to start.
std::vector<std::string> WithoutBpfCapabilities() {
  return {FindExecutable("setpriv"), "--bounding-set=-bpf,-sys_admin,-perfmon,-net_admin", "--"};
}

TEST_F(CliTest, AutoFallsBackToUserspaceWithoutBpfPrivilege) {
  if (FindExecutable("setpriv").empty()) GTEST_SKIP() << "setpriv (util-linux) is not installed";
  SKPROXY_SKIP_IF_KERNEL_TOO_OLD();  // the fallback's reason would be the kernel, tested in kernel_version_test
  auto echo = StartServer(EchoHandler());
  ASSERT_TRUE(echo);
  ProxyConfig c = SimpleProxyConfig("auto", {echo->endpoint()});
  c.command_prefix = WithoutBpfCapabilities();
  auto proxy = ProxyProcess::Start(c);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_NE((*proxy)->ReadyLine().find("datapath=userspace"), std::string::npos) << (*proxy)->ReadyLine();
  const std::string err = (*proxy)->Stderr();
  EXPECT_NE(err.find("kernel path unavailable"), std::string::npos) << err;
  EXPECT_NE(err.find("Operation not permitted"), std::string::npos) << "the reason is missing: " << err;
  EXPECT_EQ(ShortEcho((*proxy)->listener(), 1000), "");
  EXPECT_EQ((*proxy)->Metric("skproxy_fallbacks_total", {{"reason", "kernel_path_unavailable"}}), 1);
  EXPECT_EQ((*proxy)->Metric("skproxy_connections_total", {{"datapath", "userspace"}}), 1);
}

TEST_F(CliTest, SockmapRefusesToStartWithoutBpfPrivilege) {
  if (FindExecutable("setpriv").empty()) GTEST_SKIP() << "setpriv (util-linux) is not installed";
  TempConfig cfg(GoodConfig());
  std::vector<std::string> argv = WithoutBpfCapabilities();
  for (const std::string& a : {ProxyBinaryPath(), std::string("--config"), cfg.path(), std::string("--datapath"),
                               std::string("sockmap")})
    argv.push_back(a);
  CommandResult r = RunCommand(argv, 10s);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("kernel path unavailable"), std::string::npos) << r.Describe();
}

TEST_F(CliTest, CheckConfigAcceptsAGoodFile) {
  TempConfig cfg(GoodConfig());
  CommandResult r = RunProxy({"--config", cfg.path(), "--check-config"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE((r.out + r.err).find("config ok"), std::string::npos) << r.Describe();
}

// A bad config: its text with {ADMIN} {PORT} {PORT2} {UP} placeholders, the lines where the error may be
// reported, and a fragment of the key that must be named.
struct BadConfigCase {
  std::string name;
  std::string yaml;
  std::vector<int> lines;
  std::string key;
};

void PrintTo(const BadConfigCase& c, std::ostream* os) { *os << c.name; }

class BadConfig : public CliTest, public ::testing::WithParamInterface<BadConfigCase> {};

const char* kHead =
    "admin: { address: \"127.0.0.1:{ADMIN}\" }\n"  // 1
    "datapath: userspace\n";                        // 2

std::vector<BadConfigCase> BadConfigCases() {
  const std::string clusters =
      "clusters:\n"
      "  - name: backend\n"
      "    connect_timeout: 1s\n"
      "    endpoints: [\"127.0.0.1:{UP}\"]\n";
  return {
      {"UnknownKey",
       std::string(kHead) +
           "listeners:\n"                           // 3
           "  - name: web\n"                        // 4
           "    address: \"127.0.0.1:{PORT}\"\n"    // 5
           "    cluster: backend\n"                 // 6
           "    colour: blue\n" +                   // 7
           clusters,
       {7}, "colour"},
      {"WrongType",
       std::string(kHead) +
           "workers: many\n"                        // 3
           "listeners:\n"
           "  - name: web\n"
           "    address: \"127.0.0.1:{PORT}\"\n"
           "    cluster: backend\n" +
           clusters,
       {3}, "workers"},
      {"BadAddress",
       std::string(kHead) +
           "listeners:\n"                           // 3
           "  - name: web\n"                        // 4
           "    address: \"127.0.0.1:70000\"\n"     // 5
           "    cluster: backend\n" +
           clusters,
       {5}, "address"},
      {"DanglingCluster",
       std::string(kHead) +
           "listeners:\n"                           // 3
           "  - name: web\n"                        // 4
           "    address: \"127.0.0.1:{PORT}\"\n"    // 5
           "    cluster: nosuch\n" +                // 6
           clusters,
       {6}, "cluster"},
      {"DuplicatePort",
       std::string(kHead) +
           "listeners:\n"                           // 3
           "  - name: web\n"                        // 4
           "    address: \"127.0.0.1:{PORT}\"\n"    // 5
           "    cluster: backend\n"                 // 6
           "  - name: web2\n"                       // 7
           "    address: \"127.0.0.1:{PORT}\"\n"    // 8
           "    cluster: backend\n" +               // 9
           clusters,
       {7, 8}, "listeners[1]"},
  };
}

// Finds "PATH:LINE: key...:" (or with the file's base name) on stderr for one of `lines`; returns the
// matching line or "".
std::string FindError(const std::string& err, const std::string& path, const std::vector<int>& lines,
                      const std::string& key) {
  std::string base = path.substr(path.rfind('/') + 1);
  for (int line : lines) {
    for (const std::string& file : {path, base}) {
      std::string prefix = absl::StrCat(file, ":", line, ": ");
      for (size_t at = err.find(prefix); at != std::string::npos; at = err.find(prefix, at + 1)) {
        if (at > 0 && err[at - 1] != '\n' && err[at - 1] != ' ' && err[at - 1] != '/') continue;
        std::string rest = err.substr(at + prefix.size());
        rest = rest.substr(0, rest.find('\n'));
        size_t colon = rest.find(": ");
        if (colon != std::string::npos && rest.substr(0, colon).find(key) != std::string::npos)
          return absl::StrCat(prefix, rest);
      }
    }
  }
  return "";
}

TEST_P(BadConfig, ExitsTwoNamingFileLineAndKeyAndBindsNothing) {
  const BadConfigCase& c = GetParam();
  const SocketAddress admin = Loopback4(PickFreePort()), listener = Loopback4(PickFreePort());
  std::string yaml = absl::StrReplaceAll(c.yaml, {{"{ADMIN}", std::to_string(admin.port())},
                                                  {"{PORT}", std::to_string(listener.port())},
                                                  {"{UP}", std::to_string(PickFreePort())}});
  TempConfig cfg(yaml);

  // --check-config: validation only.
  CommandResult check = RunProxy({"--config", cfg.path(), "--check-config"});
  EXPECT_EQ(check.exit_code, 2) << check.Describe();
  EXPECT_NE(FindError(check.err, cfg.path(), c.lines, c.key), "")
      << "want \"" << cfg.path() << ":" << c.lines[0] << ": ..." << c.key << "...:\" on stderr\n" << check.Describe()
      << "\nconfig:\n" << yaml;

  // A real start with the ports held by this test: a proxy that bound before validating would report the
  // busy port instead of the config error.
  {
    auto hold_admin = Listen(admin, 1);
    auto hold_listener = Listen(listener, 1);
    ASSERT_TRUE(hold_admin.ok() && hold_listener.ok());
    CommandResult r = RunProxy({"--config", cfg.path()});
    EXPECT_EQ(r.exit_code, 2) << r.Describe();
    EXPECT_NE(FindError(r.err, cfg.path(), c.lines, c.key), "") << r.Describe();
  }
  // And with the ports free: still exit 2, and the ports are free afterwards.
  CommandResult r = RunProxy({"--config", cfg.path()});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_TRUE(PortIsFree(admin));
  EXPECT_TRUE(PortIsFree(listener));
}

INSTANTIATE_TEST_SUITE_P(BadConfig, BadConfig, ::testing::ValuesIn(BadConfigCases()),
                         [](const ::testing::TestParamInfo<BadConfigCase>& info) { return info.param.name; });

}  // namespace
}  // namespace skproxy::itest
