// The container image of deploy/Dockerfile, built and run for real with podman: the runtime stage holds
// nothing but the binaries, their shared libraries and the few files named in the Dockerfile; the binary
// carries the README's capabilities as file capabilities; run as its non-root user with those
// capabilities it loads the kernel path, and the HEALTHCHECK's program answers.
//
// It builds the `runtime-prebuilt` target, which puts the binaries of this build (build/skproxy) into the
// image the same way the default target puts the ones it compiles (deploy/image-rootfs.sh does both):
// compiling inside the image takes about 10 minutes on 2 cores. SKPROXY_IMAGE_TEST=source builds the
// default target instead, compile included. Needs podman and a local Debian 12 base image (no registry is
// reachable here; tests/run.sh makes one with deploy/make-base-image.sh): it skips, saying which, without
// them.
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/deploy/readme_capabilities.h"
#include "tests/integration/command.h"
#include "tests/integration/deadline.h"

namespace skproxy::itest {
namespace {

const std::string kSource = SKPROXY_SOURCE_DIR;
constexpr char kTag[] = "localhost/skproxy:itest";

std::string BaseImage() {
  const char* env = getenv("SKPROXY_IMAGE_BASE");
  return env && *env ? env : "localhost/debian:bookworm-slim";
}

// Builds the image once for both tests; the reason to skip, or empty.
class ImageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    podman_ = FindExecutable("podman");
    if (podman_.empty()) {
      skip_ = "podman (package podman) is not installed: the image was not built";
      return;
    }
    if (RunCommand({podman_, "image", "exists", BaseImage()}, 60s).exit_code != 0) {
      skip_ = "no base image " + BaseImage() + " (no registry is reachable; deploy/make-base-image.sh makes one "
              "with mmdebstrap, and tests/run.sh runs it): the image was not built";
      return;
    }
    // chroot isolation: RUN steps need no OCI runtime, so the build works where containers cannot run.
    // Docker format: OCI image configs have no HEALTHCHECK.
    std::vector<std::string> build = {podman_, "build", "-q", "--format", "docker", "--isolation=chroot",
                                      "-f", kSource + "/deploy/Dockerfile", "--build-arg", "BASE=" + BaseImage(),
                                      "-t", kTag};
    const char* mode = getenv("SKPROXY_IMAGE_TEST");
    if (mode == nullptr || std::string(mode) != "source") {
      // The Dockerfile copies build/skproxy from the repository: this build must be that one.
      if (std::string(SKPROXY_BINARY_DIR) != kSource + "/build") {
        skip_ = "the runtime-prebuilt target copies build/skproxy from the repository, and this build is in " +
                std::string(SKPROXY_BINARY_DIR) + " (SKPROXY_IMAGE_TEST=source compiles inside the image instead)";
        return;
      }
      CommandResult packages = RunCommand({kSource + "/deploy/runtime-packages.sh", kSource + "/build/skproxy",
                                           kSource + "/build/skproxy-healthcheck"},
                                          60s);
      if (packages.exit_code != 0) {
        built_ = packages;
        return;
      }
      build.insert(build.end(), {"--target", "runtime-prebuilt", "--build-arg",
                                 "RUNTIME_PACKAGES=" + std::string(absl::StripAsciiWhitespace(packages.out))});
    }
    build.push_back(kSource);
    built_ = RunCommand(build, 1500s);
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_EQ(built_.exit_code, 0) << built_.Describe();
  }
  static std::string podman_, skip_;
  static CommandResult built_;
};
std::string ImageTest::podman_, ImageTest::skip_;
CommandResult ImageTest::built_;

TEST_F(ImageTest, HoldsTheBinariesTheirLibrariesAndFileCapabilitiesOnly) {
  CommandResult config = RunCommand(
      {podman_, "image", "inspect", "--format", "{{.Config.User}}|{{json .Config.Healthcheck.Test}}", kTag}, 60s);
  ASSERT_EQ(config.exit_code, 0) << config.Describe();
  EXPECT_TRUE(absl::StartsWith(config.out, "65532:65532|")) << config.out;
  EXPECT_TRUE(absl::StrContains(config.out, "/usr/local/bin/skproxy-healthcheck")) << config.out;

  CommandResult mounted = RunCommand({podman_, "image", "mount", kTag}, 60s);
  ASSERT_EQ(mounted.exit_code, 0) << mounted.Describe();
  const std::string root(absl::StripAsciiWhitespace(mounted.out));
  CommandResult files = RunCommand({"/usr/bin/find", root, "-type", "f", "-printf", "%P\\n"}, 60s);
  ASSERT_EQ(files.exit_code, 0) << files.Describe();
  int libraries = 0;
  for (absl::string_view file : absl::StrSplit(files.out, '\n', absl::SkipEmpty())) {
    if (absl::StrContains(file, ".so")) {
      ++libraries;
      continue;
    }
    EXPECT_TRUE(file == "usr/local/bin/skproxy" || file == "usr/local/bin/skproxy-healthcheck" ||
                file == "etc/passwd" || file == "etc/group" || file == "etc/skproxy/skproxy.yaml")
        << "unexpected file in the runtime image: " << file;
  }
  EXPECT_GT(libraries, 0);
  CommandResult caps = RunCommand({FindExecutable("getcap"), root + "/usr/local/bin/skproxy"}, 10s);
  // "PATH cap_a,cap_b=ep"
  std::set<std::string> granted;
  const std::string list = caps.out.substr(caps.out.find(' ') + 1, caps.out.find('=') - caps.out.find(' ') - 1);
  for (absl::string_view c : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    absl::ConsumePrefix(&c, "cap_");
    granted.insert(absl::AsciiStrToUpper(c));
  }
  EXPECT_EQ(granted, ReadmeCapabilities(kSource + "/README.md")) << caps.Describe();
  EXPECT_TRUE(absl::StrContains(caps.out, "=ep")) << caps.Describe();
  // The binaries run on the image's libraries alone: its own loader, its own root.
  CommandResult version =
      RunCommand({"/usr/sbin/chroot", root, "/usr/local/bin/skproxy", "--version"}, 30s);
  EXPECT_EQ(version.exit_code, 0) << version.Describe();
  RunCommand({podman_, "image", "unmount", kTag}, 60s);
}

// The image's file system run as a container runtime would run it, without one (this sandbox cannot
// start containers): a copy of the root with its extended attributes, the host's /sys bound in (libbpf
// reads the kernel's BTF there), a network namespace of its own, and the image's user. The kernel path
// loads only if the file capabilities gave that user what it needs.
TEST_F(ImageTest, RunsAsItsUserWithTheKernelPathAndAnswersItsHealthcheck) {
  CommandResult mounted = RunCommand({podman_, "image", "mount", kTag}, 60s);
  ASSERT_EQ(mounted.exit_code, 0) << mounted.Describe();
  const std::string image_root(absl::StripAsciiWhitespace(mounted.out));
  const std::string root = ::testing::TempDir() + "skproxy-image-root";
  CommandResult copied = RunCommand({"/bin/sh", "-c", "rm -rf \"$1\" && cp -a --preserve=all \"$0\" \"$1\" && mkdir -p \"$1/sys\"",
                                     image_root, root},
                                    120s);
  RunCommand({podman_, "image", "unmount", kTag}, 60s);
  ASSERT_EQ(copied.exit_code, 0) << copied.Describe();
  const std::string script =
      "mount --make-rprivate / && mount --rbind /sys \"$0/sys\" && ip link set lo up && "
      "{ chroot --userspec=65532:65532 \"$0\" /usr/local/bin/skproxy --config /etc/skproxy/skproxy.yaml & } && "
      "pid=$! && i=0 && "
      "until chroot --userspec=65532:65532 \"$0\" /usr/local/bin/skproxy-healthcheck 127.0.0.1:9901 /metrics; do "
      "  i=$((i+1)); [ $i -lt 100 ] || { kill $pid; exit 1; }; sleep 0.1; done && "
      "echo healthcheck-ok && kill $pid && wait $pid";
  CommandResult run = RunCommand({FindExecutable("unshare"), "-m", "-n", "/bin/sh", "-c", script, root}, 60s);
  EXPECT_EQ(run.exit_code, 0) << run.Describe();
  EXPECT_TRUE(absl::StrContains(run.out, "healthcheck-ok")) << run.Describe();
  EXPECT_TRUE(absl::StrContains(run.err, "skproxy ready: datapath=sockmap")) << run.Describe();
  RunCommand({"/bin/rm", "-rf", root}, 60s);
}

}  // namespace
}  // namespace skproxy::itest
