#!/usr/bin/env bash
# Runs the whole test suite: unit, property, tamper, spec-vector and
# end-to-end tests. This is the test command README.md names and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo test --workspace "$@"
