// The balancing policies on their own, over many picks: what the integration tests check through the
// binary on 1,000 connections, here over enough picks and clients to pin down the shares and the movement.
#include "proxy/load_balancer.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace skproxy {
namespace {

std::vector<std::string> Keys(size_t n) {
  std::vector<std::string> keys;
  for (size_t i = 0; i < n; ++i) keys.push_back(absl::StrCat("10.0.0.", i + 1, ":80"));
  return keys;
}

SocketAddress Client(int i) {
  return *ParseSocketAddress(absl::StrCat("192.168.", i / 250, ".", 1 + i % 250, ":1000"));
}

TEST(RoundRobin, WeightsHoldOverEveryCycleAndSkipTheIneligible) {
  auto lb = LoadBalancer::Create(config::LbPolicy::kRoundRobin, Keys(3), {1, 2, 3});
  std::map<uint32_t, int> count;
  std::vector<bool> eligible = {true, true, true};
  for (int i = 0; i < 600; ++i)
    ++count[*lb->Choose({0, [&](uint32_t e) { return bool(eligible[e]); }, [](uint32_t) { return int64_t{0}; }})];
  EXPECT_EQ(count[0], 100);
  EXPECT_EQ(count[1], 200);
  EXPECT_EQ(count[2], 300);
  eligible = {false, false, false};
  EXPECT_FALSE(lb->Choose({0, [&](uint32_t e) { return bool(eligible[e]); }, [](uint32_t) { return int64_t{0}; }}));
  eligible = {false, true, false};
  EXPECT_EQ(lb->Choose({0, [&](uint32_t e) { return bool(eligible[e]); }, [](uint32_t) { return int64_t{0}; }}), 1u);
}

TEST(LeastConnections, ActivePerWeight) {
  auto lb = LoadBalancer::Create(config::LbPolicy::kLeastConnections, Keys(3), {1, 1, 2});
  std::vector<int64_t> active = {0, 0, 0};
  for (int i = 0; i < 400; ++i) {
    const uint32_t e =
        *lb->Choose({0, [](uint32_t) { return true; }, [&](uint32_t e) { return active[e]; }});
    ++active[e];
  }
  EXPECT_EQ(active[0], 100);
  EXPECT_EQ(active[1], 100);
  EXPECT_EQ(active[2], 200);
}

TEST(ClientAddressHash, IpOnlyAndStable) {
  EXPECT_EQ(ClientAddressHash(*ParseSocketAddress("10.1.2.3:1")), ClientAddressHash(*ParseSocketAddress("10.1.2.3:2")));
  EXPECT_NE(ClientAddressHash(*ParseSocketAddress("10.1.2.3:1")), ClientAddressHash(*ParseSocketAddress("10.1.2.4:1")));
  EXPECT_EQ(ClientAddressHash(*ParseSocketAddress("[::ffff:10.1.2.3]:1")),
            ClientAddressHash(*ParseSocketAddress("10.1.2.3:1")));
  // Fixed across processes and builds: a restart must not remap clients.
  EXPECT_EQ(StableHash("abc", 3), StableHash("abc", 3));
  EXPECT_NE(StableHash("abc", 3, 1), StableHash("abc", 3, 2));
}

class ConsistentHash : public ::testing::TestWithParam<config::LbPolicy> {};

TEST_P(ConsistentHash, SpreadByWeightAndMinimalMovement) {
  constexpr int kClients = 20000;
  const std::vector<uint32_t> weights = {1, 1, 2, 4};
  auto lb = LoadBalancer::Create(GetParam(), Keys(4), weights);
  std::vector<bool> usable(4, true);
  auto pick = [&](int client) {
    return *lb->Choose({ClientAddressHash(Client(client)), [&](uint32_t e) { return bool(usable[e]); },
                        [](uint32_t) { return int64_t{0}; }});
  };
  std::vector<uint32_t> before(kClients);
  std::map<uint32_t, int> count;
  for (int i = 0; i < kClients; ++i) ++count[before[i] = pick(i)];
  for (uint32_t e = 0; e < 4; ++e) EXPECT_NEAR(count[e], kClients * weights[e] / 8.0, kClients * 0.03) << e;

  // Endpoint 3 leaves: its clients spread over the others, which keep theirs.
  usable[3] = false;
  lb->OnUsableChanged(usable);
  int stayed = 0, others = 0;
  for (int i = 0; i < kClients; ++i) {
    const uint32_t now = pick(i);
    EXPECT_NE(now, 3u);
    if (before[i] != 3) {
      ++others;
      stayed += now == before[i];
    }
  }
  const double kept = static_cast<double>(stayed) / others;
  if (GetParam() == config::LbPolicy::kRingHash) {
    EXPECT_EQ(stayed, others);
  } else {
    EXPECT_GE(kept, 0.97) << stayed << " of " << others;  // Maglev: a few per cent move
  }
  // And back: every client returns to where it was.
  usable[3] = true;
  lb->OnUsableChanged(usable);
  for (int i = 0; i < kClients; ++i) ASSERT_EQ(pick(i), before[i]) << i;
}

INSTANTIATE_TEST_SUITE_P(Policies, ConsistentHash,
                         ::testing::Values(config::LbPolicy::kMaglev, config::LbPolicy::kRingHash),
                         [](const auto& info) { return std::string(config::LbPolicyName(info.param)); });

}  // namespace
}  // namespace skproxy
