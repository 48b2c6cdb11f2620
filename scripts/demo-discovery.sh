#!/usr/bin/env bash
# The three-process demo of service discovery (conf/discovery/): a center, an
# inbound proxy that registers token_service in it, and an outbound proxy
# whose pool follows the center. Shows a sealed round trip, the outbound
# proxy's view of the registry, then the inbound proxy leaving (SIGTERM:
# deregistered first) and coming back.
#
#   center :9100 <--register-- inbound :8033 --plain--> callee :8101
#        ^ watch
#   app --plain--> outbound :8034 --sealed--> (whatever the center lists)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

cargo build -q -p fastproxy --bin fastproxy --example demo_callee
bin="${CARGO_TARGET_DIR:-target}/debug"
work=$(mktemp -d /tmp/fastproxy-demo-discovery.XXXXXX)
rm -f /tmp/fastproxy-demo-center.json /tmp/fastproxy-demo-members.json
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work" /tmp/fastproxy-demo-center.json /tmp/fastproxy-demo-members.json
}
trap cleanup EXIT

# One Pingora conf per process (own pid file and upgrade socket).
start() { # name, subcommand ("" or center), config
    sed -e "s|/tmp/fastproxy.pid|$work/$1.pid|" -e "s|/tmp/fastproxy_upgrade.sock|$work/$1.sock|" \
        conf/pingora.yaml >"$work/$1-pingora.yaml"
    # shellcheck disable=SC2086
    RUST_LOG=info "$bin/fastproxy" $2 -c "$work/$1-pingora.yaml" -f "$3" 2>"$work/$1.log" &
    pids+=($!)
    eval "${1}_pid=$!"
}
wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }
members() { curl -sS http://127.0.0.1:9034/config | python3 -c 'import json,sys; d=json.load(sys.stdin)["discovery"]["local"]["token_service"]; print(json.dumps({"revision": d["revision"], "from": d["from"], "members": [m["addr"] for m in d["members"]], "last_error": d["last_error"]}))'; }
call() { curl -sS -o /dev/null -w '%{http_code}\n' -H 'x-fp-caller: song_service' --data '{"user":42}' 'http://127.0.0.1:8034/token_service/api/service?id=7'; }

"$bin/examples/demo_callee" 127.0.0.1:8101 2>/dev/null &
pids+=($!)
start center center conf/discovery/center.yaml
wait_port 9100
start inbound "" conf/discovery/inbound.yaml
wait_port 8033
start outbound "" conf/discovery/outbound.yaml
wait_port 8034
sleep 0.3

echo "== 1. The center lists token_service's inbound proxy (it registered itself)"
echo "\$ fastproxy center -f conf/discovery/center.yaml; fastproxy -f conf/discovery/inbound.yaml; fastproxy -f conf/discovery/outbound.yaml"
grep -h 'registered token_service' "$work/center.log" "$work/inbound.log" | sed 's/^\[[^]]*\] *//'
echo
echo "== 2. The outbound proxy's pool follows the center (GET :9034/config, discovery)"
members
echo
echo "== 3. A sealed round trip through the discovered inbound proxy"
curl -sS -i -H 'x-fp-caller: song_service' -H 'content-type: application/json' \
    --data '{"user":42,"action":"transfer"}' 'http://127.0.0.1:8034/token_service/api/service?id=7'
echo
echo
echo "== 4. SIGTERM to the inbound proxy: it deregisters first, then stops"
kill -TERM "$inbound_pid"
sleep 0.3
members
wait "$inbound_pid" 2>/dev/null || true
echo "a call now: $(call) (no inbound proxy is registered)"
echo
echo "== 5. It starts again, registers, and takes traffic"
start inbound "" conf/discovery/inbound.yaml
wait_port 8033
sleep 0.3
members
echo "a call now: $(call)"
