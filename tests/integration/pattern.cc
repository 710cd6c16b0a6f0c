#include "tests/integration/pattern.h"

#include <endian.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "absl/strings/str_cat.h"

namespace skproxy::itest {

namespace {

uint64_t LoadLe64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return le64toh(v);
}
void StoreLe64(uint8_t* p, uint64_t v) {
  v = htole64(v);
  memcpy(p, &v, 8);
}

uint32_t Mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x | 0x01000000U;  // never zero, so a zeroed head never looks valid
}

}  // namespace

uint64_t PatternSeed(uint32_t id) { return (static_cast<uint64_t>(Mix32(id)) << 32) | id; }

void FillPattern(uint32_t id, uint64_t offset, uint8_t* buf, size_t n) {
  const uint64_t seed = PatternSeed(id);
  size_t i = 0;
  for (; i < n && ((offset + i) & 7); i++) buf[i] = PatternByte(id, offset + i);
  for (; i + 8 <= n; i += 8) StoreLe64(buf + i, (offset + i) ^ seed);
  for (; i < n; i++) buf[i] = PatternByte(id, offset + i);
}

uint32_t NextStreamId() {
  static std::atomic<uint32_t> next{static_cast<uint32_t>(getpid()) << 12};
  uint32_t id;
  do id = next.fetch_add(1); while (id == 0);
  return id;
}

void PatternChecker::FeedSlow(const uint8_t* data, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint8_t want = PatternByte(*id_, bytes_ + i);
    if (data[i] != want) {
      if (first_bad_ < 0) {
        first_bad_ = static_cast<int64_t>(bytes_ + i);
        first_bad_got_ = data[i];
        first_bad_want_ = want;
      }
      bad_bytes_++;
    }
  }
  bytes_ += n;
}

void PatternChecker::Feed(const uint8_t* data, size_t n) {
  if (!id_) {
    // Learn the stream id from the first word; its upper half must be Mix32 of its lower half.
    size_t take = std::min<size_t>(n, 8 - bytes_);
    memcpy(head_ + bytes_, data, take);
    bytes_ += take;
    data += take;
    n -= take;
    if (bytes_ < 8) return;
    uint64_t w = LoadLe64(head_);
    uint32_t lo = static_cast<uint32_t>(w);
    if (lo == 0 || (w >> 32) != Mix32(lo)) {
      first_bad_ = 0;
      first_bad_got_ = head_[0];
      bad_bytes_ = 8;
      id_ = 0;  // unusable: everything after is counted as unchecked-bad below
    } else {
      id_ = lo;
    }
  }
  if (*id_ == 0) {  // the head was corrupt: the rest cannot be checked
    bytes_ += n;
    bad_bytes_ += n;
    return;
  }
  const uint64_t seed = PatternSeed(*id_);
  size_t i = 0;
  size_t head = std::min<size_t>(n, (8 - (bytes_ & 7)) & 7);
  FeedSlow(data, head);
  i = head;
  for (; i + 8 <= n; i += 8) {
    uint64_t word = LoadLe64(data + i);
    if (word != (bytes_ ^ seed)) {
      if (!have_decoded_ && i + 24 <= n) {
        // Find where these bytes came from: at some k in 0..7 two consecutive aligned words of the pattern
        // start (a shifted copy of the stream has them at a non-aligned position).
        for (size_t k = 0; k < 8; k++) {
          uint64_t from = LoadLe64(data + i + k) ^ seed;
          if ((from & 7) == 0 && from < (1ull << 48) && (LoadLe64(data + i + k + 8) ^ seed) == from + 8) {
            have_decoded_ = true;
            decoded_at_ = bytes_ + k;
            decoded_from_ = from;
            break;
          }
        }
      }
      FeedSlow(data + i, 8);
    } else {
      bytes_ += 8;
    }
  }
  FeedSlow(data + i, n - i);
}

std::string PatternChecker::Describe() const {
  if (first_bad_ < 0) return absl::StrCat("ok (", bytes_, " bytes)");
  if (id_ && *id_ == 0) return absl::StrCat("stream head is not a valid pattern seed (", bytes_, " bytes read)");
  char buf[320];
  int n = snprintf(buf, sizeof buf, "first bad byte at offset %lld: got 0x%02x want 0x%02x; %llu bad bytes in %llu",
                   static_cast<long long>(first_bad_), first_bad_got_, first_bad_want_,
                   static_cast<unsigned long long>(bad_bytes_), static_cast<unsigned long long>(bytes_));
  if (have_decoded_ && n > 0 && static_cast<size_t>(n) < sizeof buf) {
    int64_t delta = static_cast<int64_t>(decoded_from_ - decoded_at_);
    snprintf(buf + n, sizeof buf - n, "; offset %llu holds the bytes of offset %llu (%+lld)",
             static_cast<unsigned long long>(decoded_at_), static_cast<unsigned long long>(decoded_from_),
             static_cast<long long>(delta));
  }
  return buf;
}

}  // namespace skproxy::itest
