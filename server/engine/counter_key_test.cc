#include "server/engine/counter_key.h"

#include "gtest/gtest.h"

namespace toolgate {
namespace {

TEST(CounterKey, DistinctInputsGiveDistinctKeys) {
  LimitSpec grant;
  grant.counter = "c";
  grant.scope = Scope::kGrant;
  LimitSpec session = grant;
  session.scope = Scope::kSession;
  LimitSpec global = grant;
  global.scope = Scope::kGlobal;
  LimitSpec other = grant;
  other.counter = "d";

  EXPECT_EQ(CounterKey(grant, "a", "x"), CounterKey(grant, "a", "y"));
  EXPECT_NE(CounterKey(grant, "a", "x"), CounterKey(grant, "b", "x"));
  EXPECT_NE(CounterKey(grant, "a", ""), CounterKey(other, "a", ""));
  EXPECT_NE(CounterKey(session, "a", "x"), CounterKey(session, "a", "y"));
  EXPECT_NE(CounterKey(session, "a", "x"), CounterKey(session, "b", "x"));
  // No ambiguity where grant and session meet.
  EXPECT_NE(CounterKey(session, "ab", "c"), CounterKey(session, "a", "bc"));
  EXPECT_EQ(CounterKey(global, "a", "x"), CounterKey(global, "b", "y"));
  // Scopes never collide with each other.
  EXPECT_NE(CounterKey(grant, "", ""), CounterKey(global, "", ""));
  EXPECT_NE(CounterKey(grant, "", ""), CounterKey(session, "", ""));
  EXPECT_NE(CounterKey(session, "", ""), CounterKey(global, "", ""));
}

}  // namespace
}  // namespace toolgate
