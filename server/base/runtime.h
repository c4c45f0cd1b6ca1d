#pragma once

namespace toolgate {

// Process-wide runtime settings for a serving process (toolgated, and the
// benchmark's no-op server and load generator, so that they run alike).
//
// Abseil's mutexes check every lock for lock-order cycles unless the
// library was built with NDEBUG, and Debian's build is not: that costs a
// global graph update on each lock, in gRPC's locks as much as in ours.
// Serving processes turn the check off.
void ConfigureServingRuntime();

}  // namespace toolgate
