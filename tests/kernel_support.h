// The one place tests ask whether this kernel can run the kernel data path at all. On an older kernel the
// BPF and kernel-path tests skip with the reason instead of failing: there is nothing to test there, and a
// root shell would otherwise turn every verifier rejection into a failure. Link skproxy_kernel_version.
#pragma once

#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "proxy/kernel_version.h"

namespace skproxy::testing_support {

// Why the kernel path cannot run here ("kernel too old ..."), or nullopt. Uses the same release as the
// proxy, so SKPROXY_KERNEL_RELEASE=6.1.0 in the test's environment shows what an old kernel would skip.
inline std::optional<std::string> KernelTooOldForSockmap() {
  absl::Status check = CheckKernelForSockmap(RunningKernelRelease());
  if (check.ok()) return std::nullopt;
  return "the kernel path cannot run here: " + std::string(check.message());
}

}  // namespace skproxy::testing_support

// GTEST_SKIP, with the reason, when the kernel is too old for the kernel path. Returns from the caller.
#define SKPROXY_SKIP_IF_KERNEL_TOO_OLD()                                                              \
  if (std::optional<std::string> too_old_ = ::skproxy::testing_support::KernelTooOldForSockmap()) \
  GTEST_SKIP() << *too_old_
