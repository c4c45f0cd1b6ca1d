#!/usr/bin/env bash
# Checks that every #include between toolgate's own folders points down the
# layers (docs/architecture.md): a folder may include its own files and those
# of folders on a lower layer, never a folder on its own layer or above.
# Besides: only tests include tests/support, and the client library
# (client/client.cc, client/include) includes nothing of the server.
#
#   scripts/check-layers.sh [SOURCE_ROOT]
#     Prints each offending include as FILE:LINE and exits 1 if there is one.
#   scripts/check-layers.sh --self-test [SOURCE_ROOT]
#     Checks the check: copies the tree, adds an include that points up, and
#     fails unless the check then fails and names it.
set -euo pipefail

if [ "${1:-}" = "--self-test" ]; then
  src="$(cd "${2:-$(dirname "$0")/..}" && pwd)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$src" && tar cf - scripts server client tests bench fuzz) | (cd "$tmp" && tar xf -)
  bash "$tmp/scripts/check-layers.sh" "$tmp" >/dev/null 2>&1 ||
    { echo "self-test: the unmodified tree already fails the check" >&2; exit 1; }
  # The engine (layer 5) reaching up into the gRPC service (layer 8).
  sed -i '0,/^#include "server\/engine\/engine.h"/s//&\n#include "server\/service\/decision_service.h"/' \
    "$tmp/server/engine/engine.cc"
  if out=$(bash "$tmp/scripts/check-layers.sh" "$tmp" 2>&1); then
    echo "self-test: an upward include (engine -> service) was not reported" >&2
    exit 1
  fi
  grep -q "server/engine/engine.cc:[0-9]*: includes server/service/decision_service.h" <<<"$out" ||
    { echo "self-test: the report does not name the upward include:" >&2; echo "$out" >&2; exit 1; }
  echo "self-test: an upward include is reported: $out"
  exit 0
fi

cd "${1:-$(dirname "$0")/..}"

# Layer of each folder, bottom (0) up. A source folder missing here is an
# error, so that a new folder is placed before it is used.
declare -A LAYER=(
  [server/base]=0
  [server/redis]=1
  [server/schema]=1
  [tests/support]=2
  [server/counters]=3
  [server/approvals]=3
  [server/policy]=4
  [server/reservations]=4
  [server/engine]=5
  [server/decider]=6
  [server/provider]=6
  [server/policytest]=7
  [server/telemetry]=7
  [server/service]=8
  [server/app]=9
  [client]=10
  [client/cli]=11
  [tests/integration]=12
  [bench]=12
  [fuzz]=12
)

# The folder a path belongs to: the longest key of LAYER that is a prefix.
folder_of() {
  local path="$1" best="" key
  for key in "${!LAYER[@]}"; do
    if [[ "$path" == "$key/"* && ${#key} -gt ${#best} ]]; then best="$key"; fi
  done
  printf '%s' "$best"
}

status=0
complain() {
  echo "$1" >&2
  status=1
}
while IFS= read -r file; do
  from=$(folder_of "$file")
  if [ -z "$from" ]; then
    complain "$file: its folder has no layer in scripts/check-layers.sh"
    continue
  fi
  while IFS=: read -r line target; do
    if [ "$from" = client ] && [[ "$target" == server/* ]]; then
      complain "$file:$line: includes $target: the client library depends on the API only"
      continue
    fi
    to=$(folder_of "$target")
    [ -n "$to" ] || continue  # Not one of ours (absl/..., toolgate/v1/..., gtest/...).
    [ "$to" = "$from" ] && continue
    if [ "$to" = tests/support ] && [[ "$file" != *_test.cc && "$file" != tests/* ]]; then
      complain "$file:$line: includes $target: only tests may use tests/support"
      continue
    fi
    if [ "${LAYER[$to]}" -ge "${LAYER[$from]}" ]; then
      complain "$file:$line: includes $target: $from (layer ${LAYER[$from]}) may only include folders below it, and $to is layer ${LAYER[$to]}"
    fi
  done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" |
           sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1:\2/')
done < <(find server client tests bench fuzz -type f \( -name '*.h' -o -name '*.cc' -o -name '*.in' \) | sort)
if [ "$status" -eq 0 ]; then echo "check-layers: every include points down the layers"; fi
exit "$status"
