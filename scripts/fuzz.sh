#!/usr/bin/env bash
# Coverage-guided fuzzing of the codec's decoders with cargo-fuzz (libFuzzer,
# AddressSanitizer). Targets (fuzz/fuzz_targets/):
#   envelope    the x-fp header parser (requests and responses; what it
#               accepts must encode back to a value it accepts)
#   opener      the record opener fed arbitrary chunk boundaries: sealed
#               bodies open whole, a changed byte never opens, raw input
#               never panics
#   decompress  each decompressor (snappy, gzip, brotli, zstd) under its
#               limits: never more than the limit, output untouched on error
#   config      the config loader on any text: never a panic or a hang
# Each run starts from the checked-in seeds (fuzz/corpus/<target>) and works
# in a temporary directory, so the repository does not change.
#
# Usage: scripts/fuzz.sh [-t SECONDS_PER_TARGET] [TARGET...]
#   CI runs `scripts/fuzz.sh -t 5` as a smoke test; a campaign is e.g.
#   `scripts/fuzz.sh -t 3600 decompress`. A crash stops the run and leaves
#   its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=5
while getopts "t:" opt; do
    case $opt in
        t) secs=$OPTARG ;;
        *) echo "usage: $0 [-t SECONDS] [TARGET...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(envelope opener decompress config)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz passes nightly flags (-Zsanitizer=address); the stable toolchain
# accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
cd fuzz
for t in "${targets[@]}"; do cargo fuzz build -O "$t" 2>&1 | tail -1; done
printf '%-12s %12s %10s %8s\n' target executions coverage seconds
for t in "${targets[@]}"; do
    work=$(mktemp -d)
    log=$(mktemp)
    if ! cargo fuzz run -O "$t" "$work" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 </dev/null; then
        tail -40 "$log"
        echo "fuzz target $t failed" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo '?')
    printf '%-12s %12s %10s %8s\n' "$t" "$runs" "$cov" "$secs"
    rm -rf "$work" "$log"
done
