#!/usr/bin/env bash
# Load benchmark: the same load through no proxy, nginx and HAProxy (when
# installed) and jwtgate in several modes, in interleaved rounds.
#
#   benches/load.sh                 # 3 rounds of 10 s per target
#   ROUNDS=5 DURATION=20 benches/load.sh
#
# Layout (2 cores): each proxy pinned alone on core 0 with one worker;
# wrk -t1 -c64 and the upstream on core 1. Needs wrk (apt-get install wrk);
# nginx and haproxy are compared when installed (apt-get install nginx haproxy).
# Every target gets the same request, Authorization header included; access
# logs are off everywhere except the row that says otherwise.
# Prints a Markdown table of medians: req/s, p50, p99, and proxy CPU per
# request from /proc (utime+stime of the proxy's processes). Then, unless
# EXTRAS=0: latency at a fixed 5k req/s (needs oha: cargo install oha), and
# jwtgate's memory idle and at 1000 keep-alive connections cycling through
# 10 000 distinct tokens (a full verified-token cache).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
PROXY_CORE=${PROXY_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin jwtgate --example bench_upstream --example bench_token

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

target/release/examples/bench_token "$work" 10000
token=$(cat "$work/token")
issuer="https://bench.jwtgate.local/"

UPSTREAM=127.0.0.1:19001
taskset -c "$LOAD_CORE" target/release/examples/bench_upstream "$UPSTREAM" &
pids+=($!)

declare -A URL PIDOF
names=()

wait_for() { # url
    for _ in $(seq 1 100); do
        curl -fs -o /dev/null -H "Authorization: Bearer $token" "$1" && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    exit 1
}

add() { # name url pid
    names+=("$1"); URL[$1]=$2; PIDOF[$1]=$3
    wait_for "$2"
}

add "direct (no proxy)" "http://$UPSTREAM/" ""

# Starts a one-worker jwtgate on PORT (admin on PORT+1000) with CACHE cached
# tokens and log level LEVEL; its pid is left in $last_pid.
start_jwtgate() { # port level cache
    cat > "$work/jwtgate-$1.toml" <<TOML
[server]
listen = "127.0.0.1:$1"
admin_listen = "127.0.0.1:$(($1 + 1000))"
worker_threads = 1
[upstream]
url = "http://$UPSTREAM"
[[issuers]]
issuer = "$issuer"
audiences = ["bench"]
jwks_file = "jwks.json"
[[routes]]
path = "/public"
auth = "public"
[cache]
max_tokens = $3
TOML
    RUST_LOG=$2 taskset -c "$PROXY_CORE" target/release/jwtgate run -c "$work/jwtgate-$1.toml" >/dev/null 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
}

jwtgate() { # name port log-level cache-tokens [path]
    start_jwtgate "$2" "$3" "$4"
    add "$1" "http://127.0.0.1:$2/${5:-}" "$last_pid"
}
jwtgate "jwtgate, cache off (RS256 every request)" 19011 warn 0
jwtgate "jwtgate, cache on (repeated token)" 19012 warn 10000
jwtgate "jwtgate, public route (no token work)" 19013 warn 0 public
jwtgate "jwtgate, cache off, access log on" 19014 info 0

if command -v nginx >/dev/null; then
    cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    upstream backend { server $UPSTREAM; keepalive 64; }
    server {
        listen 127.0.0.1:19021;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
    taskset -c "$PROXY_CORE" nginx -c "$work/nginx.conf" -g 'daemon off;' &
    pids+=($!)
    add "nginx $(nginx -v 2>&1 | sed 's|.*/||'), plain proxy" "http://127.0.0.1:19021/" $!
fi

if command -v haproxy >/dev/null; then
    cat > "$work/haproxy.cfg" <<HAPROXY
global
    nbthread 1
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend plain
    bind 127.0.0.1:19031
    default_backend up
frontend jwt
    bind 127.0.0.1:19032
    http-request deny unless { req.hdr(authorization) -m found }
    http-request set-var(txn.alg) http_auth_bearer,jwt_header_query('\$.alg')
    http-request set-var(txn.iss) http_auth_bearer,jwt_payload_query('\$.iss')
    http-request set-var(txn.aud) http_auth_bearer,jwt_payload_query('\$.aud')
    http-request set-var(txn.exp) http_auth_bearer,jwt_payload_query('\$.exp','int')
    http-request deny unless { var(txn.alg) -m str RS256 }
    http-request deny unless { var(txn.iss) -m str $issuer }
    http-request deny unless { var(txn.aud) -m str bench }
    http-request deny unless { http_auth_bearer,jwt_verify(txn.alg,"$work/public.pem") -m int 1 }
    http-request set-var(txn.now) date()
    http-request deny if { var(txn.exp),sub(txn.now) -m int lt 0 }
    default_backend up
backend up
    server s1 $UPSTREAM
HAPROXY
    taskset -c "$PROXY_CORE" haproxy -f "$work/haproxy.cfg" -db &
    pids+=($!)
    version=$(haproxy -v | head -1 | awk '{print $3}')
    add "HAProxy $version, plain proxy" "http://127.0.0.1:19031/" $!
    add "HAProxy $version + RS256 jwt_verify" "http://127.0.0.1:19032/" $!
fi

cpu_ticks() { # pid: utime+stime of the process and its children processes
    local total=0 p
    for p in $1 $(pgrep -P "$1" || true); do
        total=$((total + $(awk '{print $14+$15}' "/proc/$p/stat")))
    done
    echo "$total"
}

results="$work/results.tsv"
for round in $(seq 1 "$ROUNDS"); do
    for name in "${names[@]}"; do
        pid=${PIDOF[$name]}
        before=0; [ -n "$pid" ] && before=$(cpu_ticks "$pid")
        out=$(taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
            -H "Authorization: Bearer $token" "${URL[$name]}")
        after=0; [ -n "$pid" ] && after=$(cpu_ticks "$pid")
        if echo "$out" | grep -q "Non-2xx"; then
            echo "$name answered errors:" >&2; echo "$out" >&2; exit 1
        fi
        requests=$(echo "$out" | awk '/requests in/ {print $1}')
        rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
        p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
        p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rps" "$p50" "$p99" "$((after - before))" "$requests" >> "$results"
        echo "round $round: $name: $rps req/s" >&2
    done
done

python3 - "$results" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
from collections import OrderedDict

def ms(text):
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)

rows = OrderedDict()
for line in open(sys.argv[1]):
    name, rps, p50, p99, ticks, requests = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append((float(rps), ms(p50), ms(p99), int(ticks), int(requests)))
clk = int(sys.argv[2])
med = {}
for name, runs in rows.items():
    cpu = [t * 1e6 / clk / r for (_, _, _, t, r) in runs]
    med[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
                 statistics.median(r[2] for r in runs), statistics.median(cpu))
nginx = next((v[0] for k, v in med.items() if k.startswith("nginx")), None)
hajwt = next((v[0] for k, v in med.items() if "jwt_verify" in k), None)
print(f"| target | req/s | p50 ms | p99 ms | proxy CPU µs/req | vs nginx | vs HAProxy+JWT |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for name, (rps, p50, p99, cpu) in med.items():
    cpu_text = "—" if name.startswith("direct") else f"{cpu:.1f}"
    vs_nginx = f"{rps / nginx:.2f}×" if nginx else "—"
    vs_ha = f"{rps / hajwt:.2f}×" if hajwt else "—"
    print(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu_text} | {vs_nginx} | {vs_ha} |")
print(f"\nmedians of {len(next(iter(rows.values())))} interleaved rounds")
PY

[ "${EXTRAS:-1}" = 1 ] || exit 0

if command -v oha >/dev/null; then
    echo
    echo "| at a fixed 5 000 req/s, 64 connections | p50 ms | p99 ms | p50 added over direct |"
    echo "| --- | ---: | ---: | ---: |"
    direct_p50=""
    for name in "${names[@]}"; do
        case "$name" in *"access log"*|*"public route"*) continue ;; esac
        json=$(taskset -c "$LOAD_CORE" oha -z "${DURATION}s" -q 5000 -c 64 --latency-correction --no-tui \
            --output-format json -H "Authorization: Bearer $token" "${URL[$name]}")
        read -r p50 p99 < <(echo "$json" | python3 -c 'import json,sys; p=json.load(sys.stdin)["latencyPercentiles"]; print(p["p50"]*1000, p["p99"]*1000)')
        [ -z "$direct_p50" ] && direct_p50=$p50
        python3 -c "print(f'| $name | {$p50:.3f} | {$p99:.3f} | {$p50 - $direct_p50:+.3f} |')"
    done
else
    echo; echo "(no oha: the fixed-rate latency table needs 'cargo install oha')"
fi

# Memory: a fresh gateway, then 1000 keep-alive connections cycling through
# 10 000 distinct tokens, so the verified-token cache fills up.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
start_jwtgate 19015 warn 10000
mem_pid=$last_pid
wait_for "http://127.0.0.1:19015/"
sleep 1
idle=$(awk '/VmRSS/ {print $2}' "/proc/$mem_pid/status")
cat > "$work/tokens.lua" <<'LUA'
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1] })
end
LUA
TOKENS="$work/tokens" taskset -c "$LOAD_CORE" wrk -t1 -c1000 -d"${DURATION}s" -s "$work/tokens.lua" "http://127.0.0.1:19015/" > "$work/mem-wrk.txt"
loaded=$(awk '/VmRSS/ {print $2}' "/proc/$mem_pid/status")
peak=$(awk '/VmHWM/ {print $2}' "/proc/$mem_pid/status")
lookups=$(curl -fs "http://127.0.0.1:20015/metrics" | awk '/^jwtgate_token_cache_lookups_total/ {sum += $2} END {print sum}')
misses=$(curl -fs "http://127.0.0.1:20015/metrics" | awk '/^jwtgate_token_cache_lookups_total\{result="miss"\}/ {print $2}')
echo
echo "| jwtgate memory | RSS |"
echo "| --- | ---: |"
echo "| idle | $((idle / 1024)) MiB |"
echo "| 1000 connections, 10 000 cached tokens ($misses misses in $lookups lookups) | $((loaded / 1024)) MiB (peak $((peak / 1024)) MiB) |"
