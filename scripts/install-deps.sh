#!/usr/bin/env bash
# Installs what toolgate needs to build and test on Debian 12, skipping
# packages that are already there. Safe to run again.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev
  libabsl-dev libre2-dev libyaml-cpp-dev libssl-dev libhiredis-dev
  prometheus-cpp-dev
  redis-server
  openssl  # the openssl command: tests make certificates
  googletest libgtest-dev libgmock-dev
  python3 python3-grpcio python3-protobuf  # the Python client example and its test
  clang libfuzzer-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: missing packages (${missing[*]}) and not root; install them and retry" >&2
    exit 1
  fi
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
