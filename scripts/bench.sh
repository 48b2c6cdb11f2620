#!/usr/bin/env bash
# Side-by-side proxy benchmark, one invocation, interleaved rounds, loopback only.
#
# Targets (all in front of the same origin, nginx `1 worker` serving a fixed body):
#   direct          the origin alone
#   nginx-chain     two nginx proxy_pass hops with upstream keep-alive
#   pingora-chain   two hops of a minimal Pingora proxy (gateway/examples/plain_proxy.rs)
#   fp-passthrough  fastproxy outbound -> inbound with sealing switched off
#   fp-aes          fastproxy pair, AES-256-GCM + HMAC-SHA256, codec none
#   fp-aes-snappy   the same with snappy
#   fp-chacha       ChaCha20-Poly1305 + HMAC-SHA256, codec none
#   fp-aes-mtls     fp-aes with mutual TLS between the proxies (certificates from
#                   `fastproxy certs`, the caller bound to its certificate)
#   fp-aes-h1       fp-aes with the HTTP/1.1 keep-alive pool between the proxies
#                   (`protocol: http1`) instead of the default HTTP/2 (h2c)
#   pingora-chain-h2  the Pingora chain with h2c between its hops (fastproxy's default
#                   hop, with its windows and stream limit)
#   fp-aes@REV      with -B REV: fp-aes built from commit REV (the cost of what came since)
#   pingora-chain-mimalloc, fp-aes-mimalloc  (only with -T) the Pingora chain and the sealed
#                   pair built with the `mimalloc` feature: the allocator's A/B, both chains
#                   on one allocator (an extra release build with the feature)
# Every Pingora process (both chains and fastproxy) runs the shipped runtime settings:
# threads from -t (1 by default) and `work_stealing: false` (a current-thread runtime per
# thread). Not in the default set (run them with -T): pingora-chain-ws,
# pingora-chain-h2-ws and fp-aes-ws, the same with Pingora's default work-stealing runtime.
# Loads (wrk, POST): 1 KiB body / 1 KiB response at c=32 and c=256, 16 KiB / 16 KiB at c=32.
# Per row: req/s, p50, p99, CPU seconds per 10k requests of the proxy processes,
# their peak RSS, and the ratio to nginx-chain, pingora-chain and fp-passthrough. Then heap
# allocations per request in each fastproxy role (alloc-count build).
# Writes the results into docs/BENCHMARKS.md (between the bench markers).
#
# Usage: scripts/bench.sh [-d SECONDS_PER_RUN] [-r ROUNDS] [-t THREADS_PER_PROXY] [-T "TARGET ..."] [-L "LOAD ..."] [-B REV]
# -T and -L run a subset (an A/B of a few targets, e.g. -T "fp-aes fp-aes-h1" -L "16k:32");
# the table is then printed only, not written into docs/BENCHMARKS.md.
# -B REV builds fastproxy at REV (a git worktree, its own target directory
# `target/bench-REV`, kept between runs) and adds the row fp-aes@REV; REV must
# read the same config (any commit since 426327b does).
set -euo pipefail
cd "$(dirname "$0")/.."
rel="${CARGO_TARGET_DIR:-target}/release"

dur=5 rounds=3 threads=1 only_targets="" only_loads="" baseline=""
while getopts "d:r:t:T:L:B:" opt; do
    case $opt in
        d) dur=$OPTARG ;;
        r) rounds=$OPTARG ;;
        t) threads=$OPTARG ;;
        T) only_targets=$OPTARG ;;
        L) only_loads=$OPTARG ;;
        B) baseline=$(git rev-parse --short "$OPTARG") ;;
        *) echo "usage: $0 [-d SECONDS] [-r ROUNDS] [-t THREADS] [-T TARGETS] [-L LOADS] [-B REV]" >&2; exit 2 ;;
    esac
done

scripts/deps.sh --bench
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "== building (release)"
work=$(mktemp -d /tmp/fastproxy-bench.XXXXXX)
cargo build -q --release -p fastproxy --bin fastproxy --example plain_proxy --features alloc-count
cp "$rel"/fastproxy "$work/fastproxy-alloc"
cp "$rel"/examples/plain_proxy "$work/plain_proxy-alloc"
cargo build -q --release -p fastproxy --bin fastproxy --example plain_proxy
cp "$rel"/fastproxy "$rel"/examples/plain_proxy "$work/"
mimalloc=""
if [[ " $only_targets " == *-mimalloc\ * ]]; then
    mimalloc=1
    echo "== building with the mimalloc feature (release)"
    cargo build -q --release -p fastproxy --bin fastproxy --example plain_proxy --features mimalloc
    cp "$rel"/fastproxy "$work/fastproxy-mimalloc"
    cp "$rel"/examples/plain_proxy "$work/plain_proxy-mimalloc"
fi
if [ -n "$baseline" ]; then
    base_target="${CARGO_TARGET_DIR:-$PWD/target}/bench-$baseline"
    echo "== building fastproxy at $baseline (release, $base_target)"
    tree="$work/tree-$baseline"
    git worktree add -q --detach "$tree" "$baseline"
    CARGO_TARGET_DIR="$base_target" cargo build -q --release --manifest-path "$tree/Cargo.toml" -p fastproxy --bin fastproxy
    cp "$base_target/release/fastproxy" "$work/fastproxy-$baseline"
    git worktree remove --force "$tree"
fi

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for d in "$work"/nginx-*; do [ -f "$d/nginx.pid" ] && kill "$(cat "$d/nginx.pid")" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
    git worktree prune 2>/dev/null || true
}
trap cleanup EXIT

# ---- content and the origin --------------------------------------------------
mkdir -p "$work/www"
chmod 755 "$work" "$work/www"   # nginx workers may run as nobody
head -c 1024 /dev/zero | tr '\0' 'a' > "$work/www/1k.bin"
head -c 16384 /dev/zero | tr '\0' 'b' > "$work/www/16k.bin"
for size in 1k 16k; do
    bytes=$((${size%k} * 1024))
    printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["x-fp-caller"] = "bench"\nwrk.body = string.rep("x", %d)\n' "$bytes" > "$work/post-$size.lua"
done

nginx_conf() { # name, server blocks
    local dir="$work/nginx-$1"
    mkdir -p "$dir/logs"
    cat > "$dir/nginx.conf" <<NGX
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  # Keep 16 KiB bodies in memory (the defaults spill request bodies over 16 KiB
  # to temp files and buffer responses in 4-8 KiB pieces).
  client_body_buffer_size 64k;
  proxy_buffer_size 32k;
  proxy_buffers 8 32k;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  default_type application/octet-stream;
  $2
}
NGX
    "$NGINX" -p "$dir" -c "$dir/nginx.conf"
}
# Static files answer POST with 405; error_page turns that into a GET of the same file.
origin_block="server { listen 127.0.0.1:28101;"
for size in 1k 16k; do
    for prefix in "" /token_service; do
        origin_block="$origin_block
    location = $prefix/$size { alias $work/www/$size.bin; error_page 405 =200 \$uri; }"
    done
done
origin_block="$origin_block }"
nginx_conf origin "$origin_block"
hop() { # listen, upstream
    echo "upstream up { server $2; keepalive 1024; }
  server { listen $1; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
}
nginx_conf hop1 "$(hop 127.0.0.1:28111 127.0.0.1:28112)"
nginx_conf hop2 "$(hop 127.0.0.1:28112 127.0.0.1:28101)"

# ---- Pingora and fastproxy processes ------------------------------------------
# Processes that run Pingora's default work-stealing runtime; the others run
# the shipped `work_stealing: false`.
stealing=" pp3 pp4 pp7 pp8 fp-aes-ws-in fp-aes-ws-out "
pingora_conf() { # name
    local ws=false
    [[ "$stealing" == *" $1 "* ]] && ws=true
    cat > "$work/$1.pingora.yaml" <<PC
---
version: 1
threads: $threads
work_stealing: $ws
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
upstream_keepalive_pool_size: 1024
pid_file: $work/$1.pid
upgrade_sock: $work/$1.sock
PC
    echo "$work/$1.pingora.yaml"
}
start_plain() { # name listen upstream [binary] [flags: h2c h2-up]
    FP_ALLOC_FILE="$work/$1.allocs" "${4:-$work/plain_proxy}" -c "$(pingora_conf "$1")" "$2" "$3" ${5:-} 2>"$work/$1.log" &
    pids+=($!)
    eval "pid_$1=$!"
}
start_plain pp1 127.0.0.1:28121 127.0.0.1:28122
start_plain pp2 127.0.0.1:28122 127.0.0.1:28101
start_plain pp3 127.0.0.1:28123 127.0.0.1:28124
start_plain pp4 127.0.0.1:28124 127.0.0.1:28101
start_plain pp5 127.0.0.1:28125 127.0.0.1:28126 "$work/plain_proxy" h2-up
start_plain pp6 127.0.0.1:28126 127.0.0.1:28101 "$work/plain_proxy" h2c
start_plain pp7 127.0.0.1:28127 127.0.0.1:28128 "$work/plain_proxy" h2-up
start_plain pp8 127.0.0.1:28128 127.0.0.1:28101 "$work/plain_proxy" h2c

KEYS='keys:
  aead:
    k-aes: { alg: aes-256-gcm, secret: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" }
    k-chacha: { alg: chacha20-poly1305, secret: "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" }
  hmac:
    k-sign: { secret: "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f" }'
# Mutual TLS between the proxies of fp-aes-mtls: a CA, the inbound proxy's
# certificate, the bench caller's.
pki="$work/pki"
"$work/fastproxy" certs --dir "$pki" --name ca >/dev/null
"$work/fastproxy" certs --dir "$pki" --name inbound --ca ca --dns bench.inbound >/dev/null
"$work/fastproxy" certs --dir "$pki" --name bench --ca ca --uri spiffe://bench/bench >/dev/null
start_pair() { # name out_port in_port admin_base "caller settings" passthrough binary [tls] [protocol]
    local name=$1 out=$2 in=$3 admin=$4 seal=$5 pass=$6 bin=${7:-$work/fastproxy} tls=${8:-} proto=${9:-}
    local up_tls="" in_tls="" identity=""
    if [ -n "$tls" ]; then
        up_tls=", tls: { ca: \"$pki/ca.crt\", server_name: bench.inbound, cert: \"$pki/bench.crt\", key: \"$pki/bench.key\" }"
        in_tls="  tls: { cert: \"$pki/inbound.crt\", key: \"$pki/inbound.key\", client_ca: \"$pki/ca.crt\" }"
        identity="identity: \"spiffe://bench/bench\", "
    fi
    cat > "$work/$name-out.yaml" <<Y
$KEYS
admin: { listen: ["127.0.0.1:$admin"] }
outbound:
  listen: ["127.0.0.1:$out"]
  dangerous_passthrough: $pass
  callers: { bench: { $seal } }
  routes: { token_service: { upstream: in } }
upstreams: { in: { backends: ["127.0.0.1:$in"]${proto:+, protocol: $proto}$up_tls } }
Y
    cat > "$work/$name-in.yaml" <<Y
$KEYS
admin: { listen: ["127.0.0.1:$((admin + 1))"] }
inbound:
  listen: ["127.0.0.1:$in"]
$in_tls
  dangerous_passthrough: $pass
  services: { token_service: { upstream: origin } }
  callers:
    bench: { ${identity}require: { encrypt: true }, keys: [k-aes, k-chacha, k-sign], allow: [{ service: token_service, path_prefix: /, methods: ["*"] }] }
upstreams: { origin: { backends: ["127.0.0.1:28101"] } }
Y
    RUST_LOG=warn "$bin" -c "$(pingora_conf "$name-in")" -f "$work/$name-in.yaml" 2>"$work/$name-in.log" &
    pids+=($!); eval "pid_${name//-/_}_in=$!"
    RUST_LOG=warn "$bin" -c "$(pingora_conf "$name-out")" -f "$work/$name-out.yaml" 2>"$work/$name-out.log" &
    pids+=($!); eval "pid_${name//-/_}_out=$!"
}
start_pair fp-passthrough 28131 28132 29131 "sign_key: k-sign" true
start_pair fp-aes 28141 28142 29141 "aead_key: k-aes, sign_key: k-sign, codec: none" false
start_pair fp-aes-snappy 28151 28152 29151 "aead_key: k-aes, sign_key: k-sign, codec: snappy" false
start_pair fp-chacha 28161 28162 29161 "aead_key: k-chacha, sign_key: k-sign, codec: none" false
start_pair fp-aes-mtls 28181 28182 29181 "aead_key: k-aes, sign_key: k-sign, codec: none" false "$work/fastproxy" tls
start_pair fp-aes-h1 28191 28192 29191 "aead_key: k-aes, sign_key: k-sign, codec: none" false "$work/fastproxy" "" http1
start_pair fp-aes-ws 28195 28196 29195 "aead_key: k-aes, sign_key: k-sign, codec: none" false
base_ports=""
if [ -n "$baseline" ]; then
    start_pair fp-aes-base 28197 28198 29197 "aead_key: k-aes, sign_key: k-sign, codec: none" false "$work/fastproxy-$baseline"
    base_ports="28197 28198"
fi
if [ -n "$mimalloc" ]; then
    start_plain pp9 127.0.0.1:28201 127.0.0.1:28202 "$work/plain_proxy-mimalloc"
    start_plain pp10 127.0.0.1:28202 127.0.0.1:28101 "$work/plain_proxy-mimalloc"
    start_pair fp-aes-mimalloc 28205 28206 29205 "aead_key: k-aes, sign_key: k-sign, codec: none" false "$work/fastproxy-mimalloc"
    base_ports="$base_ports 28201 28202 28205 28206"
fi

wait_port() { for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
for p in 28101 28111 28112 28121 28122 28131 28132 28141 28142 28151 28152 28161 28162 28181 28182 28191 28192 28123 28124 28125 28126 28127 28128 28195 28196 $base_ports; do wait_port $p; done

worker() { pgrep -P "$(cat "$work/nginx-$1/nginx.pid")" | head -n 1; }
declare -A port procs
port[direct]=28101;          procs[direct]="$(worker origin)"
port[nginx-chain]=28111;     procs[nginx-chain]="$(worker hop1) $(worker hop2)"
port[pingora-chain]=28121;   procs[pingora-chain]="$pid_pp1 $pid_pp2"
port[fp-passthrough]=28131;  procs[fp-passthrough]="$pid_fp_passthrough_out $pid_fp_passthrough_in"
port[fp-aes]=28141;          procs[fp-aes]="$pid_fp_aes_out $pid_fp_aes_in"
port[fp-aes-snappy]=28151;   procs[fp-aes-snappy]="$pid_fp_aes_snappy_out $pid_fp_aes_snappy_in"
port[fp-chacha]=28161;       procs[fp-chacha]="$pid_fp_chacha_out $pid_fp_chacha_in"
port[fp-aes-mtls]=28181;     procs[fp-aes-mtls]="$pid_fp_aes_mtls_out $pid_fp_aes_mtls_in"
port[fp-aes-h1]=28191;       procs[fp-aes-h1]="$pid_fp_aes_h1_out $pid_fp_aes_h1_in"
port[pingora-chain-ws]=28123; procs[pingora-chain-ws]="$pid_pp3 $pid_pp4"
port[pingora-chain-h2]=28125; procs[pingora-chain-h2]="$pid_pp5 $pid_pp6"
port[pingora-chain-h2-ws]=28127; procs[pingora-chain-h2-ws]="$pid_pp7 $pid_pp8"
port[fp-aes-ws]=28195;       procs[fp-aes-ws]="$pid_fp_aes_ws_out $pid_fp_aes_ws_in"
port[pingora-chain-mimalloc]=28201; procs[pingora-chain-mimalloc]="${pid_pp9:-} ${pid_pp10:-}"
port[fp-aes-mimalloc]=28205; procs[fp-aes-mimalloc]="${pid_fp_aes_mimalloc_out:-} ${pid_fp_aes_mimalloc_in:-}"
targets="direct nginx-chain pingora-chain pingora-chain-h2 fp-passthrough fp-aes fp-aes-snappy fp-chacha fp-aes-mtls fp-aes-h1"
if [ -n "$baseline" ]; then
    port[fp-aes@$baseline]=28197; procs[fp-aes@$baseline]="$pid_fp_aes_base_out $pid_fp_aes_base_in"
    targets="$targets fp-aes@$baseline"
fi
loads="1k:32 1k:256 16k:32"
[ -n "$only_targets" ] && targets=$only_targets
[ -n "$only_loads" ] && loads=$only_loads

# Sanity: every target answers the benchmark request with 200.
for t in $targets; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'x-fp-caller: bench' --data x "http://127.0.0.1:${port[$t]}/token_service/1k")
    [ "$code" = 200 ] || { echo "$t answered $code" >&2; exit 1; }
done

rss() { local out=""; for p in $1; do out="$out$(awk '/VmHWM/ {printf "%d", $2/1024}' "/proc/$p/status")+"; done; echo "${out%+}"; }
# Resets the peak-RSS counter (VmHWM) of these processes, so each run reports its own peak.
reset_peak() { for p in $1; do echo 5 > "/proc/$p/clear_refs" 2>/dev/null || true; done; }
ticks() { local sum=0; for p in $1; do set -- $(cut -d' ' -f14,15 "/proc/$p/stat"); sum=$((sum + $1 + $2)); done; echo $sum; }
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
hz=$(getconf CLK_TCK)
results="$work/results.tsv"
: > "$results"
echo "== $rounds interleaved rounds x ${dur}s per target and load, $threads thread(s) per Pingora proxy"
for round in $(seq 1 "$rounds"); do
    for load in $loads; do
        size=${load%:*} conns=${load#*:}
        for t in $targets; do
            reset_peak "${procs[$t]}"
            before=$(ticks "${procs[$t]}")
            out=$(wrk -t2 -c"$conns" -d"${dur}s" --latency -s "$work/post-$size.lua" "http://127.0.0.1:${port[$t]}/token_service/$size")
            after=$(ticks "${procs[$t]}")
            peak=$(rss "${procs[$t]}")
            rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
            reqs=$(awk '/requests in/ {print $1}' <<<"$out")
            errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
            p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
            p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
            cpu=$(awk -v d=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.3f", d / hz / n * 10000 }')
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$load" "$t" "$rps" "$p50" "$p99" "$cpu" "$errs" "$peak" >> "$results"
            printf '  round %s %-7s %-15s %10s req/s  p50 %7s ms  p99 %7s ms  cpu/10k %6s s  rss %s MiB %s\n' "$round" "$load" "$t" "$rps" "$p50" "$p99" "$cpu" "$peak" "$errs"
        done
    done
done

# ---- allocations per request (alloc-count builds, 1 KiB POST, c=32) -------------
start_plain ppa1 127.0.0.1:28185 127.0.0.1:28186 "$work/plain_proxy-alloc"
start_plain ppa2 127.0.0.1:28186 127.0.0.1:28101 "$work/plain_proxy-alloc"
start_pair fpa-pass 28171 28172 29171 "sign_key: k-sign" true "$work/fastproxy-alloc"
start_pair fpa-aes 28173 28174 29173 "aead_key: k-aes, sign_key: k-sign, codec: none" false "$work/fastproxy-alloc"
for p in 28185 28186 28171 28172 28173 28174; do wait_port $p; done
scrape() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^fastproxy_heap_allocations_total/ {print $2}'; }
allocs_per_request() { # port, then "file:PATH" or "admin:PORT" per proxy process
    local port=$1; shift
    wrk -t2 -c32 -d2s -s "$work/post-1k.lua" "http://127.0.0.1:$port/token_service/1k" >/dev/null
    sleep 0.3
    local before=() after=() src
    for src in "$@"; do
        case $src in file:*) before+=("$(cat "${src#file:}")") ;; admin:*) before+=("$(scrape "${src#admin:}")") ;; esac
    done
    local out n
    out=$(wrk -t2 -c32 -d"${dur}s" -s "$work/post-1k.lua" "http://127.0.0.1:$port/token_service/1k")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    sleep 0.3
    for src in "$@"; do
        case $src in file:*) after+=("$(cat "${src#file:}")") ;; admin:*) after+=("$(scrape "${src#admin:}")") ;; esac
    done
    local i res=""
    for i in "${!before[@]}"; do
        res="$res$(awk -v a="${after[$i]}" -v b="${before[$i]}" -v n="$n" 'BEGIN { printf "%.0f", (a - b) / n }') / "
    done
    echo "${res% / }"
}
alloc_plain=$(allocs_per_request 28185 "file:$work/ppa1.allocs" "file:$work/ppa2.allocs")
alloc_pass=$(allocs_per_request 28171 admin:29171 admin:29172)
alloc_aes=$(allocs_per_request 28173 admin:29173 admin:29174)

# ---- the table -------------------------------------------------------------------
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
cpu_model=$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')
table="$work/table.md"
{
    echo "Run: $(date -u +%Y-%m-%dT%H:%MZ), commit \`$commit\`$dirty, $(nproc) vCPU $cpu_model, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)."
    echo "Command: \`scripts/bench.sh -d $dur -r $rounds -t $threads${baseline:+ -B $baseline}\` — wrk -t2, POST, median of $rounds interleaved rounds of ${dur}s;"
    echo "wrk, the origin and the proxies share the machine's cores. CPU = user+system seconds of the proxy processes"
    echo "per 10k requests (for direct: the origin's worker). RSS = peak resident set of each proxy process (MiB) while
serving that load (VmHWM reset before each run; the highest over the rounds)."
    echo
    echo "| load | target | req/s | p50 ms | p99 ms | CPU s/10k | peak RSS MiB | vs nginx-chain | vs pingora-chain | vs fp-passthrough |"
    echo "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"
    for load in $loads; do
        for t in $targets; do
            med() { awk -F'\t' -v l="$load" -v t="$t" -v c="$1" '$2==l && $3==t {print $c}' "$results" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
            rps=$(med 4); p50=$(med 5); p99=$(med 6); cpu=$(med 7)
            base_n=$(awk -F'\t' -v l="$load" '$2==l && $3=="nginx-chain" {print $4}' "$results" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
            base_c=$(awk -F'\t' -v l="$load" '$2==l && $3=="pingora-chain" {print $4}' "$results" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
            base_p=$(awk -F'\t' -v l="$load" '$2==l && $3=="fp-passthrough" {print $4}' "$results" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
            rn=$(awk -v a="$rps" -v b="$base_n" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else printf "-" }')
            rc=$(awk -v a="$rps" -v b="$base_c" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else printf "-" }')
            rp=$(awk -v a="$rps" -v b="$base_p" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else printf "-" }')
            # Per process, the highest peak over the rounds of this load.
            peak=$(awk -F'\t' -v l="$load" -v t="$t" '$2==l && $3==t { n = split($9, v, "+"); for (i = 1; i <= n; i++) if (v[i] + 0 > m[i]) m[i] = v[i] + 0; k = n }
                END { s = ""; for (i = 1; i <= k; i++) s = s (i > 1 ? "+" : "") m[i]; print s }' "$results")
            echo "| $load | $t | $rps | $p50 | $p99 | $cpu | $peak | $rn | $rc | $rp |"
        done
    done
    echo
    echo "Heap allocations per request and proxy process (alloc-count builds, 1 KiB POST, c=32; first hop / second hop):"
    echo "plain Pingora **$alloc_plain**, fastproxy passthrough **$alloc_pass**, fastproxy AES-256-GCM **$alloc_aes** (outbound / inbound)."
    echo
    echo "Ratios worth watching (same run): passthrough / pingora-chain, sealed AES / passthrough, sealed AES / nginx-chain,"
    echo "sealed p99 / nginx-chain p99 — see the section below for what was measured against the targets."
} > "$table"
cat "$table"

doc=docs/BENCHMARKS.md
if [ -z "$only_targets$only_loads" ] && grep -q '<!-- bench:start -->' "$doc"; then
    awk -v f="$table" '
        /<!-- bench:start -->/ { print; while ((getline line < f) > 0) print line; skip=1; next }
        /<!-- bench:end -->/ { skip=0 }
        !skip { print }' "$doc" > "$work/doc.md"
    cp "$work/doc.md" "$doc"
    echo "== wrote $doc"
fi
