#!/usr/bin/env bash
# Runs fastproxy on the shipped default config (conf/fastproxy.yaml: both roles
# in one process) in front of a demo callee, sends a request through it, and
# shows what crossed the wire between the outbound and inbound proxy.
#
#   app --plain--> outbound :8034 --sealed--> inbound :8033 --plain--> callee :8101
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

cargo build -q -p fastproxy --bin fastproxy --example demo_callee
bin="${CARGO_TARGET_DIR:-target}/debug"
log=$(mktemp /tmp/fastproxy-demo.XXXXXX.log)

"$bin/examples/demo_callee" 127.0.0.1:8101 2>/dev/null &
callee=$!
RUST_LOG=info,fastproxy::wire=debug "$bin/fastproxy" -c conf/pingora.yaml -f conf/fastproxy.yaml 2>"$log" &
proxy=$!
trap 'kill $proxy $callee 2>/dev/null; wait $proxy $callee 2>/dev/null || true; rm -f "$log"' EXIT

for _ in $(seq 1 100); do
    (echo >/dev/tcp/127.0.0.1/8034) 2>/dev/null && (echo >/dev/tcp/127.0.0.1/8101) 2>/dev/null && break
    sleep 0.1
done

echo "== 1. The app sends plain HTTP to its outbound proxy and gets the callee's answer back"
echo "\$ curl -i -H 'x-fp-caller: song_service' --data '{\"user\":42,\"action\":\"transfer\"}' 'http://127.0.0.1:8034/token_service/api/service?id=7'"
curl -sS -i -H 'x-fp-caller: song_service' -H 'content-type: application/json' \
    --data '{"user":42,"action":"transfer"}' 'http://127.0.0.1:8034/token_service/api/service?id=7'
echo
echo
echo "== 2. What crossed the wire between the proxies (log target fastproxy::wire)"
sleep 0.2
grep -A 14 'fastproxy::wire' "$log" | grep -v 'fastproxy::access' | sed 's/^\[[^]]*\] *//'
echo
echo "== 3. A plain request sent straight to the inbound proxy is refused"
curl -sS -i 'http://127.0.0.1:8033/token_service/api/service?id=7'
echo
