#include "proxy/kernel_version.h"

#include <sys/utsname.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace skproxy {

std::string KernelVersion::ToString() const {
  return patch == 0 ? absl::StrCat(major, ".", minor) : absl::StrCat(major, ".", minor, ".", patch);
}

absl::StatusOr<KernelVersion> ParseKernelRelease(std::string_view std_release) {
  const absl::string_view release(std_release.data(), std_release.size());  // this absl's is not std's
  size_t end = 0;
  while (end < release.size() && (absl::ascii_isdigit(release[end]) || release[end] == '.')) ++end;
  std::vector<absl::string_view> parts = absl::StrSplit(release.substr(0, end), '.');
  KernelVersion v;
  int* fields[] = {&v.major, &v.minor, &v.patch};
  if (parts.size() < 2 || parts.size() > 3)
    return absl::InvalidArgumentError(absl::StrCat("cannot read a kernel version from '", release, "'"));
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].empty() || !absl::SimpleAtoi(parts[i], fields[i]))
      return absl::InvalidArgumentError(absl::StrCat("cannot read a kernel version from '", release, "'"));
  }
  return v;
}

absl::Status CheckKernelForSockmap(std::string_view std_release) {
  absl::StatusOr<KernelVersion> version = ParseKernelRelease(std_release);
  const absl::string_view release(std_release.data(), std_release.size());
  if (!version.ok() || !(*version < kMinKernelForSockmap)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "the running kernel ", release, " is too old: the kernel path needs Linux ", kMinKernelForSockmap.ToString(),
      " or newer (its verdict program calls the kfuncs bpf_cast_to_kern_ctx and bpf_rdonly_cast)"));
}

std::string RunningKernelRelease() {
  if (const char* seam = std::getenv("SKPROXY_KERNEL_RELEASE"); seam != nullptr && *seam != '\0') return seam;
  utsname u{};
  if (uname(&u) != 0) return "";
  return u.release;
}

}  // namespace skproxy
