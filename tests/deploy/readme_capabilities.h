// The capabilities the README names for skproxy: its line "The capabilities skproxy needs: CAP_..."
// is the one list every deployment artefact and the capability test compare against.
#pragma once

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace skproxy::itest {

// Names without "CAP_", e.g. {"BPF", "NET_ADMIN", ...}, on the README line that starts with `line_start`
// (by default the capabilities needed to start; "The capabilities skproxy keeps" lists those it keeps once
// started); empty when the README has no such line.
inline std::set<std::string> ReadmeCapabilities(const std::string& readme_path,
                                                absl::string_view line_start = "The capabilities skproxy needs:") {
  std::ifstream in(readme_path);
  std::stringstream text;
  text << in.rdbuf();
  std::set<std::string> caps;
  for (absl::string_view line : absl::StrSplit(text.str(), '\n')) {
    if (!absl::StartsWith(line, line_start)) continue;
    for (absl::string_view word : absl::StrSplit(line, absl::ByAnyChar(" ,.`*()"), absl::SkipEmpty()))
      if (absl::ConsumePrefix(&word, "CAP_")) caps.insert(std::string(word));
  }
  return caps;
}

}  // namespace skproxy::itest
