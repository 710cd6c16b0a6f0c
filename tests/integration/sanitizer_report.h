// Finding a sanitizer's report in a child process's output. In the ASan/UBSan build (tests/run-sanitized.sh)
// a report in the proxy or a command the tests run must fail the test even when the exit status the test
// expects happens to match (LeakSanitizer exits 1 at exit, the same status as a refused start).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace skproxy::itest {

// The report (from its first line, at most `max_bytes`) if `output` holds one from AddressSanitizer,
// LeakSanitizer or UndefinedBehaviorSanitizer; nullopt otherwise.
std::optional<std::string> FindSanitizerReport(std::string_view output, size_t max_bytes = 8000);

// Records a gtest failure naming `who` when `output` holds a sanitizer report; returns whether it did.
bool FailOnSanitizerReport(std::string_view who, std::string_view output);

}  // namespace skproxy::itest
