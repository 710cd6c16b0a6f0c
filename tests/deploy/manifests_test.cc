// The deployment artefacts (deploy/systemd, deploy/kubernetes, deploy/Dockerfile, deploy/sidecar) read
// and checked against the built binary and the README: every flag they pass exists in `skproxy --help`
// and every config they carry passes `skproxy --check-config`; probes and scrapes point at the admin
// port of the config the proxy runs with, on the paths it serves; the capabilities granted are the ones
// the README names; the time a stop may take exceeds the drain; the sidecar's rules match its config.
#include <yaml-cpp/yaml.h>

#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "config/config.h"
#include "gtest/gtest.h"
#include "tests/integration/command.h"
#include "tests/integration/proxy_process.h"
#include "tests/deploy/readme_capabilities.h"

namespace skproxy::itest {
namespace {

const std::string kSource = SKPROXY_SOURCE_DIR;
constexpr char kBinaryInImage[] = "/usr/local/bin/skproxy";
// drain_timeout when a config leaves it out (the admin contract of README, "Operations").
constexpr absl::Duration kDefaultDrain = absl::Seconds(30);

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

// Every "--flag" that `skproxy --help` lists.
std::set<std::string> HelpFlags() {
  CommandResult help = RunCommand({ProxyBinaryPath(), "--help"}, 10s);
  EXPECT_EQ(help.exit_code, 0) << help.Describe();
  std::set<std::string> flags;
  for (absl::string_view word : absl::StrSplit(help.out, absl::ByAnyChar(" \n[]|,"), absl::SkipEmpty())) {
    if (absl::StartsWith(word, "--")) flags.insert(std::string(word.substr(0, word.find('='))));
  }
  return flags;
}

std::vector<YAML::Node> LoadDocuments(const std::string& path) {
  std::vector<YAML::Node> docs = YAML::LoadAllFromFile(path);
  EXPECT_FALSE(docs.empty()) << path;
  return docs;
}

YAML::Node FindKind(const std::vector<YAML::Node>& docs, const std::string& kind) {
  for (const YAML::Node& doc : docs)
    if (doc["kind"] && doc["kind"].as<std::string>() == kind) return doc;
  ADD_FAILURE() << "no " << kind;
  return YAML::Node();
}

// The skproxy config a ConfigMap carries, written to a file so the binary can check it.
std::string ConfigMapConfig(const YAML::Node& config_map, const std::string& name) {
  return WriteTemp(name, config_map["data"]["skproxy.yaml"].as<std::string>());
}

config::Config MustParse(const std::string& path) {
  absl::StatusOr<config::Config> config = config::LoadConfigFile(path);
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : config::Config{};
}

// drain_timeout of a config file (not yet a key of every build: read from the YAML, default if absent).
absl::Duration DrainTimeout(const std::string& path) {
  YAML::Node root = YAML::LoadFile(path);
  absl::Duration d = kDefaultDrain;
  if (root["drain_timeout"]) {
    EXPECT_TRUE(absl::ParseDuration(root["drain_timeout"].as<std::string>(), &d));
  }
  return d;
}

// Runs the binary with the manifest's arguments (the config path replaced by the config it mounts) plus
// --check-config: flags and config are accepted together, exactly as the manifest would start it.
void ExpectStartsWith(std::vector<std::string> args, const std::string& mounted_config, const std::string& local,
                      const std::string& what) {
  const std::set<std::string> flags = HelpFlags();
  for (const std::string& arg : args) {
    if (absl::StartsWith(arg, "--")) {
      EXPECT_TRUE(flags.count(arg.substr(0, arg.find('=')))) << what << ": " << arg << " is not in skproxy --help";
    }
  }
  std::vector<std::string> argv = {ProxyBinaryPath()};
  for (std::string& arg : args) argv.push_back(arg == mounted_config ? local : arg);
  if (std::find(argv.begin(), argv.end(), "--check-config") == argv.end()) argv.push_back("--check-config");
  CommandResult r = RunCommand(argv, 10s);
  EXPECT_EQ(r.exit_code, 0) << what << ": " << r.Describe();
}

std::set<std::string> ReadmeCapabilities() {
  std::set<std::string> caps = itest::ReadmeCapabilities(kSource + "/README.md");
  EXPECT_FALSE(caps.empty()) << "README.md has no line 'The capabilities skproxy needs: CAP_...'";
  return caps;
}

std::set<std::string> Strings(const YAML::Node& list) {
  std::set<std::string> out;
  for (const YAML::Node& item : list) out.insert(item.as<std::string>());
  return out;
}

// "Key=value" lines of a systemd unit, by key (a key may repeat).
std::multimap<std::string, std::string> UnitEntries(const std::string& path) {
  std::multimap<std::string, std::string> entries;
  for (absl::string_view line : absl::StrSplit(ReadFile(path), '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#' || line[0] == '[') continue;
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    entries.emplace(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
  }
  return entries;
}

std::string UnitValue(const std::multimap<std::string, std::string>& unit, const std::string& key) {
  auto it = unit.find(key);
  EXPECT_NE(it, unit.end()) << key;
  return it == unit.end() ? "" : it->second;
}

std::set<std::string> WithoutPrefix(absl::string_view words) {
  std::set<std::string> out;
  for (absl::string_view w : absl::StrSplit(words, ' ', absl::SkipEmpty())) {
    absl::ConsumePrefix(&w, "CAP_");
    out.insert(std::string(w));
  }
  return out;
}

int Port(const YAML::Node& probe) { return probe["httpGet"]["port"].as<int>(); }

class ManifestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    default_admin_port_ = config::LoadDefaultConfig()->admin.address.port();
    ASSERT_EQ(default_admin_port_, 9901);
  }
  int default_admin_port_ = 0;
};

TEST_F(ManifestsTest, SystemdUnit) {
  const std::string path = kSource + "/deploy/systemd/skproxy.service";
  auto unit = UnitEntries(path);
  // Every command that runs skproxy: its flags exist, and it accepts the shipped edge config.
  int commands = 0;
  for (const char* key : {"ExecStartPre", "ExecStart", "ExecReload"}) {
    auto [begin, end] = unit.equal_range(key);
    for (auto it = begin; it != end; ++it) {
      std::vector<std::string> argv = absl::StrSplit(it->second, ' ', absl::SkipEmpty());
      if (argv.empty() || argv[0] != kBinaryInImage) continue;
      ++commands;
      ExpectStartsWith({argv.begin() + 1, argv.end()}, "/etc/skproxy/skproxy.yaml",
                       kSource + "/config/examples/edge.yaml", absl::StrCat(key, "=", it->second));
    }
  }
  EXPECT_EQ(commands, 3);
  EXPECT_EQ(UnitValue(unit, "ExecReload").find("kill"), std::string::npos);  // the check comes first
  auto reload = unit.equal_range("ExecReload");
  EXPECT_EQ(std::prev(reload.second)->second, "/bin/kill -HUP $MAINPID");
  EXPECT_EQ(UnitValue(unit, "KillSignal"), "SIGTERM");
  absl::Duration stop;
  ASSERT_TRUE(absl::ParseDuration(UnitValue(unit, "TimeoutStopSec"), &stop));
  EXPECT_GT(stop, DrainTimeout(kSource + "/config/examples/edge.yaml"));
  const std::set<std::string> caps = ReadmeCapabilities();
  EXPECT_EQ(WithoutPrefix(UnitValue(unit, "AmbientCapabilities")), caps);
  EXPECT_EQ(WithoutPrefix(UnitValue(unit, "CapabilityBoundingSet")), caps);
  EXPECT_EQ(UnitValue(unit, "DynamicUser"), "yes");
  EXPECT_EQ(UnitValue(unit, "NoNewPrivileges"), "yes");
  EXPECT_EQ(UnitValue(unit, "ProtectSystem"), "strict");
  EXPECT_EQ(UnitValue(unit, "PrivateTmp"), "yes");
}

TEST_F(ManifestsTest, SystemdAnalyzeVerifyIsClean) {
  const std::string analyze = FindExecutable("systemd-analyze");
  if (analyze.empty()) GTEST_SKIP() << "systemd-analyze (package systemd) is not installed";
  // A root of its own where the unit's commands exist (/usr/local/bin/skproxy is the built binary) beside
  // the host's system units (the targets it orders itself after).
  if (access("/lib/systemd/system/sysinit.target", R_OK) != 0)
    GTEST_SKIP() << "no /lib/systemd/system/sysinit.target: the units the service depends on are missing";
  const std::string root = ::testing::TempDir() + "unit-root";
  CommandResult prepared = RunCommand(
      {"/bin/sh", "-c",
       "rm -rf \"$0\" && mkdir -p \"$0/usr/local/bin\" \"$0/etc/systemd/system\" \"$0/bin\" "
       "\"$0/usr/lib/systemd\" && cp -a /lib/systemd/system \"$0/usr/lib/systemd/\" && "
       "cp \"$1\" \"$0/usr/local/bin/skproxy\" && cp /bin/kill \"$0/bin/kill\" && "
       "cp \"$2\" \"$0/etc/systemd/system/\"",
       root, ProxyBinaryPath(), kSource + "/deploy/systemd/skproxy.service"},
      30s);
  ASSERT_EQ(prepared.exit_code, 0) << prepared.Describe();
  CommandResult r = RunCommand({analyze, "verify", "--root=" + root, "--man=no", "skproxy.service"}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(absl::StripAsciiWhitespace(r.err), "") << "systemd-analyze verify is not clean";
}

TEST_F(ManifestsTest, DaemonSet) {
  auto docs = LoadDocuments(kSource + "/deploy/kubernetes/daemonset.yaml");
  YAML::Node ds = FindKind(docs, "DaemonSet");
  YAML::Node pod = ds["spec"]["template"];
  YAML::Node spec = pod["spec"];
  EXPECT_TRUE(spec["hostNetwork"].as<bool>());
  ASSERT_EQ(spec["containers"].size(), 1u);
  YAML::Node c = spec["containers"][0];

  const std::string config_path = ConfigMapConfig(
      FindKind(LoadDocuments(kSource + "/deploy/kubernetes/configmap.yaml"), "ConfigMap"), "daemonset.yaml");
  config::Config config = MustParse(config_path);
  const int admin_port = config.admin.address.port();
  EXPECT_EQ(admin_port, default_admin_port_);
  ExpectStartsWith(c["args"].as<std::vector<std::string>>(), "/etc/skproxy/skproxy.yaml", config_path,
                   "DaemonSet args");
  EXPECT_EQ(c["volumeMounts"][0]["mountPath"].as<std::string>(), "/etc/skproxy");

  EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"].as<std::string>(), "/healthz");
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"].as<std::string>(), "/ready");
  EXPECT_EQ(Port(c["livenessProbe"]), admin_port);
  EXPECT_EQ(Port(c["readinessProbe"]), admin_port);
  EXPECT_EQ(pod["metadata"]["annotations"]["prometheus.io/port"].as<std::string>(), std::to_string(admin_port));
  EXPECT_EQ(pod["metadata"]["annotations"]["prometheus.io/path"].as<std::string>(), "/metrics");
  // The admin listener must be reachable where the kubelet and Prometheus connect: the node's address.
  EXPECT_EQ(config.admin.address.ToString(), absl::StrCat("0.0.0.0:", admin_port));

  EXPECT_EQ(Strings(c["securityContext"]["capabilities"]["add"]), ReadmeCapabilities());
  EXPECT_EQ(Strings(c["securityContext"]["capabilities"]["drop"]), std::set<std::string>{"ALL"});
  EXPECT_TRUE(c["securityContext"]["runAsNonRoot"].as<bool>());
  EXPECT_TRUE(c["resources"]["requests"]["cpu"] && c["resources"]["requests"]["memory"]);
  EXPECT_TRUE(c["resources"]["limits"]["memory"]);

  const absl::Duration grace = absl::Seconds(spec["terminationGracePeriodSeconds"].as<int>());
  const absl::Duration pre_stop = absl::Seconds(c["lifecycle"]["preStop"]["sleep"]["seconds"].as<int>());
  EXPECT_GT(grace, pre_stop + DrainTimeout(config_path));

  auto monitor = FindKind(LoadDocuments(kSource + "/deploy/kubernetes/podmonitor.yaml"), "PodMonitor");
  EXPECT_EQ(monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"].as<std::string>(),
            pod["metadata"]["labels"]["app.kubernetes.io/name"].as<std::string>());
  const std::string port_name = monitor["spec"]["podMetricsEndpoints"][0]["port"].as<std::string>();
  bool found = false;
  for (const YAML::Node& p : c["ports"])
    if (p["name"].as<std::string>() == port_name) found = p["containerPort"].as<int>() == admin_port;
  EXPECT_TRUE(found) << "PodMonitor port '" << port_name << "' is not the admin port";
}

TEST_F(ManifestsTest, SidecarPod) {
  auto docs = LoadDocuments(kSource + "/deploy/kubernetes/sidecar-pod.yaml");
  const std::string config_path = ConfigMapConfig(FindKind(docs, "ConfigMap"), "sidecar.yaml");
  config::Config config = MustParse(config_path);
  YAML::Node spec = FindKind(docs, "Pod")["spec"];
  ASSERT_EQ(spec["initContainers"].size(), 2u);
  YAML::Node init = spec["initContainers"][0];
  YAML::Node proxy = spec["initContainers"][1];

  // The init container runs the shipped script, with settings that match the config skproxy runs with.
  EXPECT_EQ(init["command"][0].as<std::string>(), "/usr/local/bin/skproxy-redirect.sh");
  EXPECT_EQ(init["command"][1].as<std::string>(), "install");
  EXPECT_EQ(Strings(init["securityContext"]["capabilities"]["add"]), std::set<std::string>{"NET_ADMIN"});
  std::map<std::string, std::string> env;
  for (const YAML::Node& e : init["env"]) env[e["name"].as<std::string>()] = e["value"].as<std::string>();
  uint32_t mark = 0;
  ASSERT_TRUE(absl::SimpleHexAtoi(env["SKPROXY_MARK"], &mark)) << env["SKPROXY_MARK"];
  EXPECT_EQ(mark, config.upstream_mark);
  EXPECT_NE(mark, 0u);
  EXPECT_EQ(env["SKPROXY_ADMIN_PORT"], std::to_string(config.admin.address.port()));
  std::set<int> transparent_ports;
  for (const config::Listener& l : config.listeners) {
    EXPECT_TRUE(l.transparent) << l.name;
    transparent_ports.insert(l.address.port());
  }
  EXPECT_EQ(transparent_ports,
            (std::set<int>{std::stoi(env["SKPROXY_OUTBOUND_PORT"]), std::stoi(env["SKPROXY_INBOUND_PORT"])}));
  // What the script would install with these settings is valid nft input it can print.
  std::vector<std::string> print = {"/usr/bin/env"};
  for (const auto& [k, v] : env) print.push_back(k + "=" + v);
  print.push_back(kSource + "/deploy/sidecar/skproxy-redirect.sh");
  print.push_back("print");
  CommandResult printed = RunCommand(print, 10s);
  EXPECT_EQ(printed.exit_code, 0) << printed.Describe();
  EXPECT_TRUE(absl::StrContains(printed.out, absl::StrCat("meta mark ", env["SKPROXY_MARK"], " return")));
  EXPECT_TRUE(absl::StrContains(printed.out, env["SKPROXY_ADMIN_PORT"])) << printed.out;

  // The proxy: a native sidecar with the README's capabilities (less the one for ports below 1024, as it
  // listens on none), probes on the admin port, and room for the drain.
  EXPECT_EQ(proxy["restartPolicy"].as<std::string>(), "Always");
  ExpectStartsWith(proxy["args"].as<std::vector<std::string>>(), "/etc/skproxy/skproxy.yaml", config_path,
                   "sidecar args");
  std::set<std::string> caps = ReadmeCapabilities();
  for (const config::Listener& l : config.listeners) EXPECT_GE(l.address.port(), 1024);
  caps.erase("NET_BIND_SERVICE");
  EXPECT_EQ(Strings(proxy["securityContext"]["capabilities"]["add"]), caps);
  EXPECT_EQ(proxy["livenessProbe"]["httpGet"]["path"].as<std::string>(), "/healthz");
  EXPECT_EQ(proxy["readinessProbe"]["httpGet"]["path"].as<std::string>(), "/ready");
  for (const char* probe : {"livenessProbe", "readinessProbe", "startupProbe"}) {
    EXPECT_EQ(Port(proxy[probe]), config.admin.address.port()) << probe;
    EXPECT_EQ(Port(proxy[probe]), default_admin_port_) << probe;
    // The kubelet probes from the node: a pod's loopback is out of its reach.
    EXPECT_FALSE(proxy[probe]["httpGet"]["host"]) << probe;
  }
  EXPECT_EQ(config.admin.address.ToString(), absl::StrCat("0.0.0.0:", default_admin_port_));
  const absl::Duration grace = absl::Seconds(spec["terminationGracePeriodSeconds"].as<int>());
  const absl::Duration pre_stop = absl::Seconds(proxy["lifecycle"]["preStop"]["sleep"]["seconds"].as<int>());
  EXPECT_GT(grace, pre_stop + DrainTimeout(config_path));
}

// The Dockerfile's runtime stage: the flags of its CMD, the HEALTHCHECK's target, and the file
// capabilities its file system script (deploy/image-rootfs.sh, run by both binary stages) sets.
TEST_F(ManifestsTest, Dockerfile) {
  const std::string text = ReadFile(kSource + "/deploy/Dockerfile");
  auto json_array = [&](const std::string& instruction) {
    size_t at = text.rfind("\n" + instruction + " [");
    EXPECT_NE(at, std::string::npos) << instruction;
    if (at == std::string::npos) return std::vector<std::string>{};
    YAML::Node array = YAML::Load(text.substr(text.find('[', at), text.find(']', at) - text.find('[', at) + 1));
    return array.as<std::vector<std::string>>();
  };
  EXPECT_EQ(json_array("ENTRYPOINT"), std::vector<std::string>{kBinaryInImage});
  ExpectStartsWith(json_array("CMD"), "/etc/skproxy/skproxy.yaml", kSource + "/config/skproxy.yaml", "CMD");
  size_t health = text.find("HEALTHCHECK");
  ASSERT_NE(health, std::string::npos);
  std::string health_cmd = text.substr(text.find("CMD [", health) + 4);
  health_cmd = health_cmd.substr(0, health_cmd.find(']') + 1);
  std::vector<std::string> probe = YAML::Load(health_cmd).as<std::vector<std::string>>();
  ASSERT_EQ(probe.size(), 3u);
  EXPECT_EQ(probe[0], "/usr/local/bin/skproxy-healthcheck");
  EXPECT_EQ(probe[1], absl::StrCat("127.0.0.1:", default_admin_port_));
  EXPECT_EQ(probe[2], "/healthz");
  const std::string assemble = "RUN /src/deploy/image-rootfs.sh /src/config/skproxy.yaml";
  int assembled = 0;
  for (size_t at = text.find(assemble); at != std::string::npos; at = text.find(assemble, at + 1)) ++assembled;
  EXPECT_EQ(assembled, 1) << "the build stage";
  EXPECT_TRUE(absl::StrContains(text, "&& /src/deploy/image-rootfs.sh /src/config/skproxy.yaml"))
      << "the prebuilt stage; both the build and the prebuilt stage assemble the file system with deploy/image-rootfs.sh";
  const std::string rootfs = ReadFile(kSource + "/deploy/image-rootfs.sh");
  size_t setcap = rootfs.find("\nsetcap ");
  ASSERT_NE(setcap, std::string::npos);
  setcap += 1;
  std::string caps_text = rootfs.substr(setcap + 7, rootfs.find('+', setcap) - setcap - 7);
  std::set<std::string> caps;
  for (absl::string_view c : absl::StrSplit(caps_text, ',')) {
    absl::ConsumePrefix(&c, "cap_");
    caps.insert(absl::AsciiStrToUpper(c));
  }
  EXPECT_EQ(caps, ReadmeCapabilities());
  EXPECT_TRUE(absl::StrContains(text, "USER 65532")) << "the runtime image runs as a non-root user";
}

}  // namespace
}  // namespace skproxy::itest
