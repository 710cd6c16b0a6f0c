#include "proxy/load_balancer.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <tuple>

namespace skproxy {
namespace {

constexpr uint32_t kMaglevTableSize = 65537;  // prime, as Maglev needs; Envoy's default too
constexpr uint32_t kRingMinSize = 4096;       // points on the ring, at least (Envoy: 1024; more points, closer shares)
constexpr uint32_t kRingMaxSize = 1 << 20;
constexpr int kRehashes = 8;  // consistent hash: other slots tried before a scan, when the chosen one is not eligible

uint64_t Mix(uint64_t h) {  // the MurmurHash3 finaliser
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

// The first eligible endpoint at or after `start`, in index order: the last resort of every policy.
std::optional<uint32_t> Scan(const LbRequest& request, uint32_t start, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) {
    const uint32_t index = (start + i) % count;
    if (request.eligible(index)) return index;
  }
  return std::nullopt;
}

// Weighted round robin over a fixed schedule in which endpoint i appears weight_i times, spread out
// (entry k of endpoint i sits at (k + 0.5) / weight_i of the cycle), so weights hold over any window and
// no endpoint gets a burst. One atomic increment per pick: workers share it without a lock.
class RoundRobin final : public LoadBalancer {
 public:
  explicit RoundRobin(const std::vector<uint32_t>& weights) {
    std::vector<std::tuple<double, uint32_t>> entries;
    for (uint32_t i = 0; i < weights.size(); ++i) {
      for (uint32_t k = 0; k < weights[i]; ++k) entries.emplace_back((k + 0.5) / weights[i], i);
    }
    std::sort(entries.begin(), entries.end());
    for (const auto& [position, index] : entries) schedule_.push_back(index);
    count_ = static_cast<uint32_t>(weights.size());
  }

  std::optional<uint32_t> Choose(const LbRequest& request) override {
    const uint64_t n = next_.fetch_add(1, std::memory_order_relaxed);
    // Look at most one cycle ahead; ineligible entries are skipped (their share goes to the others).
    for (size_t i = 0; i < schedule_.size(); ++i) {
      const uint32_t index = schedule_[(n + i) % schedule_.size()];
      if (request.eligible(index)) return index;
    }
    return std::nullopt;
  }

 private:
  std::vector<uint32_t> schedule_;
  uint32_t count_ = 0;
  std::atomic<uint64_t> next_{0};
};

// Fewest connections relative to weight (active / weight, compared without division); ties go round
// robin, so equal endpoints share a burst of new connections.
class LeastConnections final : public LoadBalancer {
 public:
  explicit LeastConnections(const std::vector<uint32_t>& weights) : weights_(weights) {}

  std::optional<uint32_t> Choose(const LbRequest& request) override {
    const uint32_t count = static_cast<uint32_t>(weights_.size());
    const uint32_t start = static_cast<uint32_t>(next_.fetch_add(1, std::memory_order_relaxed) % count);
    std::optional<uint32_t> best;
    int64_t best_active = 0;
    for (uint32_t i = 0; i < count; ++i) {
      const uint32_t index = (start + i) % count;
      if (!request.eligible(index)) continue;
      const int64_t active = request.active(index);
      // active/weight < best_active/best_weight
      if (!best || active * weights_[*best] < best_active * weights_[index]) {
        best = index;
        best_active = active;
      }
    }
    return best;
  }

 private:
  std::vector<uint32_t> weights_;
  std::atomic<uint64_t> next_{0};
};

class Maglev final : public LoadBalancer {
 public:
  Maglev(const std::vector<std::string>& keys, const std::vector<uint32_t>& weights)
      : keys_(keys), weights_(weights) {
    table_ = std::make_shared<const std::vector<uint32_t>>(
        BuildMaglevTable(keys_, weights_, std::vector<bool>(keys_.size(), true), kMaglevTableSize));
  }

  bool needs_client_hash() const override { return true; }

  std::optional<uint32_t> Choose(const LbRequest& request) override {
    std::shared_ptr<const std::vector<uint32_t>> table;
    {
      absl::ReaderMutexLock lock(&mu_);
      table = table_;
    }
    // The table leaves out endpoints that were unusable when it was built; one that became unusable since
    // (or that this connection already tried) sends the client to another slot of the table, chosen by
    // its hash too, so clients of healthy endpoints never move.
    uint64_t hash = request.hash;
    for (int attempt = 0; attempt <= kRehashes; ++attempt) {
      const uint32_t index = (*table)[hash % table->size()];
      if (index != kNone && request.eligible(index)) return index;
      hash = Mix(hash + attempt + 1);
    }
    return Scan(request, static_cast<uint32_t>(request.hash % keys_.size()), static_cast<uint32_t>(keys_.size()));
  }

  void OnUsableChanged(const std::vector<bool>& usable) override {
    auto table = std::make_shared<const std::vector<uint32_t>>(BuildMaglevTable(keys_, weights_, usable, kMaglevTableSize));
    absl::MutexLock lock(&mu_);
    table_ = std::move(table);
  }

  static constexpr uint32_t kNone = UINT32_MAX;

 private:
  std::vector<std::string> keys_;
  std::vector<uint32_t> weights_;
  absl::Mutex mu_;
  std::shared_ptr<const std::vector<uint32_t>> table_;
};

// Each endpoint owns points on a 64-bit ring in proportion to its weight; a client takes the first point
// at or after its hash, walking on past endpoints that are not eligible. Built once: an endpoint that
// leaves gives its clients to the next points, and nobody else moves.
class RingHash final : public LoadBalancer {
 public:
  RingHash(const std::vector<std::string>& keys, const std::vector<uint32_t>& weights) {
    const uint64_t total = std::accumulate(weights.begin(), weights.end(), uint64_t{0});
    const uint64_t size = std::min<uint64_t>(std::max<uint64_t>(kRingMinSize, total), kRingMaxSize);
    for (uint32_t i = 0; i < keys.size(); ++i) {
      const uint64_t points = std::max<uint64_t>(1, (size * weights[i] + total / 2) / total);
      for (uint64_t p = 0; p < points; ++p) {
        const std::string name = keys[i] + "_" + std::to_string(p);
        ring_.push_back({StableHash(name.data(), name.size()), i});
      }
    }
    std::sort(ring_.begin(), ring_.end(), [](const Point& a, const Point& b) { return a.hash < b.hash; });
    count_ = static_cast<uint32_t>(keys.size());
  }

  bool needs_client_hash() const override { return true; }

  std::optional<uint32_t> Choose(const LbRequest& request) override {
    auto it = std::lower_bound(ring_.begin(), ring_.end(), request.hash,
                               [](const Point& p, uint64_t h) { return p.hash < h; });
    size_t start = static_cast<size_t>(it - ring_.begin());
    for (size_t i = 0; i < ring_.size(); ++i) {
      const uint32_t index = ring_[(start + i) % ring_.size()].index;
      if (request.eligible(index)) return index;
    }
    return std::nullopt;
  }

 private:
  struct Point {
    uint64_t hash;
    uint32_t index;
  };
  std::vector<Point> ring_;
  uint32_t count_ = 0;
};

}  // namespace

uint64_t StableHash(const void* data, size_t length, uint64_t seed) {
  // FNV-1a over the bytes, then a finaliser so that nearby inputs (10.0.0.1, 10.0.0.2) land far apart.
  uint64_t h = 0xcbf29ce484222325ULL ^ Mix(seed);
  const auto* bytes = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < length; ++i) {
    h ^= bytes[i];
    h *= 0x100000001b3ULL;
  }
  return Mix(h);
}

uint64_t ClientAddressHash(const SocketAddress& client) {
  if (client.family() == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(client.storage);
    return StableHash(&v4.sin_addr, sizeof(v4.sin_addr));
  }
  if (client.family() == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(client.storage);
    // A v4-mapped client (dual-stack socket) hashes as its IPv4 address.
    if (IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr)) return StableHash(&v6.sin6_addr.s6_addr[12], 4);
    return StableHash(&v6.sin6_addr, sizeof(v6.sin6_addr));
  }
  return 0;
}

std::vector<uint32_t> BuildMaglevTable(const std::vector<std::string>& keys, const std::vector<uint32_t>& weights,
                                       const std::vector<bool>& usable, uint32_t table_size) {
  struct Candidate {
    uint32_t index;
    uint64_t offset, skip, next = 0;
    uint64_t weight, target = 0;
  };
  std::vector<Candidate> candidates;
  uint64_t max_weight = 0;
  for (uint32_t i = 0; i < keys.size(); ++i) {
    if (!usable[i]) continue;
    const uint64_t offset = StableHash(keys[i].data(), keys[i].size(), 1) % table_size;
    const uint64_t skip = StableHash(keys[i].data(), keys[i].size(), 2) % (table_size - 1) + 1;
    candidates.push_back({i, offset, skip, 0, weights[i], 0});
    max_weight = std::max<uint64_t>(max_weight, weights[i]);
  }
  std::vector<uint32_t> table(table_size, UINT32_MAX);
  if (candidates.empty()) return table;
  uint32_t filled = 0;
  for (uint64_t round = 1; filled < table_size; ++round) {
    for (Candidate& c : candidates) {
      if (filled == table_size) break;
      // An endpoint of the largest weight takes a slot every round, one of a third of it every third round.
      if (round * c.weight < c.target) continue;
      c.target += max_weight;
      uint64_t slot = (c.offset + c.skip * c.next) % table_size;
      while (table[slot] != UINT32_MAX) {
        ++c.next;
        slot = (c.offset + c.skip * c.next) % table_size;
      }
      table[slot] = c.index;
      ++c.next;
      ++filled;
    }
  }
  return table;
}

std::unique_ptr<LoadBalancer> LoadBalancer::Create(config::LbPolicy policy, const std::vector<std::string>& keys,
                                                   const std::vector<uint32_t>& weights) {
  switch (policy) {
    case config::LbPolicy::kRoundRobin:
      return std::make_unique<RoundRobin>(weights);
    case config::LbPolicy::kLeastConnections:
      return std::make_unique<LeastConnections>(weights);
    case config::LbPolicy::kMaglev:
      return std::make_unique<Maglev>(keys, weights);
    case config::LbPolicy::kRingHash:
      return std::make_unique<RingHash>(keys, weights);
  }
  return nullptr;
}

}  // namespace skproxy
