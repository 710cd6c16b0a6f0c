#include "config/config.h"

#include <fstream>
#include <sstream>
#include <string>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"

namespace skproxy::config {
namespace {

// Appended after the part under test, so that the line numbers of that part are those of its text.
constexpr std::string_view kDemoCluster = R"(
clusters:
  - name: demo
    endpoints: ["127.0.0.1:8080"]
)";

// A listener whose line numbers tests can count on: it is at line 2, its address at line 3.
constexpr char kWeb[] = R"(listeners:
  - name: web
    address: "0.0.0.0:10000"
    cluster: demo
)";

std::string WithDemoCluster(std::string_view yaml) { return std::string(yaml) + std::string(kDemoCluster); }

Config Parse(std::string_view yaml) {
  absl::StatusOr<Config> config = ParseConfig(yaml, "good.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *std::move(config) : Config{};
}

std::string ErrorOf(std::string_view yaml) {
  absl::StatusOr<Config> config = ParseConfig(yaml, "bad.yaml");
  if (config.ok()) return "(parsed without error)";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

SocketAddress Address(std::string_view text) { return *ParseSocketAddress(text); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

const std::string kConfigDir = SKPROXY_CONFIG_DIR;

TEST(ParseConfig, MinimalConfigGetsTheDefaults) {
  Config config = Parse(R"(
listeners:
  - name: web
    address: "0.0.0.0:10000"
    cluster: demo
clusters:
  - name: demo
    endpoints: ["127.0.0.1:8080"]
)");
  EXPECT_EQ(config.source, "good.yaml");
  EXPECT_EQ(config.admin.address, Address("127.0.0.1:9901"));
  EXPECT_EQ(config.datapath, DatapathMode::kAuto);
  EXPECT_EQ(config.workers, 0);
  EXPECT_EQ(config.drain_timeout, absl::Seconds(30));
  EXPECT_EQ(config.access_log_path, "");
  EXPECT_EQ(config.sockmap.max_entries, 65536u);
  EXPECT_EQ(config.sockmap.gate_limit_bytes, 8u << 20);
  EXPECT_EQ(config.sockmap.receive_buffer_bytes, 1u << 20);
  ASSERT_EQ(config.listeners.size(), 1u);
  EXPECT_EQ(config.listeners[0].name, "web");
  EXPECT_EQ(config.listeners[0].address, Address("0.0.0.0:10000"));
  EXPECT_EQ(config.listeners[0].cluster, "demo");
  EXPECT_EQ(config.listeners[0].line, 3);
  ASSERT_EQ(config.clusters.size(), 1u);
  EXPECT_EQ(config.clusters[0].connect_timeout, absl::Seconds(5));
  EXPECT_EQ(config.clusters[0].line, 7);
  EXPECT_EQ(config.FindCluster("demo"), &config.clusters[0]);
  EXPECT_EQ(config.FindCluster("nope"), nullptr);
}

TEST(ParseConfig, EveryKey) {
  Config config = Parse(R"(
admin: { address: "[::1]:9902" }
datapath: sockmap
workers: 3
drain_timeout: 90s
access_log: { path: /var/log/skproxy/access.log }
sockmap:
  max_entries: 1024
  gate_limit: 512KiB
  receive_buffer: 2MiB
  promote_after: 4MiB
  quiet_worker_connections: 9
  demote_below: 2KiB
  demote_after_messages: 32
  switch_interval: 250ms
listeners:
  - name: web
    address: "0.0.0.0:10000"
    cluster: backend
  - name: web6
    address: "[::1]:10001"
    cluster: backend
clusters:
  - name: backend
    connect_timeout: 250ms
    endpoints: ["127.0.0.1:8080", "[::1]:8080"]
  - name: unused
    endpoints:
      - "10.0.0.1:1"
)");
  EXPECT_EQ(config.admin.address, Address("[::1]:9902"));
  EXPECT_EQ(config.datapath, DatapathMode::kSockmap);
  EXPECT_EQ(config.workers, 3);
  EXPECT_EQ(config.drain_timeout, absl::Seconds(90));
  EXPECT_EQ(config.access_log_path, "/var/log/skproxy/access.log");
  EXPECT_EQ(config.sockmap.max_entries, 1024u);
  EXPECT_EQ(config.sockmap.gate_limit_bytes, 512u << 10);
  EXPECT_EQ(config.sockmap.receive_buffer_bytes, 2u << 20);
  EXPECT_EQ(config.sockmap.promote_after_bytes, 4u << 20);
  EXPECT_EQ(config.sockmap.quiet_worker_connections, 9u);
  EXPECT_EQ(config.sockmap.demote_below_bytes, 2u << 10);
  EXPECT_EQ(config.sockmap.demote_after_messages, 32u);
  EXPECT_EQ(config.sockmap.switch_interval, absl::Milliseconds(250));
  ASSERT_EQ(config.listeners.size(), 2u);
  EXPECT_EQ(config.listeners[1].address.family(), AF_INET6);
  EXPECT_EQ(config.listeners[1].address.ToString(), "[::1]:10001");
  ASSERT_EQ(config.clusters.size(), 2u);
  EXPECT_EQ(config.clusters[0].connect_timeout, absl::Milliseconds(250));
  ASSERT_EQ(config.clusters[0].endpoints.size(), 2u);
  EXPECT_EQ(config.clusters[0].endpoints[0].address, Address("127.0.0.1:8080"));
  EXPECT_EQ(config.clusters[0].endpoints[1].address, Address("[::1]:8080"));
  ASSERT_EQ(config.clusters[1].endpoints.size(), 1u);
  EXPECT_EQ(config.clusters[1].endpoints[0].address, Address("10.0.0.1:1"));
}

TEST(ParseConfig, EmptySectionsMeanDefaults) {
  Config config = Parse(WithDemoCluster(R"(admin:
sockmap:
listeners:
  - name: web
    address: "0.0.0.0:10000"
    cluster: demo
)"));
  EXPECT_EQ(config.admin.address, Address("127.0.0.1:9901"));
  EXPECT_EQ(config.sockmap.max_entries, 65536u);
}

TEST(ParseConfig, EmptyDocumentMarkersAreFine) {
  Config config = Parse(absl::StrCat("---\n", WithDemoCluster(kWeb), "---\n...\n"));
  EXPECT_EQ(config.listeners.size(), 1u);
}

TEST(ParseConfig, ClustersMayComeFirst) {
  Config config = Parse(R"(
clusters: [{ name: demo, endpoints: ["127.0.0.1:8080"] }]
listeners: [{ name: web, address: "0.0.0.0:10000", cluster: demo }]
)");
  EXPECT_EQ(config.listeners[0].cluster, "demo");
}

TEST(ParseConfig, Durations) {
  const std::vector<std::pair<std::string, absl::Duration>> cases = {
      {"5s", absl::Seconds(5)},           {"250ms", absl::Milliseconds(250)}, {"1m", absl::Minutes(1)},
      {"1.5s", absl::Milliseconds(1500)}, {"1m30s", absl::Seconds(90)},       {"100us", absl::Microseconds(100)}};
  for (const auto& [text, expected] : cases) {
    Config config = Parse(absl::StrCat(R"(
listeners: [{ name: web, address: "0.0.0.0:10000", cluster: demo }]
clusters: [{ name: demo, endpoints: ["127.0.0.1:8080"], connect_timeout: )",
                                       text, " }]\n"));
    ASSERT_EQ(config.clusters.size(), 1u) << text;
    EXPECT_EQ(config.clusters[0].connect_timeout, expected) << text;
  }
}

TEST(ParseConfig, ByteSizes) {
  const std::vector<std::pair<std::string, uint64_t>> cases = {{"1048576", 1048576}, {"512KiB", 512u << 10},
                                                               {"8MiB", 8u << 20},   {"8 MiB", 8u << 20},
                                                               {"1GiB", 1ull << 30}, {"1", 1}};
  for (const auto& [text, expected] : cases) {
    Config config = Parse(WithDemoCluster(absl::StrCat("sockmap: { gate_limit: ", text, " }\n", R"(
listeners: [{ name: web, address: "0.0.0.0:10000", cluster: demo }])")));
    EXPECT_EQ(config.sockmap.gate_limit_bytes, expected) << text;
  }
}

// Both at their maxima together: the gate bounds the verdict's 32-bit backlog on its own, so no joint rule.
TEST(ParseConfig, SockmapSizesAtTheirBounds) {
  Config config = Parse(WithDemoCluster(std::string("sockmap: { gate_limit: 1GiB, receive_buffer: 1GiB }\n") + kWeb));
  EXPECT_EQ(config.sockmap.gate_limit_bytes, 1ull << 30);
  EXPECT_EQ(config.sockmap.receive_buffer_bytes, 1u << 30);
  config = Parse(WithDemoCluster(std::string("sockmap: { gate_limit: 1, receive_buffer: 512KiB }\n") + kWeb));
  EXPECT_EQ(config.sockmap.gate_limit_bytes, 1u);
  EXPECT_EQ(config.sockmap.receive_buffer_bytes, 512u << 10);
}

TEST(ParseConfig, ListenerPortsMayOverlapOnlyWhereTheKernelWouldAllowIt) {
  struct Pair {
    const char* a;
    const char* b;
    bool conflict;
  };
  for (const Pair& pair : std::vector<Pair>{
           {"0.0.0.0:80", "127.0.0.1:80", true},
           {"127.0.0.1:80", "0.0.0.0:80", true},
           {"127.0.0.1:80", "127.0.0.1:80", true},
           {"[::]:80", "127.0.0.1:80", false},  // IPV6_V6ONLY: each wildcard covers its own family
           {"[::]:80", "0.0.0.0:80", false},
           {"[::1]:80", "[::]:80", true},
           {"[::1]:80", "[::1]:80", true},
           {"127.0.0.1:80", "127.0.0.2:80", false},
           {"127.0.0.1:80", "127.0.0.1:81", false},
           {"0.0.0.0:80", "[::1]:80", false},
           {"[::1]:80", "127.0.0.1:80", false},
           {"[::1]:80", "[::2]:80", false},
       }) {
    std::string yaml = WithDemoCluster(absl::StrFormat(R"(listeners:
  - { name: a, address: "%s", cluster: demo }
  - { name: b, address: "%s", cluster: demo }
)",
                                                       pair.a, pair.b));
    std::string expected_error = pair.conflict
                                     ? "bad.yaml:3: listeners[1].address: port 80 already used by listener 'a' (line 2)"
                                     : "(parsed without error)";
    EXPECT_EQ(ErrorOf(yaml), expected_error) << pair.a << " and " << pair.b;
  }
}

struct ErrorCase {
  std::string name;
  std::string yaml;
  std::string error;
};

void PrintTo(const ErrorCase& error_case, std::ostream* out) { *out << error_case.name; }

class ConfigErrorTest : public testing::TestWithParam<ErrorCase> {};

TEST_P(ConfigErrorTest, NamesFileLineAndKey) { EXPECT_EQ(ErrorOf(GetParam().yaml), GetParam().error); }

INSTANTIATE_TEST_SUITE_P(
    Errors, ConfigErrorTest,
    testing::ValuesIn(std::vector<ErrorCase>{
        // Syntax.
        {"UnclosedFlowSequence", "workers: 1\nlisteners: [\n",
         "bad.yaml:3: syntax error: end of sequence flow not found"},
        {"BadIndentation", "listeners:\n  - name: web\n   address: x\n",
         "bad.yaml:3: syntax error: end of sequence not found"},
        {"IndentedKey", "workers: 1\n  datapath: auto\n", "bad.yaml:2: syntax error: illegal map value"},
        {"MismatchedBrackets", "workers: [1, 2}\n", "bad.yaml:1: syntax error: illegal flow end"},
        {"UnclosedQuote", "workers: 1\ndatapath: \"auto\n\nx", "bad.yaml:4: syntax error: illegal EOF in scalar"},
        {"UndefinedAlias", "workers: *nope\n", "bad.yaml:1: syntax error: the referenced anchor is not defined"},
        {"TwoDocuments", "workers: 1\n---\nworkers: 2\n", "bad.yaml:3: document: expected one YAML document"},
        // Shapes.
        {"DocumentNotAMapping", "- web\n", "bad.yaml:1: document: expected a mapping"},
        {"NonStringKey", "[a, b]: 1\n", "bad.yaml:1: document: keys must be strings"},
        {"ListenersNotAList", "listeners: web\n", "bad.yaml:1: listeners: expected a list"},
        {"ListenerNotAMapping", "listeners:\n  - web\n", "bad.yaml:2: listeners[0]: expected a mapping"},
        {"AdminNotAMapping", WithDemoCluster(std::string(kWeb) + "admin: \"127.0.0.1:9901\"\n"),
         "bad.yaml:5: admin: expected a mapping"},
        {"SockmapNotAMapping", "sockmap: [1]\n", "bad.yaml:1: sockmap: expected a mapping"},
        {"DrainTimeoutNotADuration", "workers: 1\ndrain_timeout: soon\n",
         "bad.yaml:2: drain_timeout: expected a duration like 5s, 250ms or 1m"},
        {"AccessLogWithoutPath", "access_log: {}\n", "bad.yaml:1: access_log.path: required key is missing"},
        {"AccessLogEmptyPath", "access_log:\n  path: \"\"\n",
         "bad.yaml:2: access_log.path: must not be empty (\"-\" is stdout)"},
        {"DrainTimeoutZero", "drain_timeout: 0s\n", "bad.yaml:1: drain_timeout: must be greater than 0"},
        {"NameNotAString", "listeners:\n  - name: {a: b}\n", "bad.yaml:2: listeners[0].name: expected a string"},
        {"NameNull", "listeners:\n  - name:\n    cluster: demo\n", "bad.yaml:2: listeners[0].name: expected a string"},
        {"EndpointsNotAList", "listeners: []\nclusters:\n  - name: demo\n    endpoints: \"127.0.0.1:80\"\n",
         "bad.yaml:4: clusters[0].endpoints: expected a list"},
        // Keys.
        {"UnknownTopLevelKey", "workers: 1\n\nlistners: []\n", "bad.yaml:3: listners: unknown key"},
        {"UnknownListenerKey", "listeners:\n  - name: web\n    adress: \"0.0.0.0:10000\"\n",
         "bad.yaml:3: listeners[0].adress: unknown key"},
        {"UnknownClusterKey", "clusters:\n  - name: demo\n    timeout: 5s\n",
         "bad.yaml:3: clusters[0].timeout: unknown key"},
        {"UnknownAdminKey", "admin: { port: 9901 }\n", "bad.yaml:1: admin.port: unknown key"},
        {"UnknownSockmapKey", "sockmap:\n  max_entries: 1\n  gate: 1MiB\n", "bad.yaml:3: sockmap.gate: unknown key"},
        {"DuplicateKey", "workers: 1\ndatapath: auto\nworkers: 2\n",
         "bad.yaml:3: workers: duplicate key (first at line 1)"},
        {"MissingListenerName", "listeners:\n  - address: \"0.0.0.0:1\"\n    cluster: demo\n",
         "bad.yaml:2: listeners[0].name: required key is missing"},
        {"MissingListenerAddress", WithDemoCluster("listeners:\n  - name: web\n    cluster: demo\n"),
         "bad.yaml:2: listeners[0].address: required key is missing"},
        {"MissingListenerCluster", "listeners:\n  - name: web\n    address: \"0.0.0.0:10000\"\n",
         "bad.yaml:2: listeners[0].cluster: required key is missing"},
        {"MissingClusterName", "clusters:\n  - endpoints: [\"127.0.0.1:80\"]\n",
         "bad.yaml:2: clusters[0].name: required key is missing"},
        // Required content.
        {"NoListenersKey", "\n# nothing but\nworkers: 1\n", "bad.yaml:3: listeners: at least one listener is required"},
        {"EmptyListeners", WithDemoCluster("workers: 1\nlisteners: []\n"),
         "bad.yaml:2: listeners: at least one listener is required"},
        {"EmptyDocument", "", "bad.yaml:1: listeners: at least one listener is required"},
        {"MissingEndpoints", std::string(kWeb) + "clusters:\n  - name: demo\n    connect_timeout: 1s\n",
         "bad.yaml:6: clusters[0].endpoints: at least one endpoint is required"},
        {"EmptyEndpoints", std::string(kWeb) + "clusters:\n  - name: demo\n    endpoints: []\n",
         "bad.yaml:7: clusters[0].endpoints: at least one endpoint is required"},
        // Names and references.
        {"UnknownCluster",
         WithDemoCluster("listeners:\n  - name: web\n    address: \"0.0.0.0:10000\"\n    cluster: nope\n"),
         "bad.yaml:4: listeners[0].cluster: no cluster named 'nope'"},
        {"DuplicateListenerName",
         WithDemoCluster(std::string(kWeb) + "  - name: web\n    address: \"0.0.0.0:10001\"\n    cluster: demo\n"),
         "bad.yaml:5: listeners[1].name: duplicate listener name 'web' (first at line 2)"},
        {"DuplicateClusterName",
         std::string(kWeb) + "clusters:\n  - name: demo\n    endpoints: [\"127.0.0.1:1\"]\n"
                             "  - name: demo\n    endpoints: [\"127.0.0.1:2\"]\n",
         "bad.yaml:8: clusters[1].name: duplicate cluster name 'demo' (first at line 6)"},
        {"InvalidName", "listeners:\n  - name: \"a b\"\n",
         "bad.yaml:2: listeners[0].name: 'a b' is not a valid name (use letters, digits, '_', '-', '.')"},
        {"EmptyName", "listeners:\n  - name: \"\"\n",
         "bad.yaml:2: listeners[0].name: '' is not a valid name (use letters, digits, '_', '-', '.')"},
        // Addresses.
        {"PortOutOfRange", WithDemoCluster("listeners:\n  - name: web\n    address: \"0.0.0.0:70000\"\n"),
         "bad.yaml:3: listeners[0].address: port 70000 out of range"},
        {"PortZero", WithDemoCluster("listeners:\n  - name: web\n    address: \"0.0.0.0:0\"\n"),
         "bad.yaml:3: listeners[0].address: port 0 is not allowed"},
        {"Hostname", WithDemoCluster("listeners:\n  - name: web\n    address: \"localhost:80\"\n"),
         "bad.yaml:3: listeners[0].address: 'localhost' is not an IP address (hostnames are not resolved)"},
        {"MissingPort", WithDemoCluster("listeners:\n  - name: web\n    address: 0.0.0.0\n"),
         "bad.yaml:3: listeners[0].address: missing port in '0.0.0.0' (expected IP:PORT)"},
        {"BadEndpoint",
         std::string(kWeb) +
             "clusters:\n  - name: demo\n    endpoints:\n      - \"127.0.0.1:80\"\n      - \"127.0.0.1\"\n",
         "bad.yaml:9: clusters[0].endpoints[1]: missing port in '127.0.0.1' (expected IP:PORT or NAME:PORT)"},
        {"WildcardEndpoint", std::string(kWeb) + "clusters:\n  - name: demo\n    endpoints: [\"0.0.0.0:8080\"]\n",
         "bad.yaml:7: clusters[0].endpoints[0]: 0.0.0.0:8080 is a wildcard address, not one to connect to"},
        {"BadAdminAddress", "admin:\n  address: \"[::1]:99999\"\n",
         "bad.yaml:2: admin.address: port 99999 out of range"},
        {"DuplicatePort",
         WithDemoCluster(std::string(kWeb) + "  - name: api\n    address: \"127.0.0.1:10000\"\n    cluster: demo\n"),
         "bad.yaml:6: listeners[1].address: port 10000 already used by listener 'web' (line 2)"},
        {"PortOfTheAdmin", WithDemoCluster("admin:\n  address: \"127.0.0.1:10000\"\n" + std::string(kWeb)),
         "bad.yaml:5: listeners[0].address: port 10000 already used by admin.address (line 2)"},
        {"PortOfTheDefaultAdmin",
         WithDemoCluster("listeners:\n  - name: web\n    address: \"0.0.0.0:9901\"\n    cluster: demo\n"),
         "bad.yaml:3: listeners[0].address: port 9901 already used by the default admin.address 127.0.0.1:9901"},
        // Scalars.
        {"WorkersNotANumber", "workers: many\n", "bad.yaml:1: workers: expected a non-negative integer"},
        {"WorkersNegative", "workers: -1\n", "bad.yaml:1: workers: expected a non-negative integer"},
        {"WorkersFraction", "workers: 1.5\n", "bad.yaml:1: workers: expected a non-negative integer"},
        {"WorkersList", "workers: [1]\n", "bad.yaml:1: workers: expected a non-negative integer"},
        {"WorkersTooMany", "workers: 5000\n", "bad.yaml:1: workers: 5000 is too large (at most 1024)"},
        {"WorkersOverflow", "workers: 99999999999999999999999\n",
         "bad.yaml:1: workers: 99999999999999999999999 is too large (at most 1024)"},
        {"UnknownDatapath", "datapath: fast\n",
         "bad.yaml:1: datapath: expected auto, sockmap or userspace, got 'fast'"},
        {"DatapathNotAString", "datapath: [auto]\n", "bad.yaml:1: datapath: expected a string"},
        {"TimeoutWithoutUnit", std::string(kWeb) + "clusters:\n  - name: demo\n    connect_timeout: 5\n",
         "bad.yaml:7: clusters[0].connect_timeout: expected a duration like 5s, 250ms or 1m"},
        {"TimeoutZero", std::string(kWeb) + "clusters:\n  - name: demo\n    connect_timeout: 0s\n",
         "bad.yaml:7: clusters[0].connect_timeout: must be greater than 0"},
        {"TimeoutNegative", std::string(kWeb) + "clusters:\n  - name: demo\n    connect_timeout: -1s\n",
         "bad.yaml:7: clusters[0].connect_timeout: must be greater than 0"},
        {"TimeoutInfinite", std::string(kWeb) + "clusters:\n  - name: demo\n    connect_timeout: inf\n",
         "bad.yaml:7: clusters[0].connect_timeout: expected a duration like 5s, 250ms or 1m"},
        {"SizeWithDecimalUnit", "sockmap:\n  gate_limit: 8MB\n",
         "bad.yaml:2: sockmap.gate_limit: expected a byte size like 8MiB, 512KiB or 1048576"},
        {"SizeFraction", "sockmap:\n  gate_limit: 1.5MiB\n",
         "bad.yaml:2: sockmap.gate_limit: expected a byte size like 8MiB, 512KiB or 1048576"},
        {"SizeWithoutNumber", "sockmap:\n  gate_limit: MiB\n",
         "bad.yaml:2: sockmap.gate_limit: expected a byte size like 8MiB, 512KiB or 1048576"},
        {"SizeNegative", "sockmap:\n  receive_buffer: -1\n",
         "bad.yaml:2: sockmap.receive_buffer: expected a byte size like 8MiB, 512KiB or 1048576"},
        {"SizeOverflow", "sockmap:\n  gate_limit: 99999999999GiB\n",
         "bad.yaml:2: sockmap.gate_limit: 99999999999GiB is too large"},
        {"GateLimitZero", "sockmap:\n  gate_limit: 0\n", "bad.yaml:2: sockmap.gate_limit: must be greater than 0"},
        {"GateLimitTooLarge", "sockmap:\n  gate_limit: 2GiB\n", "bad.yaml:2: sockmap.gate_limit: must be at most 1GiB"},
        {"GateLimitOneByteTooLarge", "sockmap:\n  gate_limit: 1073741825\n",
         "bad.yaml:2: sockmap.gate_limit: must be at most 1GiB"},
        {"GateLimitFarTooLarge", "sockmap:\n  gate_limit: 4096GiB\n",
         "bad.yaml:2: sockmap.gate_limit: must be at most 1GiB"},
        {"ReceiveBufferOneByteTooLarge", "sockmap:\n  receive_buffer: 1073741825\n",
         "bad.yaml:2: sockmap.receive_buffer: must be at most 1GiB"},
        {"ReceiveBufferOneByteTooSmall", "sockmap:\n  receive_buffer: 524287\n",
         "bad.yaml:2: sockmap.receive_buffer: must be at least 512KiB"},
        {"ReceiveBufferTooSmall", "sockmap:\n  receive_buffer: 256KiB\n",
         "bad.yaml:2: sockmap.receive_buffer: must be at least 512KiB"},
        {"ReceiveBufferTooLarge", "sockmap:\n  receive_buffer: 2GiB\n",
         "bad.yaml:2: sockmap.receive_buffer: must be at most 1GiB"},
        {"PromoteAfterTooLarge", "sockmap:\n  promote_after: 2GiB\n",
         "bad.yaml:2: sockmap.promote_after: must be at most 1GiB"},
        {"PromoteAfterNotASize", "sockmap:\n  promote_after: soon\n",
         "bad.yaml:2: sockmap.promote_after: expected a byte size like 8MiB, 512KiB or 1048576"},
        {"DemoteBelowTooLarge", "sockmap:\n  demote_below: 65537\n",
         "bad.yaml:2: sockmap.demote_below: must be at most 64KiB"},
        {"DemoteBelowNotASize", "sockmap:\n  demote_below: small\n",
         "bad.yaml:2: sockmap.demote_below: expected a byte size like 8MiB, 512KiB or 1048576"},
        {"DemoteAfterMessagesZero", "sockmap:\n  demote_after_messages: 0\n",
         "bad.yaml:2: sockmap.demote_after_messages: must be greater than 0"},
        {"SwitchIntervalTooShort", "sockmap:\n  switch_interval: 100us\n",
         "bad.yaml:2: sockmap.switch_interval: must be between 1ms and 60s"},
        {"SwitchIntervalTooLong", "sockmap:\n  switch_interval: 2m\n",
         "bad.yaml:2: sockmap.switch_interval: must be between 1ms and 60s"},
        {"SwitchIntervalZero", "sockmap:\n  switch_interval: 0s\n",
         "bad.yaml:2: sockmap.switch_interval: must be greater than 0"},
        {"MaxEntriesZero", "sockmap:\n  max_entries: 0\n", "bad.yaml:2: sockmap.max_entries: must be greater than 0"},
        // Transparent listeners and the upstream mark.
        {"TransparentWithCluster", "listeners:\n  - name: out\n    address: \"0.0.0.0:15001\"\n    transparent: true\n"
         "    cluster: demo\n" + std::string(kDemoCluster),
         "bad.yaml:5: listeners[0].cluster: a transparent listener connects to each connection's original "
         "destination; remove cluster or transparent"},
        {"TransparentNotABool", "listeners:\n  - name: out\n    address: \"0.0.0.0:15001\"\n    transparent: yes\n",
         "bad.yaml:4: listeners[0].transparent: expected true or false"},
        {"TransparentZeroConnectTimeout",
         "listeners:\n  - name: out\n    address: \"0.0.0.0:15001\"\n    transparent: true\n    connect_timeout: 0s\n",
         "bad.yaml:5: listeners[0].connect_timeout: must be greater than 0"},
        {"ConnectTimeoutOnAClusterListener", WithDemoCluster(std::string(kWeb) + "    connect_timeout: 1s\n"),
         "bad.yaml:5: listeners[0].connect_timeout: only a transparent listener has one; set connect_timeout on the "
         "cluster"},
        {"TransparentFalseNeedsCluster", "listeners:\n  - name: out\n    address: \"0.0.0.0:15001\"\n    transparent: false\n",
         "bad.yaml:2: listeners[0].cluster: required key is missing"},
        {"UpstreamMarkNegative", "upstream_mark: -1\n",
         "bad.yaml:1: upstream_mark: expected a 32-bit mark like 0x534b or 21323"},
        {"UpstreamMarkNotHex", "upstream_mark: 0xzz\n",
         "bad.yaml:1: upstream_mark: expected a 32-bit mark like 0x534b or 21323"},
        {"UpstreamMarkTooLarge", "upstream_mark: 0x100000000\n",
         "bad.yaml:1: upstream_mark: 0x100000000 is too large (at most 0xffffffff)"},
        {"UpstreamMarkDecimalTooLarge", "upstream_mark: 4294967296\n",
         "bad.yaml:1: upstream_mark: 4294967296 is too large (at most 0xffffffff)"},
        {"UpstreamMarkNotAScalar", "upstream_mark: [1]\n",
         "bad.yaml:1: upstream_mark: expected a 32-bit mark like 0x534b or 21323"},
        {"UnknownUser", "user: no-such-user-skproxy\n", "bad.yaml:1: user: no such user 'no-such-user-skproxy'"},
        {"UnknownGroup", "group: no-such-group-skproxy\n", "bad.yaml:1: group: no such group 'no-such-group-skproxy'"},
        {"UserNotAScalar", "user: [nobody]\n", "bad.yaml:1: user: expected a string"},
        {"MaxEntriesTooLarge", "sockmap:\n  max_entries: 4294967296\n",
         "bad.yaml:2: sockmap.max_entries: 4294967296 is too large (at most 4294967295)"},
    }),
    [](const testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });

TEST(DatapathMode, NamesRoundTrip) {
  for (DatapathMode mode : {DatapathMode::kAuto, DatapathMode::kSockmap, DatapathMode::kUserspace}) {
    absl::StatusOr<DatapathMode> parsed = ParseDatapathMode(DatapathModeName(mode));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, mode);
  }
  EXPECT_EQ(ParseDatapathMode("Sockmap").status().message(), "expected auto, sockmap or userspace, got 'Sockmap'");
}

TEST(DefaultConfig, IsTheEmbeddedSkproxyYaml) {
  EXPECT_EQ(DefaultConfigYaml(), ReadFile(kConfigDir + "/skproxy.yaml"));
}

TEST(DefaultConfig, IsValidAndWhatTheDocsSay) {
  absl::StatusOr<Config> config = LoadDefaultConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, "<default>");
  EXPECT_EQ(config->admin.address, Address("127.0.0.1:9901"));
  EXPECT_EQ(config->datapath, DatapathMode::kAuto);
  EXPECT_EQ(config->workers, 0);
  EXPECT_EQ(config->drain_timeout, absl::Seconds(30));
  ASSERT_EQ(config->listeners.size(), 1u);
  EXPECT_EQ(config->listeners[0].name, "web");
  EXPECT_EQ(config->listeners[0].address, Address("0.0.0.0:10000"));
  EXPECT_EQ(config->listeners[0].cluster, "demo");
  ASSERT_EQ(config->clusters.size(), 1u);
  EXPECT_EQ(config->clusters[0].name, "demo");
  EXPECT_EQ(config->clusters[0].connect_timeout, absl::Seconds(5));
  ASSERT_EQ(config->clusters[0].endpoints.size(), 1u);
  EXPECT_EQ(config->clusters[0].endpoints[0].address, Address("127.0.0.1:8080"));
}

TEST(Examples, EdgeIsValid) {
  absl::StatusOr<Config> config = LoadConfigFile(kConfigDir + "/examples/edge.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listeners.size(), 2u);
  EXPECT_EQ(config->clusters.size(), 2u);
  EXPECT_TRUE(absl::c_any_of(config->listeners, [](const Listener& l) { return l.address.family() == AF_INET6; }));
}

TEST(Examples, ClustersIsValid) {
  absl::StatusOr<Config> config = LoadConfigFile(kConfigDir + "/examples/clusters.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->clusters.size(), 2u);
  EXPECT_EQ(config->clusters[0].lb_policy, LbPolicy::kLeastConnections);
  EXPECT_TRUE(config->clusters[0].has_names());
  EXPECT_EQ(config->clusters[1].lb_policy, LbPolicy::kMaglev);
}

TEST(Examples, SidecarIsValid) {
  absl::StatusOr<Config> config = LoadConfigFile(kConfigDir + "/examples/sidecar.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listeners.size(), 1u);
}

// The ids are looked up when the config is read: `user` gives the group too, unless `group` names one.
TEST(ParseConfig, UserAndGroup) {
  Config as_user = Parse("user: nobody\n" + WithDemoCluster(kWeb));
  EXPECT_EQ(as_user.run_as.user, "nobody");
  EXPECT_EQ(as_user.run_as.uid, 65534u);
  EXPECT_EQ(as_user.run_as.gid, 65534u);
  Config with_group = Parse("user: nobody\ngroup: root\n" + WithDemoCluster(kWeb));
  EXPECT_EQ(with_group.run_as.uid, 65534u);
  EXPECT_EQ(with_group.run_as.gid, 0u);
  EXPECT_TRUE(Parse(WithDemoCluster(kWeb)).run_as.empty());
}

TEST(ParseConfig, TransparentListenersNeedNoCluster) {
  Config config = Parse(R"(
upstream_mark: 0x534b
listeners:
  - name: outbound
    address: "0.0.0.0:15001"
    transparent: true
  - name: outbound6
    address: "[::]:15001"
    transparent: true
    connect_timeout: 250ms
  - name: web
    address: "0.0.0.0:10000"
    cluster: demo
)" + std::string(kDemoCluster));
  EXPECT_EQ(config.upstream_mark, 0x534bu);
  ASSERT_EQ(config.listeners.size(), 3u);
  EXPECT_TRUE(config.listeners[0].transparent);
  EXPECT_EQ(config.listeners[0].cluster, "");
  EXPECT_EQ(config.listeners[0].connect_timeout, absl::Seconds(5));
  EXPECT_EQ(config.listeners[1].connect_timeout, absl::Milliseconds(250));
  EXPECT_FALSE(config.listeners[2].transparent);
  // Every listener's upstream sockets carry the mark, transparent or not.
  for (const Listener& listener : config.listeners) EXPECT_EQ(listener.upstream_mark, 0x534bu) << listener.name;
}

TEST(ParseConfig, UpstreamMarkInDecimalAndAtItsBounds) {
  EXPECT_EQ(Parse(WithDemoCluster(std::string(kWeb) + "upstream_mark: 21323\n")).upstream_mark, 21323u);
  EXPECT_EQ(Parse(WithDemoCluster(std::string(kWeb) + "upstream_mark: 0xffffffff\n")).upstream_mark, 0xffffffffu);
  EXPECT_EQ(Parse(WithDemoCluster(std::string(kWeb) + "upstream_mark: 0\n")).upstream_mark, 0u);
  EXPECT_EQ(Parse(WithDemoCluster(kWeb)).upstream_mark, 0u);
}

TEST(Examples, SidecarTransparentIsValid) {
  absl::StatusOr<Config> config = LoadConfigFile(kConfigDir + "/examples/sidecar-transparent.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_NE(config->upstream_mark, 0u);
  EXPECT_TRUE(absl::c_all_of(config->listeners, [](const Listener& l) { return l.transparent; }));
}

class LoadConfigFileTest : public testing::Test {
 protected:
  std::string WriteFile(const std::string& name, std::string_view text) {
    std::string path = testing::TempDir() + name;
    std::ofstream(path) << text;
    return path;
  }
};

TEST_F(LoadConfigFileTest, UsesThePathAsSource) {
  std::string path = WriteFile("config_test_good.yaml", WithDemoCluster(kWeb));
  absl::StatusOr<Config> config = LoadConfigFile(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, path);

  path = WriteFile("config_test_bad.yaml", "workers: x\n");
  EXPECT_EQ(LoadConfigFile(path).status().message(), path + ":1: workers: expected a non-negative integer");
}

TEST_F(LoadConfigFileTest, MissingFile) {
  std::string path = testing::TempDir() + "config_test_no_such_file.yaml";
  absl::StatusOr<Config> config = LoadConfigFile(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(config.status().message(), path + ": cannot read: No such file or directory");
}

TEST_F(LoadConfigFileTest, Directory) {
  EXPECT_EQ(LoadConfigFile(kConfigDir).status().message(), kConfigDir + ": cannot read: Is a directory");
}

TEST_F(LoadConfigFileTest, EndlessFile) {
  EXPECT_EQ(LoadConfigFile("/dev/zero").status().message(), "/dev/zero: cannot read: File too large");
}

}  // namespace
}  // namespace skproxy::config

// L7 listeners: protocols, routes, inspection limits, the PROXY protocol.
namespace skproxy::config {
namespace {

constexpr char kClusters[] = R"(
clusters:
  - { name: web, endpoints: ["127.0.0.1:8080"] }
  - { name: api, endpoints: ["127.0.0.1:8081"], proxy_protocol: v2 }
)";

std::string L7(const std::string& listener_lines) {
  return absl::StrCat("listeners:\n  - name: l\n    address: \"0.0.0.0:80\"\n", listener_lines, kClusters);
}

TEST(ParseL7Config, TheIssueShapeParses) {
  Config config = Parse(absl::StrCat(R"(listeners:
  - name: web
    address: "0.0.0.0:8080"
    protocol: http
    cluster: web
    x_forwarded_for: true
    proxy_protocol: v1
    inspect: { max_bytes: 32KiB, timeout: 2s }
    routes:
      - match: { host: "API.example.com", path_prefix: "/v1/" }
        cluster: api
      - name: wild
        match: { host: "*.example.com" }
        cluster: web
  - name: tls
    address: "0.0.0.0:8443"
    protocol: tls
    routes:
      - match: { sni: "a.example.com" }
        cluster: api
)", kClusters));
  ASSERT_EQ(config.listeners.size(), 2u);
  const Listener& web = config.listeners[0];
  EXPECT_EQ(web.protocol, ListenerProtocol::kHttp);
  EXPECT_TRUE(web.x_forwarded_for);
  EXPECT_EQ(web.proxy_protocol, ProxyProtocolVersion::kV1);
  EXPECT_EQ(web.inspect.max_bytes, 32u << 10);
  EXPECT_EQ(web.inspect.timeout, absl::Seconds(2));
  ASSERT_EQ(web.routes.size(), 2u);
  EXPECT_EQ(web.routes[0].name, "routes[0]");
  EXPECT_EQ(web.routes[0].match.host, "api.example.com");  // stored lower case
  EXPECT_EQ(web.routes[0].match.path_prefix, "/v1/");
  EXPECT_EQ(web.routes[1].name, "wild");
  const Listener& tls = config.listeners[1];
  EXPECT_EQ(tls.protocol, ListenerProtocol::kTls);
  EXPECT_EQ(tls.cluster, "");
  EXPECT_EQ(tls.inspect.max_bytes, 16u << 10);
  EXPECT_EQ(tls.inspect.timeout, absl::Seconds(5));
  EXPECT_EQ(tls.routes[0].match.sni, "a.example.com");
  EXPECT_EQ(config.clusters[1].proxy_protocol, ProxyProtocolVersion::kV2);
  EXPECT_EQ(config.listeners[0].line, 2);
}

TEST(ParseL7Config, TcpListenerMayRequireProxyProtocol) {
  Config config = Parse(L7("    cluster: web\n    proxy_protocol: v2\n"));
  EXPECT_EQ(config.listeners[0].protocol, ListenerProtocol::kTcp);
  EXPECT_EQ(config.listeners[0].proxy_protocol, ProxyProtocolVersion::kV2);
}

INSTANTIATE_TEST_SUITE_P(
    L7Errors, ConfigErrorTest,
    testing::ValuesIn(std::vector<ErrorCase>{
        {"UnknownProtocol", L7("    protocol: https\n    cluster: web\n"),
         "bad.yaml:4: listeners[0].protocol: expected tcp, http or tls, got 'https'"},
        {"RoutesOnTcp", L7("    cluster: web\n    routes: []\n"),
         "bad.yaml:5: listeners[0].routes: routes need protocol http or tls (a tcp listener reads nothing to route on)"},
        {"NoClusterNoRoutes", L7("    protocol: http\n"),
         "bad.yaml:2: listeners[0].cluster: a listener needs a cluster or at least one route"},
        {"RouteToUnknownCluster",
         L7("    protocol: http\n    routes:\n      - match: { host: a.com }\n        cluster: nope\n"),
         "bad.yaml:7: listeners[0].routes[0].cluster: no cluster named 'nope'"},
        {"RouteWithoutMatch", L7("    protocol: http\n    routes:\n      - cluster: web\n"),
         "bad.yaml:6: listeners[0].routes[0].match: required key is missing"},
        {"EmptyMatch", L7("    protocol: http\n    routes:\n      - { match: {}, cluster: web }\n"),
         "bad.yaml:6: listeners[0].routes[0].match: expected at least one of host, path_prefix, sni"},
        {"SniOnHttp", L7("    protocol: http\n    routes:\n      - match: { sni: a.com }\n        cluster: web\n"),
         "bad.yaml:6: listeners[0].routes[0].match.sni: needs protocol tls"},
        {"HostOnTls", L7("    protocol: tls\n    routes:\n      - match: { host: a.com }\n        cluster: web\n"),
         "bad.yaml:6: listeners[0].routes[0].match.host: needs protocol http"},
        {"WildcardInTheMiddle",
         L7("    protocol: http\n    routes:\n      - match: { host: \"a.*.com\" }\n        cluster: web\n"),
         "bad.yaml:6: listeners[0].routes[0].match.host: 'a.*.com' is not a host name or a wildcard like "
         "*.example.com (a '*' is only allowed as the whole first label)"},
        {"PathWithoutSlash",
         L7("    protocol: http\n    routes:\n      - match: { path_prefix: v1 }\n        cluster: web\n"),
         "bad.yaml:6: listeners[0].routes[0].match.path_prefix: must start with '/'"},
        {"UnknownMatchKey",
         L7("    protocol: http\n    routes:\n      - match: { hostname: a.com }\n        cluster: web\n"),
         "bad.yaml:6: listeners[0].routes[0].match.hostname: unknown key"},
        {"DuplicateRouteName",
         L7("    protocol: http\n    routes:\n      - { name: r, match: { host: a.com }, cluster: web }\n"
            "      - { name: r, match: { host: b.com }, cluster: web }\n"),
         "bad.yaml:7: listeners[0].routes[1].name: duplicate route name 'r' (first at line 6)"},
        {"InspectTooLarge", L7("    protocol: http\n    cluster: web\n    inspect: { max_bytes: 65537 }\n"),
         "bad.yaml:6: listeners[0].inspect.max_bytes: must be between 1KiB and 64KiB"},
        {"InspectTimeoutZero", L7("    protocol: http\n    cluster: web\n    inspect:\n      timeout: 0s\n"),
         "bad.yaml:7: listeners[0].inspect.timeout: must be greater than 0"},
        {"UnknownInspectKey", L7("    protocol: http\n    cluster: web\n    inspect: { delay: 1s }\n"),
         "bad.yaml:6: listeners[0].inspect.delay: unknown key"},
        {"ProxyProtocolV3", L7("    cluster: web\n    proxy_protocol: v3\n"),
         "bad.yaml:5: listeners[0].proxy_protocol: expected v1 or v2, got 'v3'"},
        {"XffOnTls", L7("    protocol: tls\n    cluster: web\n    x_forwarded_for: true\n"),
         "bad.yaml:6: listeners[0].x_forwarded_for: needs protocol http"},
        {"XffNotABool", L7("    protocol: http\n    cluster: web\n    x_forwarded_for: yes\n"),
         "bad.yaml:6: listeners[0].x_forwarded_for: expected true or false"},
        {"ClusterProxyProtocolBad",
         "listeners: []\nclusters:\n  - { name: c, endpoints: [\"127.0.0.1:1\"], proxy_protocol: 2 }\n",
         "bad.yaml:3: clusters[0].proxy_protocol: expected v1 or v2, got '2'"},
    }),
    [](const testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });

TEST(Examples, L7IsValid) {
  absl::StatusOr<Config> config = LoadConfigFile(kConfigDir + "/examples/l7.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listeners.size(), 3u);
  EXPECT_EQ(config->clusters[0].http_keepalive.max_idle, 64u);
  EXPECT_EQ(config->clusters[0].response_timeout, absl::Seconds(30));
  EXPECT_EQ(config->clusters[1].response_timeout, absl::Seconds(15));
}

}  // namespace
}  // namespace skproxy::config

namespace skproxy::config {
namespace {

TEST(ParseClusterOptions, EveryOptionIsRead) {
  Config config = Parse(std::string(kWeb) + R"(    max_connections: 1000
    idle_timeout: 30s
clusters:
  - name: demo
    lb_policy: maglev
    max_connections: 500
    endpoints:
      - "10.0.0.1:80"
      - { address: "[2001:db8::1]:80", weight: 3 }
      - address: "Backend.Example.COM:8080"
        weight: 2
    health_check:
      type: http
      path: /healthz
      host: health.example.com
      expected_status: 204
      interval: 2s
      timeout: 3s
      healthy_threshold: 1
      unhealthy_threshold: 4
    outlier_detection: { consecutive_failures: 7, ejection_time: 1m }
    dns_refresh: 10s
    respect_dns_ttl: false
    dns_min_refresh: 1s
    dns_max_refresh: 1m
    dns_family: v6
    dns_resolvers: ["127.0.0.53:53"]
)");
  ASSERT_EQ(config.listeners.size(), 1u);
  EXPECT_EQ(config.listeners[0].max_connections, 1000u);
  EXPECT_EQ(config.listeners[0].idle_timeout, absl::Seconds(30));
  ASSERT_EQ(config.clusters.size(), 1u);
  const Cluster& c = config.clusters[0];
  EXPECT_EQ(c.lb_policy, LbPolicy::kMaglev);
  EXPECT_EQ(c.max_connections, 500u);
  ASSERT_EQ(c.endpoints.size(), 3u);
  EXPECT_FALSE(c.endpoints[0].is_name);
  EXPECT_EQ(c.endpoints[0].weight, 1u);
  EXPECT_EQ(c.endpoints[0].ToString(), "10.0.0.1:80");
  EXPECT_EQ(c.endpoints[1].address, Address("[2001:db8::1]:80"));
  EXPECT_EQ(c.endpoints[1].ToString(), "[2001:db8::1]:80");
  EXPECT_EQ(c.endpoints[1].weight, 3u);
  EXPECT_TRUE(c.endpoints[2].is_name);
  EXPECT_EQ(c.endpoints[2].host, "backend.example.com");
  EXPECT_EQ(c.endpoints[2].port, 8080);
  EXPECT_EQ(c.endpoints[2].weight, 2u);
  EXPECT_EQ(c.endpoints[2].line, 14);
  EXPECT_TRUE(c.has_names());
  EXPECT_EQ(c.health_check.type, HealthCheck::Type::kHttp);
  EXPECT_EQ(c.health_check.path, "/healthz");
  EXPECT_EQ(c.health_check.host, "health.example.com");
  EXPECT_EQ(c.health_check.expected_status, 204u);
  EXPECT_EQ(c.health_check.interval, absl::Seconds(2));
  EXPECT_EQ(c.health_check.timeout, absl::Seconds(3));
  EXPECT_EQ(c.health_check.healthy_threshold, 1u);
  EXPECT_EQ(c.health_check.unhealthy_threshold, 4u);
  EXPECT_EQ(c.outlier_detection.consecutive_failures, 7u);
  EXPECT_EQ(c.outlier_detection.ejection_time, absl::Minutes(1));
  EXPECT_EQ(c.dns_refresh, absl::Seconds(10));
  EXPECT_FALSE(c.respect_dns_ttl);
  EXPECT_EQ(c.dns_min_refresh, absl::Seconds(1));
  EXPECT_EQ(c.dns_max_refresh, absl::Minutes(1));
  EXPECT_EQ(c.dns_family, Cluster::DnsFamily::kV6);
  ASSERT_EQ(c.dns_resolvers.size(), 1u);
  EXPECT_EQ(c.dns_resolvers[0], Address("127.0.0.53:53"));
}

TEST(ParseClusterOptions, DefaultsAreEnvoyLike) {
  Config config = Parse(WithDemoCluster(kWeb));
  const Cluster& c = config.clusters[0];
  EXPECT_EQ(c.lb_policy, LbPolicy::kRoundRobin);
  EXPECT_EQ(c.health_check.type, HealthCheck::Type::kNone);
  EXPECT_EQ(c.outlier_detection.consecutive_failures, 0u);  // off unless the section is there
  EXPECT_EQ(c.max_connections, 0u);
  EXPECT_TRUE(c.respect_dns_ttl);
  EXPECT_EQ(c.dns_refresh, absl::Seconds(5));
  EXPECT_EQ(c.dns_min_refresh, absl::Seconds(5));
  EXPECT_EQ(c.dns_max_refresh, absl::Minutes(5));
  EXPECT_EQ(c.dns_family, Cluster::DnsFamily::kAll);
  EXPECT_EQ(config.listeners[0].max_connections, 0u);
  EXPECT_EQ(config.listeners[0].idle_timeout, absl::ZeroDuration());
  // The section alone turns outlier detection on with its defaults.
  Config with_outlier = Parse(std::string(kWeb) +
                              "clusters: [{ name: demo, endpoints: [\"127.0.0.1:1\"], outlier_detection: {} }]\n");
  EXPECT_EQ(with_outlier.clusters[0].outlier_detection.consecutive_failures, 5u);
  EXPECT_EQ(with_outlier.clusters[0].outlier_detection.ejection_time, absl::Seconds(30));
  for (const char* policy : {"round_robin", "least_connections", "maglev", "ring_hash"}) {
    Config p = Parse(absl::StrCat(kWeb, "clusters: [{ name: demo, endpoints: [\"127.0.0.1:1\"], lb_policy: ", policy,
                                  " }]\n"));
    EXPECT_EQ(LbPolicyName(p.clusters[0].lb_policy), policy);
  }
}

TEST(ParseClusterOptions, ErrorsNameFileLineAndKey) {
  // The cluster starts at line 6 of each text; its keys follow one a line.
  const std::string head = std::string(kWeb) + "clusters:\n  - name: demo\n";
  const std::string endpoints = "    endpoints: [\"127.0.0.1:1\"]\n";
  const std::pair<std::string, std::string> cases[] = {
      {head + endpoints + "    lb_policy: random\n",
       "bad.yaml:8: clusters[0].lb_policy: expected round_robin, least_connections, maglev or ring_hash, got 'random'"},
      {head + "    endpoints:\n      - { address: \"127.0.0.1:1\", weight: 0 }\n",
       "bad.yaml:8: clusters[0].endpoints[0].weight: must be between 1 and 1000"},
      {head + "    endpoints:\n      - { address: \"127.0.0.1:1\", weight: 1001 }\n",
       "bad.yaml:8: clusters[0].endpoints[0].weight: must be between 1 and 1000"},
      {head + "    endpoints:\n      - { weight: 2 }\n",
       "bad.yaml:8: clusters[0].endpoints[0].address: required key is missing"},
      {head + "    endpoints:\n      - { address: \"127.0.0.1:1\", wieght: 2 }\n",
       "bad.yaml:8: clusters[0].endpoints[0].wieght: unknown key"},
      {head + "    endpoints: [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n",
       "bad.yaml:7: clusters[0].endpoints[1]: duplicate endpoint 127.0.0.1:1 (first at line 7)"},
      {head + "    endpoints: [\"db_1.internal:80\"]\n",
       "bad.yaml:7: clusters[0].endpoints[0]: 'db_1.internal' is neither an IP address nor a host name (letters, "
       "digits, '-', '.')"},
      {head + "    endpoints: [\"1.2.3:80\"]\n",
       "bad.yaml:7: clusters[0].endpoints[0]: '1.2.3' is neither an IP address nor a host name (letters, digits, "
       "'-', '.')"},
      {head + "    endpoints: [\"10.0.0.1:99999\"]\n",
       "bad.yaml:7: clusters[0].endpoints[0]: port 99999 out of range"},
      {head + "    endpoints: [\"db.internal\"]\n",
       "bad.yaml:7: clusters[0].endpoints[0]: missing port in 'db.internal' (expected IP:PORT or NAME:PORT)"},
      {head + "    endpoints: [\"db.internal:0\"]\n",
       "bad.yaml:7: clusters[0].endpoints[0]: 'db.internal:0': port must be 1..65535"},
      {head + "    endpoints: [\"db.internal:http\"]\n",
       "bad.yaml:7: clusters[0].endpoints[0]: 'db.internal:http': port must be 1..65535"},
      {head + endpoints + "    health_check: { interval: 1s }\n",
       "bad.yaml:8: clusters[0].health_check.type: required key is missing"},
      {head + endpoints + "    health_check: { type: udp }\n",
       "bad.yaml:8: clusters[0].health_check.type: expected tcp or http, got 'udp'"},
      {head + endpoints + "    health_check: { type: tcp, path: /health }\n",
       "bad.yaml:8: clusters[0].health_check.path: only for type: http"},
      {head + endpoints + "    health_check: { type: http, path: health }\n",
       "bad.yaml:8: clusters[0].health_check.path: expected a path starting with '/', without spaces or control "
       "characters"},
      {head + endpoints + "    health_check: { type: http, expected_status: 700 }\n",
       "bad.yaml:8: clusters[0].health_check.expected_status: must be between 100 and 599"},
      {head + endpoints + "    health_check: { type: tcp, interval: 0s }\n",
       "bad.yaml:8: clusters[0].health_check.interval: must be greater than 0"},
      {head + endpoints + "    health_check: { type: tcp, unhealthy_threshold: 0 }\n",
       "bad.yaml:8: clusters[0].health_check.unhealthy_threshold: must be between 1 and 1000"},
      {head + endpoints + "    outlier_detection: { ejection_time: 10 }\n",
       "bad.yaml:8: clusters[0].outlier_detection.ejection_time: expected a duration like 5s, 250ms or 1m"},
      {head + endpoints + "    outlier_detection: { consecutive_5xx: 3 }\n",
       "bad.yaml:8: clusters[0].outlier_detection.consecutive_5xx: unknown key"},
      {head + endpoints + "    dns_refresh: never\n",
       "bad.yaml:8: clusters[0].dns_refresh: expected a duration like 5s, 250ms or 1m"},
      {head + endpoints + "    respect_dns_ttl: maybe\n",
       "bad.yaml:8: clusters[0].respect_dns_ttl: expected true or false"},
      {head + endpoints + "    dns_min_refresh: 0s\n",
       "bad.yaml:8: clusters[0].dns_min_refresh: must be greater than 0"},
      {head + endpoints + "    dns_min_refresh: 1s\n    dns_max_refresh: 500ms\n",
       "bad.yaml:9: clusters[0].dns_max_refresh: must be at least dns_min_refresh (1s)"},
      {head + endpoints + "    dns_min_refresh: 10m\n",
       "bad.yaml:8: clusters[0].dns_min_refresh: must be at most dns_max_refresh (5m)"},
      {head + endpoints + "    dns_family: ipv4\n",
       "bad.yaml:8: clusters[0].dns_family: expected all, v4 or v6, got 'ipv4'"},
      {head + endpoints + "    dns_resolvers: [\"8.8.8.8\"]\n",
       "bad.yaml:8: clusters[0].dns_resolvers[0]: missing port in '8.8.8.8' (expected IP:PORT)"},
      {head + endpoints + "    max_connections: -1\n",
       "bad.yaml:8: clusters[0].max_connections: expected a non-negative integer"},
      {std::string(kWeb) + "    idle_timeout: soon\n" + "clusters: [{ name: demo, endpoints: [\"127.0.0.1:1\"] }]\n",
       "bad.yaml:5: listeners[0].idle_timeout: expected a duration like 5s, 250ms or 1m"},
      {std::string(kWeb) + "    max_connections: lots\n" + "clusters: [{ name: demo, endpoints: [\"127.0.0.1:1\"] }]\n",
       "bad.yaml:5: listeners[0].max_connections: expected a non-negative integer"},
      {head + endpoints + "    http_keepalive: { idle_timeout: 5s }\n",
       "bad.yaml:8: clusters[0].http_keepalive.max_idle: required key is missing"},
      {head + endpoints + "    http_keepalive: { max_idle: 100000 }\n",
       "bad.yaml:8: clusters[0].http_keepalive.max_idle: must be between 0 and 65536"},
      {head + endpoints + "    http_keepalive: { max_idle: 8, idle_timeout: 0s }\n",
       "bad.yaml:8: clusters[0].http_keepalive.idle_timeout: must be greater than 0"},
      {head + endpoints + "    http_keepalive: { max_idle: 8, max_requests: 3 }\n",
       "bad.yaml:8: clusters[0].http_keepalive.max_requests: unknown key"},
      {head + endpoints + "    response_timeout: 0s\n",
       "bad.yaml:8: clusters[0].response_timeout: must be greater than 0"},
      {head + endpoints + "    response_timeout: 500us\n",
       "bad.yaml:8: clusters[0].response_timeout: must be 0 (off) or between 1ms and 24h"},
      {head + endpoints + "    response_timeout: 25h\n",
       "bad.yaml:8: clusters[0].response_timeout: must be 0 (off) or between 1ms and 24h"},
      {head + endpoints + "    response_timeout: soon\n",
       "bad.yaml:8: clusters[0].response_timeout: expected a duration like 5s, 250ms or 1m"},
      {head + endpoints + "    proxy_protocol: v1\n    http_keepalive: { max_idle: 8 }\n",
       "bad.yaml:9: clusters[0].http_keepalive: cannot be combined with proxy_protocol (a pooled connection serves "
       "many clients)"},
  };
  for (const auto& [yaml, expected] : cases) EXPECT_EQ(ErrorOf(yaml), expected) << yaml;
}

TEST(ParseClusterOptions, ResponseTimeoutDefaultsTo15sAndZeroTurnsItOff) {
  EXPECT_EQ(Parse(WithDemoCluster(kWeb)).clusters[0].response_timeout, absl::Seconds(15));
  for (const auto& [text, expected] : std::vector<std::pair<std::string, absl::Duration>>{
           {"0", absl::ZeroDuration()}, {"off", absl::ZeroDuration()}, {"250ms", absl::Milliseconds(250)},
           {"24h", absl::Hours(24)}}) {
    Config c = Parse(std::string(kWeb) + "clusters: [{ name: demo, endpoints: [\"127.0.0.1:1\"], response_timeout: " +
                     text + " }]\n");
    EXPECT_EQ(c.clusters[0].response_timeout, expected) << text;
  }
}

TEST(ParseClusterOptions, HttpKeepaliveIsOffUnlessSet) {
  Config off = Parse(WithDemoCluster(kWeb));
  EXPECT_FALSE(off.clusters[0].http_keepalive.enabled());
  Config on = Parse(std::string(kWeb) +
                    "clusters: [{ name: demo, endpoints: [\"127.0.0.1:1\"], http_keepalive: { max_idle: 64 } }]\n");
  EXPECT_EQ(on.clusters[0].http_keepalive.max_idle, 64u);
  EXPECT_EQ(on.clusters[0].http_keepalive.idle_timeout, absl::Seconds(60));
  Config timed = Parse(std::string(kWeb) + "clusters: [{ name: demo, endpoints: [\"127.0.0.1:1\"], "
                       "http_keepalive: { max_idle: 2, idle_timeout: 250ms } }]\n");
  EXPECT_EQ(timed.clusters[0].http_keepalive.max_idle, 2u);
  EXPECT_EQ(timed.clusters[0].http_keepalive.idle_timeout, absl::Milliseconds(250));
}

TEST(ParseClusterOptions, IdleTimeoutZeroIsOff) {
  Config config = Parse(std::string(kWeb) + "    idle_timeout: 0\n" +
                        "clusters: [{ name: demo, endpoints: [\"127.0.0.1:1\"] }]\n");
  EXPECT_EQ(config.listeners[0].idle_timeout, absl::ZeroDuration());
}

}  // namespace
}  // namespace skproxy::config
