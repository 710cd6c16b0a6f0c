#include "tests/integration/sanitizer_report.h"

#include <algorithm>

#include "gtest/gtest.h"

namespace skproxy::itest {

std::optional<std::string> FindSanitizerReport(std::string_view output, size_t max_bytes) {
  // The first line each runtime prints: "==PID==ERROR: AddressSanitizer: heap-use-after-free ...",
  // "==PID==ERROR: LeakSanitizer: detected memory leaks", "FILE:LINE:COL: runtime error: ..." (UBSan), and
  // LeakSanitizer's own failure to check ("LeakSanitizer has encountered a fatal error").
  constexpr std::string_view kMarkers[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                           ": runtime error: ", "LeakSanitizer has encountered a fatal error",
                                           "SUMMARY: UndefinedBehaviorSanitizer"};
  size_t first = std::string_view::npos;
  for (std::string_view marker : kMarkers) first = std::min(first, output.find(marker));
  if (first == std::string_view::npos) return std::nullopt;
  // From the start of the line that holds the marker.
  size_t line = output.rfind('\n', first);
  line = line == std::string_view::npos ? 0 : line + 1;
  return std::string(output.substr(line, max_bytes));
}

bool FailOnSanitizerReport(std::string_view who, std::string_view output) {
  std::optional<std::string> report = FindSanitizerReport(output);
  if (!report) return false;
  ADD_FAILURE() << "sanitizer report from " << who << ":\n" << *report;
  return true;
}

}  // namespace skproxy::itest
