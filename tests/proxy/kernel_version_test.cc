#include "proxy/kernel_version.h"

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace skproxy {
namespace {

struct ReleaseCase {
  const char* release;
  bool parses;
  KernelVersion version;
  bool supports_sockmap;  // CheckKernelForSockmap passes
};

// Releases as uname prints them on distributions and on this machine.
constexpr ReleaseCase kCases[] = {
    {"6.1.0-18-amd64", true, {6, 1, 0}, false},   // Debian 12
    {"6.18.44-fc-v1045", true, {6, 18, 44}, true},
    {"5.15.0", true, {5, 15, 0}, false},
    {"5.15.0-91-generic", true, {5, 15, 0}, false},  // Ubuntu 22.04
    {"6.1.55", true, {6, 1, 55}, false},             // a late 6.1 stable is still 6.1
    {"6.2", true, {6, 2, 0}, true},                  // the minimum itself
    {"6.2.0-39-generic", true, {6, 2, 0}, true},
    {"6.10.3-arch1-1", true, {6, 10, 3}, true},      // minor 10 > 2: numeric, not text, order
    {"7.0.0", true, {7, 0, 0}, true},
    {"4.19.0-27-amd64", true, {4, 19, 0}, false},
    {"6.8.0+", true, {6, 8, 0}, true},
    // Unreadable releases pass the check: the BPF load decides then, with its own error.
    {"", false, {}, true},
    {"6", false, {}, true},
    {"linux", false, {}, true},
    {"6..1", false, {}, true},
    {"6.1.2.3", false, {}, true},
    {"99999999999.1", false, {}, true},
};

TEST(KernelVersionTest, FixtureTable) {
  for (const ReleaseCase& c : kCases) {
    SCOPED_TRACE(std::string("release '") + c.release + "'");
    absl::StatusOr<KernelVersion> v = ParseKernelRelease(c.release);
    EXPECT_EQ(v.ok(), c.parses) << v.status();
    if (v.ok() && c.parses) {
      EXPECT_EQ(*v, c.version) << v->ToString();
    }
    absl::Status check = CheckKernelForSockmap(c.release);
    EXPECT_EQ(check.ok(), c.supports_sockmap) << check;
  }
}

TEST(KernelVersionTest, RefusalNamesTheRunningKernelAndTheMinimum) {
  absl::Status check = CheckKernelForSockmap("6.1.0-18-amd64");
  EXPECT_EQ(check.code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(check.message());
  EXPECT_NE(message.find("6.1.0-18-amd64"), std::string::npos) << message;
  EXPECT_NE(message.find("6.2 or newer"), std::string::npos) << message;
}

TEST(KernelVersionTest, VersionText) {
  EXPECT_EQ(kMinKernelForSockmap.ToString(), "6.2");
  EXPECT_EQ((KernelVersion{6, 18, 44}).ToString(), "6.18.44");
}

// The test seam: SKPROXY_KERNEL_RELEASE replaces uname's answer when set and non-empty.
TEST(KernelVersionTest, EnvironmentOverridesUname) {
  const char* saved = std::getenv("SKPROXY_KERNEL_RELEASE");
  const std::string restore = saved ? saved : "";
  setenv("SKPROXY_KERNEL_RELEASE", "6.1.0", 1);
  EXPECT_EQ(RunningKernelRelease(), "6.1.0");
  setenv("SKPROXY_KERNEL_RELEASE", "", 1);
  const std::string real = RunningKernelRelease();
  EXPECT_FALSE(real.empty());
  EXPECT_TRUE(ParseKernelRelease(real).ok()) << real;
  if (saved) {
    setenv("SKPROXY_KERNEL_RELEASE", restore.c_str(), 1);
  } else {
    unsetenv("SKPROXY_KERNEL_RELEASE");
  }
}

}  // namespace
}  // namespace skproxy
