// Decision ids: unique per decision across the fleet and over restarts, and
// cheap (no lock, no system call per id). One generator per server, shared
// by every service that decides (DecisionService.Check and Envoy's
// ext_authz Check), so that ids never repeat between them.
#ifndef TOOLGATE_SERVER_SERVICE_DECISION_IDS_H_
#define TOOLGATE_SERVER_SERVICE_DECISION_IDS_H_

#include <atomic>
#include <cstdint>
#include <string>

namespace toolgate {

class DecisionIds {
 public:
  DecisionIds();

  // 32 lowercase hex digits: a random prefix drawn once per generator, then
  // a counter. Thread-safe.
  std::string Next();

 private:
  const uint64_t prefix_;
  std::atomic<uint64_t> counter_{0};
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_DECISION_IDS_H_
