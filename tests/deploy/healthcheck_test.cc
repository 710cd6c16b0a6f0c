// skproxy-healthcheck (the image's HEALTHCHECK) against a real skproxy admin listener: 0 for a path that
// answers 200, 1 for one that does not, for a port where nothing listens, and for bad arguments.
#include <string>

#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_helpers.h"

namespace skproxy::itest {
namespace {

CommandResult Probe(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {SKPROXY_HEALTHCHECK};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, 10s);
}

TEST(HealthcheckTest, ExitsZeroOnlyOnStatus200) {
  ProxyConfig config = SimpleProxyConfig("userspace", {RefusedEndpoint()});
  auto proxy = ProxyProcess::Start(config);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const std::string admin = (*proxy)->admin().ToString();
  CommandResult ok = Probe({admin, "/metrics"});
  EXPECT_EQ(ok.exit_code, 0) << ok.Describe();
  CommandResult missing = Probe({admin, "/no-such-path"});
  EXPECT_EQ(missing.exit_code, 1) << missing.Describe();
  EXPECT_NE(missing.err.find("404"), std::string::npos) << missing.Describe();
  CommandResult refused = Probe({RefusedEndpoint().ToString(), "/healthz"});
  EXPECT_EQ(refused.exit_code, 1) << refused.Describe();
  EXPECT_NE(refused.err.find("connect"), std::string::npos) << refused.Describe();
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"localhost:9901"}, {admin, "no-slash"}, {admin, "/a b"}, {admin, "/x", "extra"}}) {
    CommandResult r = Probe(bad);
    EXPECT_EQ(r.exit_code, 1) << r.Describe();
  }
}

}  // namespace
}  // namespace skproxy::itest
