#include "server/base/runtime.h"

#include <signal.h>

#include "absl/synchronization/mutex.h"

namespace toolgate {

void ConfigureServingRuntime() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  signal(SIGPIPE, SIG_IGN);
}

}  // namespace toolgate
