#include "server/counters/counter_store.h"

#include "absl/strings/str_cat.h"

namespace toolgate {

std::string CounterStoreStatus::Summary() const {
  if (kind != "redis") return absl::StrCat("in process: ", keys, " keys");
  return absl::StrCat("redis: checks=", checks, " commands=", commands,
                      " round_trips=", round_trips, " cache_hits=", cache_hits,
                      " timeouts=", timeouts, " failures=", failures, " connects=", connects,
                      " script_reloads=", script_reloads,
                      redirects + refunds + refund_failures + topology_changes == 0
                          ? std::string()
                          : absl::StrCat(" redirects=", redirects, " refunds=", refunds,
                                         " refund_failures=", refund_failures,
                                         " topology_changes=", topology_changes),
                      " connected=", connected ? "true" : "false");
}

}  // namespace toolgate
