#include "server/counters/counter_store.h"

#include "absl/strings/str_cat.h"

namespace toolgate {

std::string CounterStoreStatus::Summary() const {
  if (kind != "redis") return absl::StrCat("in process: ", keys, " keys");
  return absl::StrCat("redis: checks=", checks, " commands=", commands,
                      " round_trips=", round_trips, " cache_hits=", cache_hits,
                      " timeouts=", timeouts, " failures=", failures, " connects=", connects,
                      " script_reloads=", script_reloads,
                      " connected=", connected ? "true" : "false");
}

}  // namespace toolgate
