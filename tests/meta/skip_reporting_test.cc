// ctest must show a skipped gtest as skipped, and must never show a failure as a skip. Both are checked by
// running ctest itself: on the real registration of meta.always_skips, and on an entry that runs a skipping
// and a failing test together (or a skipping test and a sanitizer's report at exit), registered with the same
// SKIP_REGULAR_EXPRESSION as every gtest entry.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace {

constexpr char kReason[] = "exists only to prove that ctest reports a skipped gtest as skipped";

TEST(MetaAlwaysSkips, Skips) { GTEST_SKIP() << kReason; }

// Run only by SkipReporting.FailureBesideASkipIsReportedAsFailed, through --gtest_also_run_disabled_tests.
TEST(MetaSkipBesideFailure, DISABLED_Skips) { GTEST_SKIP() << "skipped beside a failure"; }
TEST(MetaSkipBesideFailure, DISABLED_Fails) { ADD_FAILURE() << "deliberate failure beside a skip"; }

// Run only by SkipReporting.ReportAtExitBesideASkipIsReportedAsFailed: a skip, then at exit what
// LeakSanitizer prints after gtest's last line when it finds a leak (header, report, exit status 1). Written
// out rather than leaked for real so that the ordinary build checks it too.
void PrintLeakReportAndFail() {
  fflush(stdout);
  fprintf(stderr,
          "\n=================================================================\n"
          "==%d==ERROR: LeakSanitizer: detected memory leaks\n\n"
          "Direct leak of 24 byte(s) in 1 object(s) allocated from:\n"
          "    #0 0x7f0000000000 in operator new(unsigned long)\n\n"
          "SUMMARY: AddressSanitizer: 24 byte(s) leaked in 1 allocation(s).\n",
          static_cast<int>(getpid()));
  _exit(1);
}
TEST(MetaSkipThenLeak, DISABLED_Skips) {
  atexit(PrintLeakReportAndFail);
  GTEST_SKIP() << "skipped, then a leak report at exit";
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The nested output, printed when a check fails, without gtest's skip marker: the nested gtest's list of
// skipped tests must not make this test's own output look like a skip.
std::string Defused(std::string out) {
  for (size_t at; (at = out.find("[  SKIPPED ]")) != std::string::npos;) out.replace(at, 12, "[ SKIPPED ]");
  return out;
}

std::string SelfPath() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, n) : "";
}

// A directory of its own for each nested ctest, so its Testing/ log never mixes with the outer run's.
class NestedCtest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/skproxy-meta-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  void WriteTestfile(const std::string& text) { std::ofstream(dir_ + "/CTestTestfile.cmake") << text; }

  // ctest's output, with stderr; -V so the skip reason is in it too.
  std::string RunCtest(const std::string& regex) {
    std::string cmd = "'" SKPROXY_CTEST "' --test-dir '" + dir_ + "' -V -R '" + regex + "' 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return "popen failed";
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
    return out;
  }

  std::string dir_;
};

TEST_F(NestedCtest, SkipIsReportedAsSkipped) {
  WriteTestfile("subdirs(\"" SKPROXY_META_BINARY_DIR "\")\n");
  std::string out = RunCtest("^meta\\.always_skips$");
  std::string shown = Defused(out);
  EXPECT_NE(out.find("meta.always_skips"), std::string::npos) << shown;
  EXPECT_NE(out.find("***Skipped"), std::string::npos) << shown;
  EXPECT_NE(out.find(kReason), std::string::npos) << shown;
  EXPECT_EQ(out.find("Passed"), std::string::npos) << shown;
}

TEST_F(NestedCtest, FailureBesideASkipIsReportedAsFailed) {
  const std::string regex = Slurp(SKPROXY_SKIP_REGEX_FILE);
  ASSERT_FALSE(regex.empty());
  WriteTestfile("add_test(skip_beside_failure \"" + SelfPath() +
                "\" --gtest_filter=MetaSkipBesideFailure.* --gtest_also_run_disabled_tests)\n"
                "set_tests_properties(skip_beside_failure PROPERTIES SKIP_REGULAR_EXPRESSION [==[" + regex + "]==])\n");
  std::string out = RunCtest("^skip_beside_failure$");
  std::string shown = Defused(out);
  EXPECT_NE(out.find("deliberate failure beside a skip"), std::string::npos) << shown;
  EXPECT_NE(out.find("***Failed"), std::string::npos) << shown;
  EXPECT_EQ(out.find("***Skipped"), std::string::npos) << shown;
}

TEST_F(NestedCtest, ReportAtExitBesideASkipIsReportedAsFailed) {
  const std::string regex = Slurp(SKPROXY_SKIP_REGEX_FILE);
  ASSERT_FALSE(regex.empty());
  WriteTestfile("add_test(skip_then_leak \"" + SelfPath() +
                "\" --gtest_filter=MetaSkipThenLeak.* --gtest_also_run_disabled_tests)\n"
                "set_tests_properties(skip_then_leak PROPERTIES SKIP_REGULAR_EXPRESSION [==[" + regex + "]==])\n");
  std::string out = RunCtest("^skip_then_leak$");
  std::string shown = Defused(out);
  EXPECT_NE(out.find("ERROR: LeakSanitizer"), std::string::npos) << shown;
  EXPECT_NE(out.find("***Failed"), std::string::npos) << shown;
  EXPECT_EQ(out.find("***Skipped"), std::string::npos) << shown;
}

}  // namespace
