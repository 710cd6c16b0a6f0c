// Counter pattern. Byte i of stream `id` is byte (i & 7) of the little-endian 64-bit word (i & ~7) ^ Seed(id),
// so a corrupt, missing or duplicated byte is reported at its exact offset, and the first word (the seed)
// is non-zero and differs per stream: bytes swapped between connections, or a zeroed head, are caught too.
// A reader that does not know the id learns it from the first word, whose upper half checks the lower half.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace skproxy::itest {

uint64_t PatternSeed(uint32_t id);
inline uint8_t PatternByte(uint32_t id, uint64_t i) {
  return static_cast<uint8_t>(((i & ~7ull) ^ PatternSeed(id)) >> (8 * (i & 7)));
}
void FillPattern(uint32_t id, uint64_t offset, uint8_t* buf, size_t n);

class PatternChecker {
 public:
  explicit PatternChecker(std::optional<uint32_t> id = std::nullopt) : id_(id) {}
  void Feed(const uint8_t* data, size_t n);
  uint64_t bytes() const { return bytes_; }
  // Offset of the first byte that differs from the pattern, -1 if none.
  int64_t first_bad() const { return first_bad_; }
  uint64_t bad_bytes() const { return bad_bytes_; }
  bool ok() const { return first_bad_ < 0; }
  std::optional<uint32_t> id() const { return id_; }
  // "offset 1234: got 0x.. want 0x.." for the first bad byte, or "ok".
  std::string Describe() const;

 private:
  void FeedSlow(const uint8_t* data, size_t n);
  std::optional<uint32_t> id_;
  uint8_t head_[8] = {};  // first bytes, kept until the id can be learnt
  uint64_t bytes_ = 0;
  int64_t first_bad_ = -1;
  uint8_t first_bad_got_ = 0, first_bad_want_ = 0;
  uint64_t bad_bytes_ = 0;
  // Where the first wrong bytes came from: offset decoded_at_ of the stream holds the bytes of offset
  // decoded_from_ (a duplicate shows as a smaller offset, a gap as a larger one).
  bool have_decoded_ = false;
  uint64_t decoded_at_ = 0, decoded_from_ = 0;
};

// A unique stream id for this process (never 0).
uint32_t NextStreamId();

}  // namespace skproxy::itest
