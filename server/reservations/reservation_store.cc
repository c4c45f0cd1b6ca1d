#include "server/reservations/reservation_store.h"

#include "server/base/random_id.h"

namespace toolgate {

absl::string_view SettleOutcomeName(SettleOutcome outcome) {
  return outcome == SettleOutcome::kFailed ? "failed" : "succeeded";
}

std::string NewReservationId() { return NewRandomId("rsv_"); }

bool IsReservationId(absl::string_view id) { return IsRandomId("rsv_", id); }

}  // namespace toolgate
