#include "server/redis/backoff.h"

#include <algorithm>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace toolgate {
namespace {

std::vector<int64_t> Delays(Backoff& backoff, std::mt19937_64& gen, int n) {
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) out.push_back(backoff.NextDelayMs(gen));
  return out;
}

TEST(BackoffTest, WithoutJitterDoublesUpToTheMax) {
  Backoff backoff({/*initial_ms=*/10, /*max_ms=*/400, /*jitter=*/0});
  std::mt19937_64 gen(1);
  EXPECT_EQ(Delays(backoff, gen, 9), (std::vector<int64_t>{10, 20, 40, 80, 160, 320, 400, 400, 400}));
}

TEST(BackoffTest, EachDelayIsJitteredAroundItsBase) {
  Backoff backoff;  // 10ms doubling to 400ms, x[0.5, 1.5).
  std::mt19937_64 gen(42);
  const int64_t bases[] = {10, 20, 40, 80, 160, 320, 400, 400, 400, 400};
  for (int64_t base : bases) {
    const int64_t d = backoff.NextDelayMs(gen);
    EXPECT_GE(d, base / 2) << "base " << base;
    EXPECT_LT(d, base * 3 / 2) << "base " << base;
  }
}

TEST(BackoffTest, JitterSpreadsClientsApart) {
  // Many clients that fail together: their delays are not all the same.
  std::mt19937_64 gen(7);
  std::vector<int64_t> firsts;
  for (int client = 0; client < 20; ++client) {
    Backoff backoff;
    for (int i = 0; i < 6; ++i) backoff.NextDelayMs(gen);
    firsts.push_back(backoff.NextDelayMs(gen));  // Base 400ms.
  }
  std::sort(firsts.begin(), firsts.end());
  EXPECT_LT(firsts.front(), firsts.back());
}

TEST(BackoffTest, SameSeedSameDelays) {
  Backoff a, b;
  std::mt19937_64 gen_a(123), gen_b(123);
  EXPECT_EQ(Delays(a, gen_a, 12), Delays(b, gen_b, 12));
}

TEST(BackoffTest, ResetStartsOver) {
  Backoff backoff({10, 400, 0});
  std::mt19937_64 gen(1);
  Delays(backoff, gen, 5);
  backoff.Reset();
  EXPECT_EQ(Delays(backoff, gen, 3), (std::vector<int64_t>{10, 20, 40}));
}

}  // namespace
}  // namespace toolgate
