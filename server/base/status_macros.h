// Small helpers for absl::Status propagation (Abseil 20220623 has no public
// RETURN_IF_ERROR).
#ifndef TOOLGATE_SERVER_BASE_STATUS_MACROS_H_
#define TOOLGATE_SERVER_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TOOLGATE_CONCAT_INNER_(a, b) a##b
#define TOOLGATE_CONCAT_(a, b) TOOLGATE_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` yields a non-OK status.
#define TOOLGATE_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    ::absl::Status toolgate_status_ = (expr);            \
    if (!toolgate_status_.ok()) return toolgate_status_; \
  } while (0)

// `TOOLGATE_ASSIGN_OR_RETURN(auto x, StatusOrExpr());`
#define TOOLGATE_ASSIGN_OR_RETURN(lhs, expr) \
  TOOLGATE_ASSIGN_OR_RETURN_IMPL_(TOOLGATE_CONCAT_(toolgate_statusor_, __LINE__), lhs, expr)
#define TOOLGATE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  if (!tmp.ok()) return tmp.status();                   \
  lhs = std::move(tmp).value()

#endif  // TOOLGATE_SERVER_BASE_STATUS_MACROS_H_
