// The size of each worker's pool of provided buffers (proxy/ring.h): one mapping per worker of
// kBufferPoolCount buffers and their ring entries, touched only when used. A constant memory bound, not
// a cost per connection; the reliability soak reads it to tell the pools apart from the rest of the
// proxy's memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace skproxy {

inline constexpr unsigned kBufferPoolCount = 1024;
inline constexpr unsigned kBufferPoolBufferSize = 64 * 1024;
// What Ring::Create maps: the buffer ring's entries (struct io_uring_buf, 16 bytes each), then the buffers.
inline constexpr uint64_t kBufferPoolMappingBytes =
    uint64_t{kBufferPoolCount} * 16 + uint64_t{kBufferPoolCount} * kBufferPoolBufferSize;

}  // namespace skproxy
