#!/usr/bin/env bash
# The TLS demo (conf/tls/): makes a CA and certificates with `fastproxy
# certs`, runs an outbound and an inbound proxy with mutual TLS between them
# in front of a demo callee, shows a sealed round trip, then that the
# inbound proxy refuses a client without a certificate.
#
#   app --plain--> outbound :8034 ==mTLS, sealed==> inbound :8033 --plain--> callee :8101
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

cargo build -q -p fastproxy --bin fastproxy --example demo_callee
bin="${CARGO_TARGET_DIR:-target}/debug"
pki=/tmp/fastproxy-demo-tls
work=$(mktemp -d /tmp/fastproxy-demo-tls-run.XXXXXX)
rm -rf "$pki"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work" "$pki"
}
trap cleanup EXIT

echo "== 1. A CA and certificates (fastproxy certs)"
"$bin/fastproxy" certs --dir "$pki" --name ca
"$bin/fastproxy" certs --dir "$pki" --name inbound --ca ca --dns token.inbound.demo
"$bin/fastproxy" certs --dir "$pki" --name song_service --ca ca --uri spiffe://demo.fastproxy/song_service
echo

start() { # name config
    sed -e "s|/tmp/fastproxy.pid|$work/$1.pid|" -e "s|/tmp/fastproxy_upgrade.sock|$work/$1.sock|" \
        conf/pingora.yaml >"$work/$1-pingora.yaml"
    RUST_LOG=info "$bin/fastproxy" -c "$work/$1-pingora.yaml" -f "$2" 2>"$work/$1.log" &
    pids+=($!)
}
wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

"$bin/examples/demo_callee" 127.0.0.1:8101 2>/dev/null &
pids+=($!)
start inbound conf/tls/inbound.yaml
start outbound conf/tls/outbound.yaml
wait_port 8033
wait_port 8034
sleep 1.2   # the first health check

echo "== 2. A sealed round trip over mutual TLS"
echo "\$ curl -i -H 'x-fp-caller: song_service' --data '{\"user\":42}' 'http://127.0.0.1:8034/token_service/api/service?id=7'"
curl -sS -i -H 'x-fp-caller: song_service' -H 'content-type: application/json' \
    --data '{"user":42}' 'http://127.0.0.1:8034/token_service/api/service?id=7'
echo
echo
grep -h "role listening" "$work/inbound.log" | sed 's/^\[[^]]*\] *//'
echo
echo "== 3. A client without a certificate is refused in the handshake"
echo "\$ curl --cacert $pki/ca.crt --resolve token.inbound.demo:8033:127.0.0.1 https://token.inbound.demo:8033/_fastproxy/health"
if curl -sS --cacert "$pki/ca.crt" --resolve token.inbound.demo:8033:127.0.0.1 \
    https://token.inbound.demo:8033/_fastproxy/health 2>&1; then
    echo "unexpected: answered without a client certificate" >&2
    exit 1
fi
echo "(refused)"
echo
echo "== 4. With the caller's certificate the handshake succeeds (the request itself is unsealed: refused)"
curl -sS --cacert "$pki/ca.crt" --cert "$pki/song_service.crt" --key "$pki/song_service.key" \
    --resolve token.inbound.demo:8033:127.0.0.1 -o /dev/null -w 'HTTP %{http_code}\n' \
    https://token.inbound.demo:8033/token_service/x
