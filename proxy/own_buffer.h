// A direction's own copy buffer for when the worker's shared pool of provided buffers is dry.
//
// Many connections together can hold the whole pool in sends towards peers that stopped reading until
// their own writes towards the proxy go through: an echoing server, or any server that answers while it
// reads, blocks on its write back and reads no more. Those writes need the other direction to read, and a
// direction that waited for a buffer of the pool would wait for ever, with every connection of the worker
// (docs/userspace-datapath.md, "The shared pool"). So a direction whose recv found the pool empty
// (-ENOBUFS) and that has nothing of its own in flight reads, once its source is readable, into a small
// buffer of its own instead, and frees it once its bytes are written. Used by both copies through the
// ring: the user-space path (userspace_pipe.h) and the kernel path's held directions (sockmap_pipe.h).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>

namespace skproxy {

class OwnBuffer {
 public:
  // Small next to a pool buffer (64 KiB): it only has to keep the direction moving until the pool returns.
  static constexpr uint32_t kSize = 16 * 1024;

  // Reads what `fd` has now (MSG_DONTWAIT) into a freshly allocated buffer. > 0: the bytes read, kept until
  // Release; 0: EOF; < 0: errno says why (EAGAIN: nothing to read after all). Frees the buffer unless it
  // returns bytes.
  ssize_t Read(int fd);
  uint8_t* data() const { return bytes_.get(); }
  // Once every byte read into it is written: an idle direction holds nothing.
  void Release() { bytes_.reset(); }

 private:
  std::unique_ptr<uint8_t[]> bytes_;
};

}  // namespace skproxy
