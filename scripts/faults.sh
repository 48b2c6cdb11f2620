#!/usr/bin/env bash
# Fault tests under load, on this machine only (127.0.0.1), bounded in time
# (about 4 minutes), with a table at the end:
#
#   upgrade   each role upgraded (-u + SIGQUIT) under wrk -c32, for GET and
#             for POST, 3 times each: every error wrk sees counts (socket
#             connect/read/write/timeout errors and non-2xx answers).
#   attacks   hostile clients without credentials (issue 11.3), each while
#             wrk -c8 sends legitimate calls: 500 slowloris connections
#             (1 byte/s) on each listener, 5000 idle connections on the
#             inbound proxy (RSS before, during, after), and 1100 idle
#             connections on an inbound proxy started under `ulimit -n 1024`
#             (its admin health endpoint must keep answering).
#   e2e       the fault tests of the e2e suite, release build: a response cut
#             mid-body is never retried nor spliced (issue 11.1), clients that
#             go away are not sent again (11.2), idle and unverified
#             connections are closed (11.3), the upgrade with keep-alive
#             clients that never re-send (11.4), compression bombs (10.3).
#
# wrk never re-sends a request: what it counts is what an application sees.
# Usage: scripts/faults.sh [-d SECONDS_PER_UPGRADE_RUN] [-o upgrades|attacks|e2e]
set -euo pipefail
cd "$(dirname "$0")/.."
rel="${CARGO_TARGET_DIR:-target}/release"

dur=10
only=""
while getopts "d:o:" opt; do
    case $opt in
        d) dur=$OPTARG ;;
        o) only=$OPTARG ;;
        *) echo "usage: $0 [-d SECONDS] [-o upgrades|attacks|e2e]" >&2; exit 2 ;;
    esac
done
runs() { [ -z "$only" ] || [ "$only" = "$1" ]; }

scripts/deps.sh --bench
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "== building (release)"
cargo build -q --release -p fastproxy --bin fastproxy
work=$(mktemp -d /tmp/fastproxy-faults.XXXXXX)
chmod 755 "$work"
cp "$rel"/fastproxy "$work/"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] && { echo "kept $work" >&2; return; }
    rm -rf "$work"
}
trap cleanup EXIT

# The origin: nginx answering GET and POST with 1 KiB.
mkdir -p "$work/www" "$work/nginx/logs"
head -c 1024 /dev/zero | tr '\0' 'a' > "$work/www/item"
cat > "$work/nginx/nginx.conf" <<NGX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fcgi; uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
  server { listen 127.0.0.1:28201; location = /item { alias $work/www/item; error_page 405 =200 \$uri; } }
}
NGX
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf"

KEYS='keys:
  aead:
    k-aes: { alg: aes-256-gcm, secret: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" }
  hmac:
    k-sign: { secret: "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f" }'
for role in in out; do
    cat > "$work/$role.pingora.yaml" <<PC
---
version: 1
threads: 1
work_stealing: false
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
upstream_keepalive_pool_size: 1024
pid_file: $work/$role.pid
upgrade_sock: $work/$role.sock
PC
done
cat > "$work/out.yaml" <<Y
$KEYS
outbound:
  listen: ["127.0.0.1:28211"]
  callers: { faults: { aead_key: k-aes, sign_key: k-sign } }
  routes: { token_service: { upstream: in } }
upstreams: { in: { backends: ["127.0.0.1:28212"] } }
admin: { listen: ["127.0.0.1:28214"] }
Y
cat > "$work/in.yaml" <<Y
$KEYS
inbound:
  listen: ["127.0.0.1:28212"]
  services: { token_service: { upstream: origin } }
  callers:
    faults: { keys: [k-aes, k-sign], allow: [{ service: token_service, path_prefix: /, methods: ["*"] }] }
upstreams: { origin: { backends: ["127.0.0.1:28201"] } }
admin: { listen: ["127.0.0.1:28213"] }
Y
declare -A pid
start() { # role [-u] [open-file limit]
    (
        [ -n "${3:-}" ] && ulimit -n "$3"
        RUST_LOG=warn exec "$work/fastproxy" -c "$work/$1.pingora.yaml" -f "$work/$1.yaml" ${2:-} 2>>"$work/$1.log"
    ) &
    pids+=($!)
    pid[$1]=$!
}
wait_port() { for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
start in; start out
wait_port 28201; wait_port 28212; wait_port 28211
sleep 0.5

printf 'wrk.headers["x-fp-caller"] = "faults"\n' > "$work/get.lua"
printf 'wrk.method = "POST"\nwrk.headers["x-fp-caller"] = "faults"\nwrk.body = string.rep("x", 1024)\n' > "$work/post.lua"

rows=()
upgrade_run() { # role method round
    local role=$1 method=$2 out
    local old=${pid[$role]}
    wrk -t2 -c32 -d"${dur}s" -s "$work/${method,,}.lua" http://127.0.0.1:28211/token_service/item > "$work/wrk.out" 2>&1 &
    local wrk_pid=$!
    sleep 1.5
    start "$role" -u
    sleep 0.5
    kill -QUIT "$old"
    wait "$wrk_pid" || true
    for _ in $(seq 1 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    out=$(cat "$work/wrk.out")
    local reqs sock non2xx
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    sock=$(echo "$out" | awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    rows+=("$(printf '| upgrade %-8s | %-4s | %d | %7s | %5s | %5s |' "$role" "$method" "$3" "${reqs:-0}" "${sock:-0}" "${non2xx:-0}")")
    echo "${rows[-1]}"
}
if runs upgrades; then
    echo "== upgrades under wrk -c32, ${dur}s per run"
    echo "| run | method | round | requests | socket errors | non-2xx |"
    for role in out in; do
        for method in GET POST; do
            for round in 1 2 3; do
                upgrade_run "$role" "$method" "$round"
            done
        done
    done
fi

rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }
attacks=()
legit_errors=0
attack_run() { # label port role mode n seconds
    local label=$1 port=$2 role=$3 mode=$4 n=$5 secs=$6
    local target=${pid[$role]} admin=$([ "$role" = in ] && echo 28213 || echo 28214)
    local before during after health reqs sock non2xx lines0 lines
    before=$(rss "$target")
    lines0=$(cat "$work"/*.log | wc -l)
    wrk -t1 -c8 -d"$((secs + 2))s" -s "$work/get.lua" http://127.0.0.1:28211/token_service/item > "$work/wrk.out" 2>&1 &
    local wrk_pid=$!
    sleep 1
    python3 scripts/attack.py "$mode" "$port" "$n" "$secs" > "$work/attack.json" &
    local attack_pid=$!
    sleep $((secs / 2))
    during=$(rss "$target")
    health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$admin/healthz" || true)
    wait "$attack_pid" || true
    wait "$wrk_pid" || true
    sleep 3
    after=$(rss "$target")
    lines=$(( $(cat "$work"/*.log | wc -l) - lines0 ))
    reqs=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    sock=$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' "$work/wrk.out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out")
    legit_errors=$((legit_errors + ${sock:-0} + ${non2xx:-0}))
    local a
    a=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d | %d | %d (median %ss, max %ss) | %d" % (d["connected"], d["refused_503"], d["closed_by_proxy"], d["closed_median_s"], d["closed_max_s"], d["open_at_end"]))' "$work/attack.json")
    attacks+=("$(printf '| %s | %s | %s | %s | %s | %s / %s / %s | %s |' "$label" "$a" "${reqs:-0}" "$((${sock:-0} + ${non2xx:-0}))" "${health:-none}" "$before" "$during" "$after" "$lines")")
    echo "${attacks[-1]}"
}
attack_header='| attack (for the given seconds) | hostile connections | answered 503 | closed by the proxy | open at the end | legit requests | legit errors | admin /healthz | proxy RSS MiB before / during / after | log lines (RUST_LOG=warn) |'
if runs attacks; then
    echo "== attacks without credentials, with legitimate calls through both proxies (wrk -c8)"
    echo "$attack_header"
    attack_run "slowloris 1 byte/s, outbound, 20 s" 28211 out slowloris 500 20
    attack_run "slowloris 1 byte/s, inbound, 20 s" 28212 in slowloris 500 20
    attack_run "5000 idle, inbound, 20 s" 28212 in idle 5000 20
    # The inbound proxy again, now with 1024 open files at most.
    kill -TERM "${pid[in]}"
    for _ in $(seq 1 100); do kill -0 "${pid[in]}" 2>/dev/null || break; sleep 0.1; done
    start in "" 1024
    wait_port 28212; wait_port 28213; sleep 0.5
    attack_run "1100 idle, inbound under ulimit -n 1024, 20 s" 28212 in idle 1100 20
fi

e2e_failed=0
if runs e2e; then
    echo "== e2e fault tests (release build)"
    # A build that fails is a failed run too, said so, with its errors.
    if ! cargo test -q --release -p fastproxy --test e2e -- \
        robustness:: connection_limits:: operations::an_upgrade_under_load_loses_no_request bombs:: \
        >"$work/e2e.out" 2>&1; then
        e2e_failed=1
    fi
    if [ "$e2e_failed" -eq 0 ]; then
        grep -E "^failures:|^    [a-z_]+::|panicked at|^test result" "$work/e2e.out" | tail -30
    else
        echo "e2e fault tests FAILED; the end of their output:"
        tail -40 "$work/e2e.out"
    fi
fi

echo
echo "== summary"
errors=0
if [ "${#rows[@]}" -gt 0 ]; then
    echo "| run | method | round | requests | socket errors | non-2xx |"
    echo "|---|---|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
    errors=$(printf '%s\n' "${rows[@]}" | awk -F'|' '{s += $6 + $7} END {print s + 0}')
    echo "errors in all upgrade runs: $errors"
fi
if [ "${#attacks[@]}" -gt 0 ]; then
    echo
    echo "$attack_header"
    echo "|---|---:|---:|---|---:|---:|---:|---|---|---:|"
    printf '%s\n' "${attacks[@]}"
    echo "legitimate requests that failed during the attacks: $legit_errors"
fi
[ "$e2e_failed" -eq 0 ] || echo "e2e fault tests: FAILED"
[ "$errors" -eq 0 ] && [ "$legit_errors" -eq 0 ] && [ "$e2e_failed" -eq 0 ]
