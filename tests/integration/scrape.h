// Reading a real toolgated's metrics endpoint in tests.
#ifndef TOOLGATE_TESTS_INTEGRATION_SCRAPE_H_
#define TOOLGATE_TESTS_INTEGRATION_SCRAPE_H_

#include <string>

#include "tests/integration/process.h"

namespace toolgate_test {

// GET http://address/path over a plain socket; the body, or "" on failure.
std::string HttpGet(const std::string& address, const std::string& path);

// The value of the sample line that starts with `series` (e.g.
// `toolgate_checks_total{decision="allow",rule="tools.x"}`); -1 when absent.
double Sample(const std::string& text, const std::string& series);

// The metrics endpoint's "HOST:PORT", from the server's log ("" before it listens).
std::string MetricsAddress(ServerProcess& server);

}  // namespace toolgate_test

#endif  // TOOLGATE_TESTS_INTEGRATION_SCRAPE_H_
