#!/usr/bin/env bash
# Zero-downtime upgrade (or config change) of a running, daemonized fastproxy,
# following Pingora's procedure:
#   1. check that the new binary loads the config (`check`, then Pingora's -t);
#   2. start the new binary with -u -d: it waits on `upgrade_sock` for the
#      listening sockets;
#   3. SIGQUIT the old process: it sends its sockets over, keeps serving for
#      5 s, then drains for `grace_period_seconds` and exits.
# No connection is refused at any point: both processes accept during the
# hand-over, and the old one finishes what it started.
#
# Usage: scripts/upgrade.sh [-b BINARY] [-c PINGORA_CONF] [-f FASTPROXY_CONFIG]
set -euo pipefail
cd "$(dirname "$0")/.."
rel="${CARGO_TARGET_DIR:-target}/release"

bin="$rel"/fastproxy
conf=conf/pingora.yaml
config=conf/fastproxy.yaml
while getopts "b:c:f:" opt; do
    case $opt in
        b) bin=$OPTARG ;;
        c) conf=$OPTARG ;;
        f) config=$OPTARG ;;
        *) echo "usage: $0 [-b BINARY] [-c PINGORA_CONF] [-f FASTPROXY_CONFIG]" >&2; exit 2 ;;
    esac
done

setting() { sed -n "s/^$1:[[:space:]]*//p" "$conf" | head -n 1; }
pid_file=$(setting pid_file)
grace=$(setting grace_period_seconds)
shutdown=$(setting graceful_shutdown_timeout_seconds)
[ -n "$pid_file" ] || { echo "no pid_file in $conf" >&2; exit 2; }
old=$(cat "$pid_file" 2>/dev/null || true)
if [ -z "$old" ] || ! kill -0 "$old" 2>/dev/null; then
    echo "no running fastproxy (pid file $pid_file)" >&2
    exit 1
fi

echo "== checking $bin with $config"
"$bin" check -f "$config"
"$bin" -t -c "$conf" -f "$config"

echo "== starting the new instance (pid file $pid_file)"
# It waits (up to ~5 s) for the sockets before daemonizing, so it runs in the
# background while the old one is told to send them.
"$bin" -u -d -c "$conf" -f "$config" &
launcher=$!
sleep 1
echo "== SIGQUIT to the old instance ($old): it hands its sockets over and drains"
kill -QUIT "$old"
if ! wait "$launcher"; then
    echo "the new instance failed to start; the old one keeps running until it drains" >&2
    exit 1
fi

limit=$((5 + ${grace:-300} + ${shutdown:-5} + 5))
for _ in $(seq 1 $((limit * 10))); do
    kill -0 "$old" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$old" 2>/dev/null; then
    echo "the old instance ($old) is still running after ${limit}s" >&2
    exit 1
fi
new=$(cat "$pid_file")
echo "== upgraded: $old -> $new"
