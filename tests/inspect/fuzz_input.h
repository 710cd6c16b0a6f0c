// Feeding the fuzz entry point linked into a corpus test (inspect_fuzz.cc or http_response_fuzz.cc) the way
// the fuzzer does: the first byte chooses how the target splits the rest into reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace skproxy {

inline void RunFuzzInput(uint8_t split, const std::string& input) {
  std::string bytes(1, static_cast<char>(split));
  bytes += input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace skproxy
