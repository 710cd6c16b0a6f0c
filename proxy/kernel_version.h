// The oldest kernel the kernel data path can run on, and the check against the running one.
//
// Why a version check at all: on an older kernel the verifier rejects the verdict program with a message
// about an unknown kfunc, which says nothing to an operator. Checking the release first lets
// `--datapath sockmap` refuse with the running and the minimum version, and `auto` fall back with a reason
// of its own (kernel_too_old). docs/kernel-datapath.md gives the evidence for the minimum.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace skproxy {

struct KernelVersion {
  int major = 0;
  int minor = 0;
  int patch = 0;

  friend bool operator<(const KernelVersion& a, const KernelVersion& b) {
    if (a.major != b.major) return a.major < b.major;
    if (a.minor != b.minor) return a.minor < b.minor;
    return a.patch < b.patch;
  }
  friend bool operator==(const KernelVersion& a, const KernelVersion& b) {
    return a.major == b.major && a.minor == b.minor && a.patch == b.patch;
  }
  std::string ToString() const;  // "6.2" when patch is 0, else "6.1.55"
};

// 6.2: the first release where bpf_cast_to_kern_ctx and bpf_rdonly_cast exist, and they are in the kfunc
// set every program type (sk_skb included) may call. Everything else the verdict uses is older.
inline constexpr KernelVersion kMinKernelForSockmap{6, 2, 0};

// "6.1.0-18-amd64" -> 6.1.0, "6.18.44-fc-v1045" -> 6.18.44, "5.15" -> 5.15.0. The numbers before the first
// character that is neither a digit nor a dot; at least MAJOR.MINOR.
absl::StatusOr<KernelVersion> ParseKernelRelease(std::string_view release);

// FailedPrecondition naming `release` and the minimum when it is older than kMinKernelForSockmap. A
// release that does not parse passes: the BPF load then decides, and says why if it fails.
absl::Status CheckKernelForSockmap(std::string_view release);

// uname(2)'s release, or $SKPROXY_KERNEL_RELEASE when set and non-empty. The variable is a test seam only:
// it lets a test run the real binary as if on an older kernel, to prove the refusal and the fallback.
std::string RunningKernelRelease();

}  // namespace skproxy
