// Runs the fuzz entry point over a fixed corpus of malformed input, so that every CI run exercises it
// without a fuzzing build; the entry point aborts the test on a crash or a broken invariant.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "config/config.h"
#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace skproxy::config {
namespace {

std::vector<std::string> MalformedCorpus() {
  std::vector<std::string> corpus = {
      "{",
      "[",
      ",",  // yaml-cpp#1040: YAML::LoadAll never returns
      "\n,\n    ",
      "[:",  // yaml-cpp#499, #938: YAML::Load hung in older releases
      "{:",
      "{# ke\ny{:",
      "]",
      "}",
      ":",
      "- - - -",
      "? ",
      "? [a]\n: b\n",
      "\t",
      "listeners:\n\t- name: web\n",
      "listeners: [\n",
      "listeners: [{name: web, address: \"0.0.0.0:1\", cluster: demo}\n",
      "listeners:\n  - name: \"web\n",
      "listeners:\n  - name: 'web\n",
      "listeners:\n  - name: web\n   address: x\n",
      "listeners: &a [*a]\n",
      "listeners: *a\n",
      "a: &a 1\nb: &a 2\nlisteners: *a\n",
      "clusters: [{name: d, endpoints: [{address: [1]}]}]\n",
      "clusters: [{name: d, endpoints: [{address: \"a:\"}]}]\n",
      "clusters: [{name: d, endpoints: [\":80\", \"a..b:1\", \"-a:1\", \"a:99999999999999999999\"]}]\n",
      "clusters: [{name: d, endpoints: [\"a:1\"], health_check: {type: [http]}}]\n",
      "clusters: [{name: d, endpoints: [\"a:1\"], health_check: {type: http, path: \"/\\x01\"}}]\n",
      "clusters: [{name: d, endpoints: [\"a:1\"], outlier_detection: [1]}]\n",
      "clusters: [{name: d, endpoints: [\"a:1\"], dns_resolvers: {a: 1}}]\n",
      "<<: {workers: 1}\n",
      "%YAML 9.9\n---\nworkers: 1\n",
      "%TAG ! tag:example.com,2000:\n---\nworkers: !foo 1\n",
      "workers: !!binary aGVsbG8=\n",
      "workers: !<tag:yaml.org,2002:int> 0x10\n",
      "---\n---\n---\n",
      "...\n...\n",
      "workers: 1\n...\nworkers: 2\n",
      "\xef\xbb\xbfworkers: 1\n",
      "workers: \xff\xfe\n",
      std::string("workers: 1\0\nlisteners: []\n", 27),
      std::string(1, '\0'),
      "\"\\u",
      "'",
      "&",
      "*",
      "!",
      "|",
      ">\n  folded\n",
      "key: |\n  a\n b\n",
      "admin: {address: [\"127.0.0.1:9901\"]}\n",
      "sockmap: {max_entries: 18446744073709551616, gate_limit: 18446744073709551615GiB}\n",
      "clusters: [{name: demo, endpoints: [[[[\"127.0.0.1:1\"]]]]}]\n",
      "listeners: [{name: web, address: \"[\", cluster: x}]\n",
      "listeners: [{name: web, address: \"[]:\", cluster: x}]\n",
      "listeners: [{name: web, address: \"[::1]:\", cluster: x}]\n",
      "listeners: [{name: web, address: \"1.2.3.4:65536\", cluster: x}]\n",
      "listeners: [{name: web, address: \"%n%n%s\", cluster: \"%s\"}]\n",
  };
  // Nesting deeper than yaml-cpp's recursion guard, flow and block style.
  corpus.push_back(std::string(5000, '[') + std::string(5000, ']'));
  corpus.push_back(std::string(5000, '{'));
  std::string block;
  for (int i = 0; i < 3000; ++i) block += std::string(i, ' ') + "- \n";
  corpus.push_back(block);
  // Many aliases of one large node ("billion laughs"): yaml-cpp shares the node, it does not expand it.
  std::string laughs = "a: &a [x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'z'; ++c) {
    laughs += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 8; ++i) laughs += std::string(i ? ", *" : "*") + static_cast<char>(c - 1);
    laughs += "]\n";
  }
  corpus.push_back(laughs);
  return corpus;
}

TEST(ConfigFuzzCorpus, EveryMalformedInputIsRejectedCleanly) {
  for (const std::string& input : MalformedCorpus()) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    absl::StatusOr<Config> config = ParseConfig(input, "corpus.yaml");
    EXPECT_FALSE(config.ok()) << "accepted: " << input.substr(0, 200);
    EXPECT_TRUE(absl::StartsWith(config.status().message(), "corpus.yaml:")) << config.status();
  }
}

TEST(ConfigFuzzCorpus, ValidInputPassesTheEntryPointChecks) {
  std::string_view yaml = DefaultConfigYaml();
  EXPECT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(yaml.data()), yaml.size()), 0);
}

}  // namespace
}  // namespace skproxy::config
