#!/usr/bin/env bash
# Installs the system packages the build, the tests and the demo need, on
# Debian 12 with the Rust toolchain: nothing else is assumed. Called by
# scripts/test.sh, scripts/demo.sh and .ci/run; does nothing when all are there.
#   cmake: Pingora's zlib-ng (libz-ng-sys) is built with it.
#   curl:  the demo talks to the proxy with it.
#   etcd-server: the discovery tests run a real etcd (3.4, its JSON gateway).
#   python3-grpcio: the gRPC tests run a real gRPC server and client (grpcio
#                   1.51, generic handlers over raw bytes: no protoc, no codegen).
#   iproute2: the e2e harness asks `ss` which process listens on a port.
#   rustfmt, clippy: the lint steps of .ci/run (with --lint).
#   wrk, nginx: the load and the origin of the benchmarks (with --bench);
#   python3: the hostile clients of scripts/faults.sh (scripts/attack.py).
set -euo pipefail

packages=(cmake curl etcd-server python3-grpcio iproute2)
# --bench: the load tools of scripts/bench.sh and scripts/faults.sh too.
for arg in "$@"; do
    [ "$arg" = "--bench" ] && packages+=(wrk nginx python3)
done
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing: ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
if [[ " $* " == *" --lint "* ]]; then
    cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
    cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
fi
