#include "config/config.h"

#include <arpa/inet.h>
#include <grp.h>
#include <pwd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

// The parser is a long chain of steps that each may fail with the error to report.
#define CONFIG_RETURN_IF_ERROR(expr)                                  \
  do {                                                                \
    if (absl::Status status_ = (expr); !status_.ok()) return status_; \
  } while (0)
#define CONFIG_CONCAT_(a, b) a##b
#define CONFIG_CONCAT(a, b) CONFIG_CONCAT_(a, b)
#define CONFIG_ASSIGN_OR_RETURN(lhs, expr) CONFIG_ASSIGN_OR_RETURN_(CONFIG_CONCAT(statusor_, __LINE__), lhs, expr)
#define CONFIG_ASSIGN_OR_RETURN_(statusor, lhs, expr)      \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

namespace skproxy::config {
namespace {

constexpr char kDefaultAdminAddress[] = "127.0.0.1:9901";
constexpr uint64_t kMaxWorkers = 1024;
// Below 512 KiB the kernel path crawls on zero-window probes whenever the gate passes bytes to user space.
// Above 1 GiB the kernel would clamp SO_RCVBUF anyway (it caps the value at INT_MAX / 2 before doubling it).
constexpr uint64_t kMinReceiveBuffer = 512 << 10;
constexpr uint64_t kMaxReceiveBuffer = 1 << 30;
// The verdict computes a direction's psock backlog in signed 32-bit serial arithmetic (bpf/verdict.bpf.c,
// peer_pending); the gate keeps that backlog at most gate_limit, so 1 GiB leaves it far from 2^31. With both
// maxima a direction may hold gate_limit + receive_buffer + the 256 KiB copy buffer, about 2 GiB: a sum only
// user space forms, in 64 bits, so the two bounds need no joint rule.
constexpr uint64_t kMaxGateLimit = 1 << 30;
// Inspection reads into one buffer per connection: 64 KiB bounds what a slow client can make us hold.
constexpr uint64_t kMinInspectBytes = 1 << 10;
constexpr uint64_t kMaxInspectBytes = 64 << 10;
constexpr ListenerProtocol kListenerProtocols[] = {ListenerProtocol::kTcp, ListenerProtocol::kHttp,
                                                   ListenerProtocol::kTls};
constexpr uint64_t kMaxWeight = 1000;
constexpr size_t kMaxEndpoints = 4096;
constexpr uint32_t kDefaultConsecutiveFailures = 5;  // Envoy's consecutive_5xx default
constexpr uint64_t kMaxDemoteBelow = 64 << 10;

// The ids of user `name` (the reentrant getpw*_r: a reload parses on another thread).
std::optional<std::pair<uid_t, gid_t>> LookUpUser(const std::string& name) {
  passwd entry{}, *found = nullptr;
  std::vector<char> buffer(16384);
  if (getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr)
    return std::nullopt;
  return std::make_pair(entry.pw_uid, entry.pw_gid);
}

std::optional<gid_t> LookUpGroup(const std::string& name) {
  group entry{}, *found = nullptr;
  std::vector<char> buffer(16384);
  if (getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr)
    return std::nullopt;
  return entry.gr_gid;
}
constexpr size_t kMaxConfigFileBytes = 1 << 20;  // so that LoadConfigFile("/dev/zero") ends

// A YAML node with what an error about it must name: its key path and its line.
struct Value {
  YAML::Node node;
  std::string path;  // "listeners[0].address"; empty for the document itself
  int line = 1;
};

// yaml-cpp marks are 0-based, and -1 when the node has no position (an empty document).
int LineOf(const YAML::Mark& mark, int fallback) { return mark.line >= 0 ? mark.line + 1 : fallback; }

std::string Join(absl::string_view path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

// The entries of one mapping, already checked against the keys its schema allows.
struct Fields {
  Value parent;
  std::vector<std::pair<std::string, Value>> entries;

  std::optional<Value> Find(absl::string_view key) const {
    for (const auto& [name, value] : entries) {
      if (name == key) return value;
    }
    return std::nullopt;
  }
  // A key that should be there and is not is blamed on the mapping that lacks it.
  Value Absent(absl::string_view key) const { return {YAML::Node(), Join(parent.path, key), parent.line}; }
};

const sockaddr_in& AsV4(const SocketAddress& a) { return reinterpret_cast<const sockaddr_in&>(a.storage); }
const sockaddr_in6& AsV6(const SocketAddress& a) { return reinterpret_cast<const sockaddr_in6&>(a.storage); }

bool IsWildcard(const SocketAddress& a) {
  return a.family() == AF_INET ? AsV4(a).sin_addr.s_addr == htonl(INADDR_ANY)
                               : IN6_IS_ADDR_UNSPECIFIED(&AsV6(a).sin6_addr);
}

bool SameIp(const SocketAddress& a, const SocketAddress& b) {
  if (a.family() != b.family()) return false;
  return a.family() == AF_INET ? AsV4(a).sin_addr.s_addr == AsV4(b).sin_addr.s_addr
                               : std::memcmp(&AsV6(a).sin6_addr, &AsV6(b).sin6_addr, sizeof(in6_addr)) == 0;
}

// Whether two listen addresses would fight over one port. skproxy binds [::] with IPV6_V6ONLY, so a
// wildcard takes the port only from addresses of its own family.
bool Overlaps(const SocketAddress& a, const SocketAddress& b) {
  if (a.port() != b.port()) return false;
  auto covers = [](const SocketAddress& wildcard, const SocketAddress& other) {
    return IsWildcard(wildcard) && wildcard.family() == other.family();
  };
  return SameIp(a, b) || covers(a, b) || covers(b, a);
}

// Names end up in metric labels and log lines, hence the conservative alphabet.
bool IsValidName(absl::string_view name) {
  return !name.empty() &&
         absl::c_all_of(name, [](char c) { return absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.'; });
}

class Parser {
 public:
  explicit Parser(std::string_view source) : source_(source) {}

  absl::StatusOr<Config> Parse(const YAML::Node& root);

 private:
  absl::Status Error(const Value& at, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s:%d: %s: %s", source_, at.line, at.path.empty() ? "document" : at.path, what));
  }

  absl::StatusOr<Fields> Mapping(const Value& v, std::initializer_list<absl::string_view> allowed) const;
  absl::StatusOr<std::vector<Value>> Sequence(const Value& v) const;
  absl::StatusOr<Value> Required(const Fields& fields, absl::string_view key) const;

  absl::StatusOr<std::string> String(const Value& v) const;
  absl::StatusOr<std::string> Name(const Value& v) const;
  absl::StatusOr<uint64_t> Integer(const Value& v, uint64_t max) const;
  absl::StatusOr<uint64_t> ByteSize(const Value& v) const;
  absl::StatusOr<uint32_t> Mark(const Value& v) const;
  absl::StatusOr<bool> Bool(const Value& v) const;
  absl::StatusOr<absl::Duration> PositiveDuration(const Value& v) const;
  absl::StatusOr<SocketAddress> Address(const Value& v) const;
  absl::StatusOr<Endpoint> ParseEndpoint(const Value& v) const;
  absl::StatusOr<Endpoint> EndpointAddress(const Value& v) const;
  absl::Status ParseHealthCheck(const Value& v, HealthCheck& check) const;
  absl::Status ParseOutlierDetection(const Value& v, OutlierDetection& outlier) const;
  absl::Status ParseHttpKeepalive(const Value& v, HttpKeepalive& keepalive) const;
  absl::StatusOr<uint32_t> Count(const Value& v, uint64_t min, uint64_t max) const;
  absl::StatusOr<absl::Duration> OptionalDuration(const Value& v) const;

  absl::Status ParseAdmin(const Value& v, Admin& admin);
  absl::Status ParseSockmap(const Value& v, Sockmap& sockmap) const;
  absl::StatusOr<Cluster> ParseCluster(const Value& v, const Config& config) const;
  absl::StatusOr<Listener> ParseListener(const Value& v, const Config& config) const;
  absl::StatusOr<Route> ParseRoute(const Value& v, const Listener& listener, const Config& config) const;
  absl::StatusOr<std::string> HostPattern(const Value& v) const;
  absl::StatusOr<ProxyProtocolVersion> ProxyProtocol(const Value& v) const;

  std::string source_;
  std::optional<int> admin_line_;  // line of admin.address when the file sets it
};

absl::StatusOr<Fields> Parser::Mapping(const Value& v, std::initializer_list<absl::string_view> allowed) const {
  Fields fields{v, {}};
  if (v.node.IsNull()) return fields;  // "sockmap:" with every key commented out
  if (!v.node.IsMap()) return Error(v, "expected a mapping");
  for (const auto& entry : v.node) {
    int line = LineOf(entry.first.Mark(), v.line);
    if (!entry.first.IsScalar()) return Error({entry.first, v.path, line}, "keys must be strings");
    const std::string& key = entry.first.Scalar();
    // The key's line, not the value's: a null value has no line of its own and an alias has its anchor's.
    Value field{entry.second, Join(v.path, key), line};
    if (absl::c_find(allowed, key) == allowed.end()) return Error(field, "unknown key");
    if (std::optional<Value> first = fields.Find(key)) {
      return Error(field, absl::StrFormat("duplicate key (first at line %d)", first->line));
    }
    fields.entries.emplace_back(key, std::move(field));
  }
  return fields;
}

absl::StatusOr<std::vector<Value>> Parser::Sequence(const Value& v) const {
  std::vector<Value> items;
  if (v.node.IsNull()) return items;
  if (!v.node.IsSequence()) return Error(v, "expected a list");
  for (const YAML::Node& item : v.node) {
    items.push_back({item, absl::StrCat(v.path, "[", items.size(), "]"), LineOf(item.Mark(), v.line)});
  }
  return items;
}

absl::StatusOr<Value> Parser::Required(const Fields& fields, absl::string_view key) const {
  if (std::optional<Value> value = fields.Find(key)) return *std::move(value);
  return Error(fields.Absent(key), "required key is missing");
}

absl::StatusOr<std::string> Parser::String(const Value& v) const {
  if (!v.node.IsScalar()) return Error(v, "expected a string");
  return v.node.Scalar();
}

absl::StatusOr<std::string> Parser::Name(const Value& v) const {
  CONFIG_ASSIGN_OR_RETURN(std::string name, String(v));
  if (!IsValidName(name)) {
    return Error(v, absl::StrFormat("'%s' is not a valid name (use letters, digits, '_', '-', '.')", name));
  }
  return name;
}

absl::StatusOr<uint64_t> Parser::Integer(const Value& v, uint64_t max) const {
  constexpr absl::string_view kExpected = "expected a non-negative integer";
  if (!v.node.IsScalar()) return Error(v, kExpected);
  const std::string& text = v.node.Scalar();
  if (text.empty() || !absl::c_all_of(text, absl::ascii_isdigit)) return Error(v, kExpected);
  uint64_t n = 0;
  if (!absl::SimpleAtoi(text, &n) || n > max) {
    return Error(v, absl::StrFormat("%s is too large (at most %d)", text, max));
  }
  return n;
}

// "1048576", "512KiB", "8MiB", "1GiB": binary units only, so that a size means one thing.
absl::StatusOr<uint64_t> Parser::ByteSize(const Value& v) const {
  static constexpr std::pair<absl::string_view, int> kUnits[] = {{"", 0}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30}};
  constexpr absl::string_view kExpected = "expected a byte size like 8MiB, 512KiB or 1048576";
  if (!v.node.IsScalar()) return Error(v, kExpected);
  absl::string_view text = v.node.Scalar();
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(text[digits])) ++digits;
  absl::string_view unit = absl::StripLeadingAsciiWhitespace(text.substr(digits));
  const auto* found = absl::c_find_if(kUnits, [&](const auto& u) { return u.first == unit; });
  if (digits == 0 || found == std::end(kUnits)) return Error(v, kExpected);
  uint64_t n = 0;
  if (!absl::SimpleAtoi(text.substr(0, digits), &n) || n > (std::numeric_limits<uint64_t>::max() >> found->second)) {
    return Error(v, absl::StrFormat("%s is too large", text));
  }
  return n << found->second;
}

// A firewall mark as nft prints it (0x534b) or in decimal, 0 to 2^32-1.
absl::StatusOr<uint32_t> Parser::Mark(const Value& v) const {
  constexpr absl::string_view kExpected = "expected a 32-bit mark like 0x534b or 21323";
  if (!v.node.IsScalar()) return Error(v, kExpected);
  const std::string& text = v.node.Scalar();
  const bool hex = absl::StartsWith(text, "0x") || absl::StartsWith(text, "0X");
  absl::string_view digits = hex ? absl::string_view(text).substr(2) : absl::string_view(text);
  auto is_digit = hex ? absl::ascii_isxdigit : absl::ascii_isdigit;
  uint64_t n = 0;
  if (digits.empty() || digits.size() > 10 || !absl::c_all_of(digits, is_digit)) return Error(v, kExpected);
  if (!(hex ? absl::SimpleHexAtoi(digits, &n) : absl::SimpleAtoi(digits, &n)) ||
      n > std::numeric_limits<uint32_t>::max()) {
    return Error(v, absl::StrFormat("%s is too large (at most 0xffffffff)", text));
  }
  return static_cast<uint32_t>(n);
}

absl::StatusOr<bool> Parser::Bool(const Value& v) const {
  if (v.node.IsScalar()) {
    if (v.node.Scalar() == "true") return true;
    if (v.node.Scalar() == "false") return false;
  }
  return Error(v, "expected true or false");
}

absl::StatusOr<absl::Duration> Parser::PositiveDuration(const Value& v) const {
  absl::Duration d;
  if (!v.node.IsScalar() || !absl::ParseDuration(v.node.Scalar(), &d) || d == absl::InfiniteDuration() ||
      d == -absl::InfiniteDuration()) {
    return Error(v, "expected a duration like 5s, 250ms or 1m");
  }
  if (d <= absl::ZeroDuration()) return Error(v, "must be greater than 0");
  return d;
}

absl::StatusOr<SocketAddress> Parser::Address(const Value& v) const {
  CONFIG_ASSIGN_OR_RETURN(std::string text, String(v));
  absl::StatusOr<SocketAddress> address = ParseSocketAddress(text);
  if (!address.ok()) return Error(v, address.status().message());
  return address;
}

absl::Status Parser::ParseAdmin(const Value& v, Admin& admin) {
  CONFIG_ASSIGN_OR_RETURN(Fields fields, Mapping(v, {"address"}));
  if (std::optional<Value> address = fields.Find("address")) {
    CONFIG_ASSIGN_OR_RETURN(admin.address, Address(*address));
    admin_line_ = address->line;
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseSockmap(const Value& v, Sockmap& sockmap) const {
  CONFIG_ASSIGN_OR_RETURN(Fields fields,
                          Mapping(v, {"max_entries", "gate_limit", "receive_buffer", "promote_after",
                                      "quiet_worker_connections", "demote_below", "demote_after_messages",
                                      "switch_interval"}));
  if (std::optional<Value> entries = fields.Find("max_entries")) {
    CONFIG_ASSIGN_OR_RETURN(uint64_t n, Integer(*entries, std::numeric_limits<uint32_t>::max()));
    if (n == 0) return Error(*entries, "must be greater than 0");
    sockmap.max_entries = static_cast<uint32_t>(n);
  }
  if (std::optional<Value> gate = fields.Find("gate_limit")) {
    CONFIG_ASSIGN_OR_RETURN(sockmap.gate_limit_bytes, ByteSize(*gate));
    if (sockmap.gate_limit_bytes == 0) return Error(*gate, "must be greater than 0");
    if (sockmap.gate_limit_bytes > kMaxGateLimit)
      return Error(*gate, absl::StrFormat("must be at most %dGiB", kMaxGateLimit >> 30));
  }
  if (std::optional<Value> buffer = fields.Find("receive_buffer")) {
    CONFIG_ASSIGN_OR_RETURN(uint64_t n, ByteSize(*buffer));
    if (n < kMinReceiveBuffer) {
      return Error(*buffer, absl::StrFormat("must be at least %dKiB", kMinReceiveBuffer >> 10));
    }
    if (n > kMaxReceiveBuffer) return Error(*buffer, absl::StrFormat("must be at most %dGiB", kMaxReceiveBuffer >> 30));
    sockmap.receive_buffer_bytes = static_cast<uint32_t>(n);
  }
  if (std::optional<Value> quiet = fields.Find("quiet_worker_connections")) {
    CONFIG_ASSIGN_OR_RETURN(uint64_t n, Integer(*quiet, std::numeric_limits<uint32_t>::max()));
    sockmap.quiet_worker_connections = static_cast<uint32_t>(n);
  }
  if (std::optional<Value> promote = fields.Find("promote_after")) {
    CONFIG_ASSIGN_OR_RETURN(sockmap.promote_after_bytes, ByteSize(*promote));
    if (sockmap.promote_after_bytes > kMaxGateLimit)
      return Error(*promote, absl::StrFormat("must be at most %dGiB", kMaxGateLimit >> 30));
  }
  if (std::optional<Value> below = fields.Find("demote_below")) {
    CONFIG_ASSIGN_OR_RETURN(sockmap.demote_below_bytes, ByteSize(*below));
    // An skb carries at most 64 KiB (GSO), so a larger mean would demote every connection.
    if (sockmap.demote_below_bytes > kMaxDemoteBelow)
      return Error(*below, absl::StrFormat("must be at most %dKiB", kMaxDemoteBelow >> 10));
  }
  if (std::optional<Value> messages = fields.Find("demote_after_messages")) {
    CONFIG_ASSIGN_OR_RETURN(uint64_t n, Integer(*messages, std::numeric_limits<uint32_t>::max()));
    if (n == 0) return Error(*messages, "must be greater than 0");
    sockmap.demote_after_messages = static_cast<uint32_t>(n);
  }
  if (std::optional<Value> interval = fields.Find("switch_interval")) {
    CONFIG_ASSIGN_OR_RETURN(sockmap.switch_interval, PositiveDuration(*interval));
    if (sockmap.switch_interval < absl::Milliseconds(1) || sockmap.switch_interval > absl::Seconds(60))
      return Error(*interval, "must be between 1ms and 60s");
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> Parser::Count(const Value& v, uint64_t min, uint64_t max) const {
  CONFIG_ASSIGN_OR_RETURN(uint64_t n, Integer(v, std::numeric_limits<uint32_t>::max()));
  if (n < min || n > max) return Error(v, absl::StrFormat("must be between %d and %d", min, max));
  return static_cast<uint32_t>(n);
}

// A duration where 0 means "off" (idle_timeout: 0).
absl::StatusOr<absl::Duration> Parser::OptionalDuration(const Value& v) const {
  if (v.node.IsScalar() && (v.node.Scalar() == "0" || v.node.Scalar() == "off")) return absl::ZeroDuration();
  return PositiveDuration(v);
}

// "10.0.0.1:80", "[::1]:80" or "name.example:80".
absl::StatusOr<Endpoint> Parser::EndpointAddress(const Value& v) const {
  CONFIG_ASSIGN_OR_RETURN(std::string text, String(v));
  Endpoint endpoint;
  endpoint.line = v.line;
  absl::StatusOr<SocketAddress> literal = ParseSocketAddress(text);
  if (literal.ok()) {
    if (IsWildcard(*literal)) {
      return Error(v, absl::StrFormat("%s is a wildcard address, not one to connect to", literal->ToString()));
    }
    endpoint.address = *literal;
    endpoint.port = literal->port();
    std::string shown = literal->ToString();
    endpoint.host = literal->family() == AF_INET6 ? shown.substr(1, shown.rfind(']') - 1)
                                                  : shown.substr(0, shown.rfind(':'));
    return endpoint;
  }
  const size_t colon = text.rfind(':');
  const std::string host = colon == std::string::npos ? text : text.substr(0, colon);
  // A host name as DNS allows it (RFC 1123 labels); anything else is reported as the address error.
  const bool name_like =
      !host.empty() && host.size() <= 253 && host.front() != '.' && host.front() != '-' &&
      absl::c_any_of(host, absl::ascii_isalpha) &&
      absl::c_all_of(host, [](char c) { return absl::ascii_isalnum(c) || c == '-' || c == '.'; }) &&
      host.find("..") == std::string::npos;
  if (!name_like || colon == std::string::npos) {
    // The address parser says host names are not resolved and asks for IP:PORT, which is true of listen
    // addresses only. Its other errors (IPv6 without brackets, a bad port after a valid IPv4) stand.
    in_addr v4;
    const bool address_error = !host.empty() && host.find_first_of(":[]") == std::string::npos &&
                               inet_pton(AF_INET, host.c_str(), &v4) != 1;
    if (colon == std::string::npos) {
      return Error(v, absl::StrFormat("missing port in '%s' (expected IP:PORT or NAME:PORT)", text));
    }
    if (address_error) {
      return Error(v, absl::StrFormat("'%s' is neither an IP address nor a host name (letters, digits, '-', '.')",
                                      host));
    }
    return Error(v, literal.status().message());
  }
  uint32_t port = 0;
  const std::string port_text = text.substr(colon + 1);
  if (port_text.empty() || !absl::c_all_of(port_text, absl::ascii_isdigit) || !absl::SimpleAtoi(port_text, &port) ||
      port == 0 || port > 65535) {
    return Error(v, absl::StrFormat("'%s': port must be 1..65535", text));
  }
  endpoint.host = absl::AsciiStrToLower(host);
  endpoint.port = static_cast<uint16_t>(port);
  endpoint.is_name = true;
  return endpoint;
}

// Either the plain string or { address: "host:port", weight: N }.
absl::StatusOr<Endpoint> Parser::ParseEndpoint(const Value& v) const {
  if (!v.node.IsMap()) return EndpointAddress(v);
  CONFIG_ASSIGN_OR_RETURN(Fields fields, Mapping(v, {"address", "weight"}));
  CONFIG_ASSIGN_OR_RETURN(Value address, Required(fields, "address"));
  CONFIG_ASSIGN_OR_RETURN(Endpoint endpoint, EndpointAddress(address));
  endpoint.line = v.line;
  if (std::optional<Value> weight = fields.Find("weight")) {
    CONFIG_ASSIGN_OR_RETURN(endpoint.weight, Count(*weight, 1, kMaxWeight));
  }
  return endpoint;
}

absl::Status Parser::ParseHealthCheck(const Value& v, HealthCheck& check) const {
  CONFIG_ASSIGN_OR_RETURN(Fields fields,
                          Mapping(v, {"type", "path", "host", "expected_status", "interval", "timeout",
                                      "healthy_threshold", "unhealthy_threshold"}));
  CONFIG_ASSIGN_OR_RETURN(Value type, Required(fields, "type"));
  CONFIG_ASSIGN_OR_RETURN(std::string type_name, String(type));
  if (type_name == "tcp") {
    check.type = HealthCheck::Type::kTcp;
  } else if (type_name == "http") {
    check.type = HealthCheck::Type::kHttp;
  } else {
    return Error(type, absl::StrFormat("expected tcp or http, got '%s'", type_name));
  }
  for (absl::string_view http_only : {"path", "host", "expected_status"}) {
    if (std::optional<Value> field = fields.Find(http_only); field && check.type != HealthCheck::Type::kHttp) {
      return Error(*field, "only for type: http");
    }
  }
  if (std::optional<Value> path = fields.Find("path")) {
    CONFIG_ASSIGN_OR_RETURN(check.path, String(*path));
    const bool printable = absl::c_all_of(check.path, [](char c) { return c > 0x20 && c < 0x7f; });
    if (check.path.empty() || check.path.front() != '/' || !printable) {
      return Error(*path, "expected a path starting with '/', without spaces or control characters");
    }
  }
  if (std::optional<Value> host = fields.Find("host")) {
    CONFIG_ASSIGN_OR_RETURN(check.host, String(*host));
    if (check.host.empty() || !absl::c_all_of(check.host, [](char c) { return c > 0x20 && c < 0x7f; })) {
      return Error(*host, "expected a host name without spaces or control characters");
    }
  }
  if (std::optional<Value> status = fields.Find("expected_status")) {
    CONFIG_ASSIGN_OR_RETURN(check.expected_status, Count(*status, 100, 599));
  }
  if (std::optional<Value> interval = fields.Find("interval")) {
    CONFIG_ASSIGN_OR_RETURN(check.interval, PositiveDuration(*interval));
  }
  if (std::optional<Value> timeout = fields.Find("timeout")) {
    CONFIG_ASSIGN_OR_RETURN(check.timeout, PositiveDuration(*timeout));
  }
  if (std::optional<Value> healthy = fields.Find("healthy_threshold")) {
    CONFIG_ASSIGN_OR_RETURN(check.healthy_threshold, Count(*healthy, 1, 1000));
  }
  if (std::optional<Value> unhealthy = fields.Find("unhealthy_threshold")) {
    CONFIG_ASSIGN_OR_RETURN(check.unhealthy_threshold, Count(*unhealthy, 1, 1000));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseOutlierDetection(const Value& v, OutlierDetection& outlier) const {
  CONFIG_ASSIGN_OR_RETURN(Fields fields, Mapping(v, {"consecutive_failures", "ejection_time"}));
  outlier.consecutive_failures = kDefaultConsecutiveFailures;  // the section turns it on
  if (std::optional<Value> failures = fields.Find("consecutive_failures")) {
    CONFIG_ASSIGN_OR_RETURN(outlier.consecutive_failures, Count(*failures, 0, 1000));
  }
  if (std::optional<Value> time = fields.Find("ejection_time")) {
    CONFIG_ASSIGN_OR_RETURN(outlier.ejection_time, PositiveDuration(*time));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseHttpKeepalive(const Value& v, HttpKeepalive& keepalive) const {
  CONFIG_ASSIGN_OR_RETURN(Fields fields, Mapping(v, {"max_idle", "idle_timeout"}));
  CONFIG_ASSIGN_OR_RETURN(Value max, Required(fields, "max_idle"));
  CONFIG_ASSIGN_OR_RETURN(keepalive.max_idle, Count(max, 0, 65536));
  if (std::optional<Value> timeout = fields.Find("idle_timeout")) {
    CONFIG_ASSIGN_OR_RETURN(keepalive.idle_timeout, PositiveDuration(*timeout));
  }
  return absl::OkStatus();
}

absl::StatusOr<Cluster> Parser::ParseCluster(const Value& v, const Config& config) const {
  CONFIG_ASSIGN_OR_RETURN(Fields fields,
                          Mapping(v, {"name", "connect_timeout", "lb_policy", "endpoints", "health_check",
                                      "outlier_detection", "dns_refresh", "respect_dns_ttl", "dns_min_refresh",
                                      "dns_max_refresh", "dns_family", "dns_resolvers", "max_connections",
                                      "proxy_protocol", "http_keepalive", "response_timeout"}));
  Cluster cluster;
  cluster.line = v.line;
  CONFIG_ASSIGN_OR_RETURN(Value name, Required(fields, "name"));
  CONFIG_ASSIGN_OR_RETURN(cluster.name, Name(name));
  if (const Cluster* first = config.FindCluster(cluster.name)) {
    return Error(name, absl::StrFormat("duplicate cluster name '%s' (first at line %d)", cluster.name, first->line));
  }
  if (std::optional<Value> timeout = fields.Find("connect_timeout")) {
    CONFIG_ASSIGN_OR_RETURN(cluster.connect_timeout, PositiveDuration(*timeout));
  }
  Value endpoints = fields.Find("endpoints").value_or(fields.Absent("endpoints"));
  CONFIG_ASSIGN_OR_RETURN(std::vector<Value> items, Sequence(endpoints));
  if (items.empty()) return Error(endpoints, "at least one endpoint is required");
  if (items.size() > kMaxEndpoints) return Error(endpoints, absl::StrFormat("at most %d endpoints", kMaxEndpoints));
  for (const Value& item : items) {
    CONFIG_ASSIGN_OR_RETURN(Endpoint endpoint, ParseEndpoint(item));
    for (const Endpoint& other : cluster.endpoints) {
      if (other.ToString() == endpoint.ToString()) {
        return Error(item, absl::StrFormat("duplicate endpoint %s (first at line %d)", endpoint.ToString(), other.line));
      }
    }
    cluster.endpoints.push_back(std::move(endpoint));
  }
  if (std::optional<Value> policy = fields.Find("lb_policy")) {
    CONFIG_ASSIGN_OR_RETURN(std::string text, String(*policy));
    absl::StatusOr<LbPolicy> parsed = ParseLbPolicy(text);
    if (!parsed.ok()) return Error(*policy, parsed.status().message());
    cluster.lb_policy = *parsed;
  }
  if (std::optional<Value> check = fields.Find("health_check")) {
    CONFIG_RETURN_IF_ERROR(ParseHealthCheck(*check, cluster.health_check));
  }
  if (std::optional<Value> outlier = fields.Find("outlier_detection")) {
    CONFIG_RETURN_IF_ERROR(ParseOutlierDetection(*outlier, cluster.outlier_detection));
  }
  if (std::optional<Value> refresh = fields.Find("dns_refresh")) {
    CONFIG_ASSIGN_OR_RETURN(cluster.dns_refresh, PositiveDuration(*refresh));
  }
  if (std::optional<Value> respect = fields.Find("respect_dns_ttl")) {
    CONFIG_ASSIGN_OR_RETURN(cluster.respect_dns_ttl, Bool(*respect));
  }
  if (std::optional<Value> min = fields.Find("dns_min_refresh")) {
    CONFIG_ASSIGN_OR_RETURN(cluster.dns_min_refresh, PositiveDuration(*min));
  }
  if (std::optional<Value> max = fields.Find("dns_max_refresh")) {
    CONFIG_ASSIGN_OR_RETURN(cluster.dns_max_refresh, PositiveDuration(*max));
    if (cluster.dns_max_refresh < cluster.dns_min_refresh) {
      return Error(*max, absl::StrFormat("must be at least dns_min_refresh (%s)",
                                         absl::FormatDuration(cluster.dns_min_refresh)));
    }
  } else if (cluster.dns_max_refresh < cluster.dns_min_refresh) {
    return Error(*fields.Find("dns_min_refresh"),
                 absl::StrFormat("must be at most dns_max_refresh (%s)", absl::FormatDuration(cluster.dns_max_refresh)));
  }
  if (std::optional<Value> family = fields.Find("dns_family")) {
    CONFIG_ASSIGN_OR_RETURN(std::string text, String(*family));
    if (text == "all") {
      cluster.dns_family = Cluster::DnsFamily::kAll;
    } else if (text == "v4") {
      cluster.dns_family = Cluster::DnsFamily::kV4;
    } else if (text == "v6") {
      cluster.dns_family = Cluster::DnsFamily::kV6;
    } else {
      return Error(*family, absl::StrFormat("expected all, v4 or v6, got '%s'", text));
    }
  }
  if (std::optional<Value> resolvers = fields.Find("dns_resolvers")) {
    CONFIG_ASSIGN_OR_RETURN(std::vector<Value> servers, Sequence(*resolvers));
    for (const Value& server : servers) {
      CONFIG_ASSIGN_OR_RETURN(SocketAddress address, Address(server));
      cluster.dns_resolvers.push_back(address);
    }
  }
  if (std::optional<Value> max = fields.Find("max_connections")) {
    CONFIG_ASSIGN_OR_RETURN(cluster.max_connections, Count(*max, 0, std::numeric_limits<uint32_t>::max()));
  }
  if (std::optional<Value> proxy = fields.Find("proxy_protocol")) {
    CONFIG_ASSIGN_OR_RETURN(cluster.proxy_protocol, ProxyProtocol(*proxy));
  }
  if (std::optional<Value> timeout = fields.Find("response_timeout")) {
    CONFIG_ASSIGN_OR_RETURN(cluster.response_timeout, OptionalDuration(*timeout));
    if (cluster.response_timeout != absl::ZeroDuration() &&
        (cluster.response_timeout < absl::Milliseconds(1) || cluster.response_timeout > absl::Hours(24)))
      return Error(*timeout, "must be 0 (off) or between 1ms and 24h");
  }
  if (std::optional<Value> keepalive = fields.Find("http_keepalive")) {
    CONFIG_RETURN_IF_ERROR(ParseHttpKeepalive(*keepalive, cluster.http_keepalive));
    // A PROXY header describes one client connection; a pooled upstream connection carries many clients.
    if (cluster.http_keepalive.enabled() && cluster.proxy_protocol != ProxyProtocolVersion::kNone)
      return Error(*keepalive, "cannot be combined with proxy_protocol (a pooled connection serves many clients)");
  }
  return cluster;
}

absl::StatusOr<Listener> Parser::ParseListener(const Value& v, const Config& config) const {
  CONFIG_ASSIGN_OR_RETURN(Fields fields,
                          Mapping(v, {"name", "address", "cluster", "transparent", "connect_timeout", "protocol",
                                      "routes", "inspect", "proxy_protocol", "x_forwarded_for", "max_connections",
                                      "idle_timeout"}));
  Listener listener;
  listener.line = v.line;
  listener.upstream_mark = config.upstream_mark;

  CONFIG_ASSIGN_OR_RETURN(Value name, Required(fields, "name"));
  CONFIG_ASSIGN_OR_RETURN(listener.name, Name(name));
  for (const Listener& other : config.listeners) {
    if (other.name == listener.name) {
      return Error(name, absl::StrFormat("duplicate listener name '%s' (first at line %d)", other.name, other.line));
    }
  }

  CONFIG_ASSIGN_OR_RETURN(Value address, Required(fields, "address"));
  CONFIG_ASSIGN_OR_RETURN(listener.address, Address(address));
  const int port = listener.address.port();
  for (const Listener& other : config.listeners) {
    if (Overlaps(other.address, listener.address)) {
      return Error(address,
                   absl::StrFormat("port %d already used by listener '%s' (line %d)", port, other.name, other.line));
    }
  }
  if (Overlaps(config.admin.address, listener.address)) {
    std::string admin = admin_line_ ? absl::StrFormat("admin.address (line %d)", *admin_line_)
                                    : absl::StrCat("the default admin.address ", config.admin.address.ToString());
    return Error(address, absl::StrFormat("port %d already used by %s", port, admin));
  }

  if (std::optional<Value> max = fields.Find("max_connections")) {
    CONFIG_ASSIGN_OR_RETURN(listener.max_connections, Count(*max, 0, std::numeric_limits<uint32_t>::max()));
  }
  if (std::optional<Value> idle = fields.Find("idle_timeout")) {
    CONFIG_ASSIGN_OR_RETURN(listener.idle_timeout, OptionalDuration(*idle));
  }
  if (std::optional<Value> transparent = fields.Find("transparent")) {
    CONFIG_ASSIGN_OR_RETURN(listener.transparent, Bool(*transparent));
  }
  if (listener.transparent) {
    // The destination comes from each connection; a cluster would silently be ignored.
    if (std::optional<Value> cluster = fields.Find("cluster")) {
      return Error(*cluster, "a transparent listener connects to each connection's original destination; "
                             "remove cluster or transparent");
    }
    for (absl::string_view key : {"protocol", "routes", "inspect", "proxy_protocol", "x_forwarded_for"}) {
      if (std::optional<Value> l7 = fields.Find(key)) {
        return Error(*l7, "a transparent listener forwards each connection to its original destination, unread; "
                          "remove it or transparent");
      }
    }
    if (std::optional<Value> timeout = fields.Find("connect_timeout")) {
      CONFIG_ASSIGN_OR_RETURN(listener.connect_timeout, PositiveDuration(*timeout));
    }
    return listener;
  }
  if (std::optional<Value> timeout = fields.Find("connect_timeout")) {
    return Error(*timeout, "only a transparent listener has one; set connect_timeout on the cluster");
  }
  if (std::optional<Value> protocol = fields.Find("protocol")) {
    CONFIG_ASSIGN_OR_RETURN(std::string text, String(*protocol));
    auto found = absl::c_find_if(kListenerProtocols, [&](ListenerProtocol p) { return ListenerProtocolName(p) == text; });
    if (found == std::end(kListenerProtocols)) {
      return Error(*protocol, absl::StrFormat("expected tcp, http or tls, got '%s'", text));
    }
    listener.protocol = *found;
  }

  // A tcp listener has nothing to route on: its one cluster is required. http and tls may leave the
  // default out, so that only the routes are served.
  std::optional<Value> cluster = fields.Find("cluster");
  if (!cluster && listener.protocol == ListenerProtocol::kTcp) {
    return Error(fields.Absent("cluster"), "required key is missing");
  }
  if (cluster) {
    CONFIG_ASSIGN_OR_RETURN(listener.cluster, String(*cluster));
    if (config.FindCluster(listener.cluster) == nullptr) {
      return Error(*cluster, absl::StrFormat("no cluster named '%s'", listener.cluster));
    }
  }

  if (std::optional<Value> routes = fields.Find("routes")) {
    if (listener.protocol == ListenerProtocol::kTcp) {
      return Error(*routes, "routes need protocol http or tls (a tcp listener reads nothing to route on)");
    }
    CONFIG_ASSIGN_OR_RETURN(std::vector<Value> items, Sequence(*routes));
    for (const Value& item : items) {
      CONFIG_ASSIGN_OR_RETURN(Route route, ParseRoute(item, listener, config));
      if (route.name.empty()) route.name = absl::StrCat("routes[", listener.routes.size(), "]");
      listener.routes.push_back(std::move(route));
    }
  }
  if (listener.protocol != ListenerProtocol::kTcp && listener.routes.empty() && listener.cluster.empty()) {
    return Error(fields.Absent("cluster"), "a listener needs a cluster or at least one route");
  }

  if (std::optional<Value> inspect = fields.Find("inspect")) {
    CONFIG_ASSIGN_OR_RETURN(Fields inspect_fields, Mapping(*inspect, {"max_bytes", "timeout"}));
    if (std::optional<Value> max = inspect_fields.Find("max_bytes")) {
      CONFIG_ASSIGN_OR_RETURN(uint64_t n, ByteSize(*max));
      if (n < kMinInspectBytes || n > kMaxInspectBytes) {
        return Error(*max, absl::StrFormat("must be between %dKiB and %dKiB", kMinInspectBytes >> 10,
                                           kMaxInspectBytes >> 10));
      }
      listener.inspect.max_bytes = static_cast<uint32_t>(n);
    }
    if (std::optional<Value> timeout = inspect_fields.Find("timeout")) {
      CONFIG_ASSIGN_OR_RETURN(listener.inspect.timeout, PositiveDuration(*timeout));
    }
  }
  if (std::optional<Value> proxy = fields.Find("proxy_protocol")) {
    CONFIG_ASSIGN_OR_RETURN(listener.proxy_protocol, ProxyProtocol(*proxy));
  }
  if (std::optional<Value> xff = fields.Find("x_forwarded_for")) {
    CONFIG_ASSIGN_OR_RETURN(listener.x_forwarded_for, Bool(*xff));
    if (listener.x_forwarded_for && listener.protocol != ListenerProtocol::kHttp) {
      return Error(*xff, "needs protocol http");
    }
  }
  return listener;
}

absl::StatusOr<Route> Parser::ParseRoute(const Value& v, const Listener& listener, const Config& config) const {
  CONFIG_ASSIGN_OR_RETURN(Fields fields, Mapping(v, {"name", "match", "cluster"}));
  Route route;
  route.line = v.line;
  if (std::optional<Value> name = fields.Find("name")) {
    CONFIG_ASSIGN_OR_RETURN(route.name, Name(*name));
    for (const Route& other : listener.routes) {
      if (other.name == route.name) {
        return Error(*name, absl::StrFormat("duplicate route name '%s' (first at line %d)", other.name, other.line));
      }
    }
  }
  CONFIG_ASSIGN_OR_RETURN(Value match, Required(fields, "match"));
  const bool http = listener.protocol == ListenerProtocol::kHttp;
  CONFIG_ASSIGN_OR_RETURN(Fields conditions, Mapping(match, {"host", "path_prefix", "sni"}));
  if (conditions.entries.empty()) return Error(match, "expected at least one of host, path_prefix, sni");
  for (const auto& [key, value] : conditions.entries) {
    if ((key == "sni") == http) {
      return Error(value, absl::StrFormat("needs protocol %s", key == "sni" ? "tls" : "http"));
    }
    if (key == "host") {
      CONFIG_ASSIGN_OR_RETURN(route.match.host, HostPattern(value));
    } else if (key == "sni") {
      CONFIG_ASSIGN_OR_RETURN(route.match.sni, HostPattern(value));
    } else {
      CONFIG_ASSIGN_OR_RETURN(route.match.path_prefix, String(value));
      if (route.match.path_prefix.empty() || route.match.path_prefix[0] != '/') {
        return Error(value, "must start with '/'");
      }
    }
  }
  CONFIG_ASSIGN_OR_RETURN(Value cluster, Required(fields, "cluster"));
  CONFIG_ASSIGN_OR_RETURN(route.cluster, String(cluster));
  if (config.FindCluster(route.cluster) == nullptr) {
    return Error(cluster, absl::StrFormat("no cluster named '%s'", route.cluster));
  }
  return route;
}

// "api.example.com" or "*.example.com", stored lower case: host names compare without case.
absl::StatusOr<std::string> Parser::HostPattern(const Value& v) const {
  CONFIG_ASSIGN_OR_RETURN(std::string text, String(v));
  std::string host = absl::AsciiStrToLower(text);
  absl::string_view rest = host;
  const bool wildcard = absl::ConsumePrefix(&rest, "*.");
  const bool valid = !rest.empty() && rest.size() <= 253 && rest.front() != '.' && rest.back() != '.' &&
                     rest.find("..") == absl::string_view::npos &&
                     absl::c_all_of(rest, [](char c) { return absl::ascii_isalnum(c) || c == '-' || c == '.'; });
  if (!valid) {
    return Error(v, absl::StrFormat("'%s' is not a host name or a wildcard like *.example.com%s", text,
                                    wildcard ? "" : " (a '*' is only allowed as the whole first label)"));
  }
  return host;
}

absl::StatusOr<ProxyProtocolVersion> Parser::ProxyProtocol(const Value& v) const {
  CONFIG_ASSIGN_OR_RETURN(std::string text, String(v));
  if (text == "v1") return ProxyProtocolVersion::kV1;
  if (text == "v2") return ProxyProtocolVersion::kV2;
  return Error(v, absl::StrFormat("expected v1 or v2, got '%s'", text));
}

absl::StatusOr<Config> Parser::Parse(const YAML::Node& root) {
  Config config;
  config.source = source_;
  config.admin.address = *ParseSocketAddress(kDefaultAdminAddress);

  CONFIG_ASSIGN_OR_RETURN(Fields top, Mapping({root, "", LineOf(root.Mark(), 1)},
                                              {"admin", "datapath", "workers", "drain_timeout", "access_log",
                                               "upstream_mark", "user", "group", "sockmap", "listeners",
                                               "clusters"}));
  if (std::optional<Value> admin = top.Find("admin")) CONFIG_RETURN_IF_ERROR(ParseAdmin(*admin, config.admin));
  if (std::optional<Value> datapath = top.Find("datapath")) {
    CONFIG_ASSIGN_OR_RETURN(std::string text, String(*datapath));
    absl::StatusOr<DatapathMode> mode = ParseDatapathMode(text);
    if (!mode.ok()) return Error(*datapath, mode.status().message());
    config.datapath = *mode;
  }
  if (std::optional<Value> workers = top.Find("workers")) {
    CONFIG_ASSIGN_OR_RETURN(uint64_t n, Integer(*workers, kMaxWorkers));
    config.workers = static_cast<int>(n);
  }
  if (std::optional<Value> drain = top.Find("drain_timeout")) {
    CONFIG_ASSIGN_OR_RETURN(config.drain_timeout, PositiveDuration(*drain));
  }
  if (std::optional<Value> log = top.Find("access_log")) {
    CONFIG_ASSIGN_OR_RETURN(Fields fields, Mapping(*log, {"path"}));
    CONFIG_ASSIGN_OR_RETURN(Value path, Required(fields, "path"));
    CONFIG_ASSIGN_OR_RETURN(config.access_log_path, String(path));
    if (config.access_log_path.empty()) return Error(path, "must not be empty (\"-\" is stdout)");
  }
  if (std::optional<Value> mark = top.Find("upstream_mark")) {
    CONFIG_ASSIGN_OR_RETURN(config.upstream_mark, Mark(*mark));
  }
  if (std::optional<Value> user = top.Find("user")) {
    CONFIG_ASSIGN_OR_RETURN(config.run_as.user, String(*user));
    std::optional<std::pair<uid_t, gid_t>> ids = LookUpUser(config.run_as.user);
    if (!ids) return Error(*user, absl::StrFormat("no such user '%s'", config.run_as.user));
    std::tie(config.run_as.uid, config.run_as.gid) = *ids;
  }
  if (std::optional<Value> group = top.Find("group")) {
    CONFIG_ASSIGN_OR_RETURN(config.run_as.group, String(*group));
    std::optional<gid_t> gid = LookUpGroup(config.run_as.group);
    if (!gid) return Error(*group, absl::StrFormat("no such group '%s'", config.run_as.group));
    config.run_as.gid = *gid;
  }
  if (std::optional<Value> sockmap = top.Find("sockmap")) {
    CONFIG_RETURN_IF_ERROR(ParseSockmap(*sockmap, config.sockmap));
  }

  // Clusters before listeners, wherever they are in the file: listeners refer to them.
  Value clusters = top.Find("clusters").value_or(top.Absent("clusters"));
  CONFIG_ASSIGN_OR_RETURN(std::vector<Value> cluster_items, Sequence(clusters));
  for (const Value& item : cluster_items) {
    CONFIG_ASSIGN_OR_RETURN(Cluster cluster, ParseCluster(item, config));
    config.clusters.push_back(std::move(cluster));
  }

  Value listeners = top.Find("listeners").value_or(top.Absent("listeners"));
  CONFIG_ASSIGN_OR_RETURN(std::vector<Value> listener_items, Sequence(listeners));
  if (listener_items.empty()) return Error(listeners, "at least one listener is required");
  for (const Value& item : listener_items) {
    CONFIG_ASSIGN_OR_RETURN(Listener listener, ParseListener(item, config));
    config.listeners.push_back(std::move(listener));
  }
  return config;
}

// Records where a document's content starts; an empty document ("---" alone) has none.
class ContentFinder : public YAML::EventHandler {
 public:
  std::optional<YAML::Mark> start;

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Found(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override {
    Found(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    Found(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    Found(mark);
  }
  void OnMapEnd() override {}

 private:
  void Found(const YAML::Mark& mark) {
    if (!start) start = mark;
  }
};

// YAML::Load reads the first document only; a second one with content would be silently ignored, so
// this returns its line. Not YAML::LoadAll: in yaml-cpp 0.7 it never returns on input such as ","
// (jbeder/yaml-cpp#1040), whose parser keeps yielding empty documents without consuming anything.
// Like the upstream fix (#1319), the search stops at the first empty document.
std::optional<int> SecondDocumentLine(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  ContentFinder first, second;
  if (!parser.HandleNextDocument(first) || !parser.HandleNextDocument(second) || !second.start) return std::nullopt;
  return LineOf(*second.start, 1);
}

struct FileCloser {
  void operator()(FILE* file) const { std::fclose(file); }
};

}  // namespace

std::string_view ListenerProtocolName(ListenerProtocol protocol) {
  switch (protocol) {
    case ListenerProtocol::kTcp:
      return "tcp";
    case ListenerProtocol::kHttp:
      return "http";
    case ListenerProtocol::kTls:
      return "tls";
  }
  return "unknown";
}

std::string_view DatapathModeName(DatapathMode mode) {
  switch (mode) {
    case DatapathMode::kAuto:
      return "auto";
    case DatapathMode::kSockmap:
      return "sockmap";
    case DatapathMode::kUserspace:
      return "userspace";
  }
  return "unknown";
}

absl::StatusOr<DatapathMode> ParseDatapathMode(std::string_view text) {
  for (DatapathMode mode : {DatapathMode::kAuto, DatapathMode::kSockmap, DatapathMode::kUserspace}) {
    if (text == DatapathModeName(mode)) return mode;
  }
  return absl::InvalidArgumentError(absl::StrFormat("expected auto, sockmap or userspace, got '%s'", text));
}

std::string_view LbPolicyName(LbPolicy policy) {
  switch (policy) {
    case LbPolicy::kRoundRobin:
      return "round_robin";
    case LbPolicy::kLeastConnections:
      return "least_connections";
    case LbPolicy::kMaglev:
      return "maglev";
    case LbPolicy::kRingHash:
      return "ring_hash";
  }
  return "unknown";
}

absl::StatusOr<LbPolicy> ParseLbPolicy(std::string_view text) {
  for (LbPolicy policy : {LbPolicy::kRoundRobin, LbPolicy::kLeastConnections, LbPolicy::kMaglev, LbPolicy::kRingHash}) {
    if (text == LbPolicyName(policy)) return policy;
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("expected round_robin, least_connections, maglev or ring_hash, got '%s'", text));
}

std::string Endpoint::ToString() const {
  if (!is_name) return address.ToString();
  return absl::StrCat(host, ":", port);
}

bool Cluster::has_names() const {
  return absl::c_any_of(endpoints, [](const Endpoint& e) { return e.is_name; });
}

const Cluster* Config::FindCluster(std::string_view name) const {
  auto it = absl::c_find_if(clusters, [&](const Cluster& c) { return c.name == name; });
  return it == clusters.end() ? nullptr : &*it;
}

absl::StatusOr<Config> ParseConfig(std::string_view yaml_text, std::string_view source) {
  const std::string text(yaml_text);
  try {
    YAML::Node root = YAML::Load(text);
    if (std::optional<int> line = SecondDocumentLine(text)) {
      return absl::InvalidArgumentError(absl::StrFormat("%s:%d: document: expected one YAML document", source, *line));
    }
    return Parser(source).Parse(root);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrFormat("%s:%d: syntax error: %s", source, LineOf(e.mark, 1), e.msg));
  }
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  auto cannot_read = [&](int error) { return absl::ErrnoToStatus(error, absl::StrCat(path, ": cannot read")); };
  std::unique_ptr<FILE, FileCloser> file(std::fopen(path.c_str(), "re"));
  if (!file) return cannot_read(errno);
  std::string text;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof(buffer), file.get())) {
    text.append(buffer, n);
    if (text.size() > kMaxConfigFileBytes) return cannot_read(EFBIG);
  }
  if (std::ferror(file.get())) return cannot_read(errno);
  return ParseConfig(text, path);
}

absl::StatusOr<Config> LoadDefaultConfig() { return ParseConfig(DefaultConfigYaml(), "<default>"); }

}  // namespace skproxy::config
