#ifndef TOOLGATE_SERVER_BASE_RUNTIME_H_
#define TOOLGATE_SERVER_BASE_RUNTIME_H_

namespace toolgate {

// Process-wide runtime settings for a serving process (toolgated, and the
// benchmark's no-op server and load generator, so that they run alike).
//
// Abseil's mutexes check every lock for lock-order cycles unless the
// library was built with NDEBUG, and Debian's build is not: that costs a
// global graph update on each lock, in gRPC's locks as much as in ours.
// Serving processes turn the check off.
//
// SIGPIPE is ignored: hiredis writes to its sockets with write(), and a write
// to a connection Redis has reset would otherwise kill the process instead
// of failing the write (EPIPE), which the Redis code handles as a lost
// connection.
void ConfigureServingRuntime();

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_RUNTIME_H_
