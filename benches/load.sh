#!/usr/bin/env bash
# Load benchmark: the same load through no proxy, nginx and HAProxy (when
# installed) and jwtgate in several modes, in interleaved rounds; then it
# publishes itself into docs/performance.md.
#
#   benches/load.sh                 # 3 rounds of 10 s per target
#   ROUNDS=5 DURATION=20 benches/load.sh
#   ROUNDS=1 DURATION=2 PUBLISH=0 benches/load.sh     # a quick look, docs untouched
#   ALLOCATORS="glibc mimalloc jemalloc" benches/load.sh
#
# Layout (2 cores): each proxy pinned alone on core 0 with one worker;
# wrk -t1 -c64 and the upstream on core 1. The scaling rows (SCALING=1, the
# default) run jwtgate with worker_threads = 2 and nginx with
# worker_processes 2, both allowed on cores 0 and 1; wrk and the upstream stay
# pinned to core 1, so the second proxy worker shares that core with the load
# generator and the upstream. Two cores allow no cleaner layout: the 2-worker
# rows say how much of the second core a proxy wins, not how it scales on
# idle cores. Needs wrk (apt-get install wrk); nginx, haproxy and oha are used
# when installed (apt-get install nginx haproxy; cargo install oha), and the
# output says which rows are missing without them.
# Every target gets the same request, Authorization header included; access
# logs are off everywhere except the row that says otherwise.
# Prints a Markdown table of medians: req/s, p50, p99, and proxy CPU per
# request from /proc (utime+stime of the proxy's processes). Then, unless
# EXTRAS=0: latency at a fixed 5k req/s (oha), jwtgate's memory idle and at
# 1000 keep-alive connections cycling through 10 000 distinct tokens (a full
# verified-token cache), in interleaved rounds, and RSS against the number of
# idle keep-alive connections (IDLE_COUNTS, benches/idle_memory.py) for
# jwtgate and nginx.
#
# Knobs: ROUNDS, DURATION (s), CONNECTIONS, PROXY_CORE, LOAD_CORE as above;
#   FEATURES   cargo features of the jwtgate every row runs (e.g. mimalloc)
#   ALLOCATORS allocators to compare, from glibc (--no-default-features), mimalloc and
#              jemalloc: one build each, a "cache on" row each in the
#              interleaved load rounds, and each one's memory, interleaved
#   SCALING=0  no 2-worker rows;  EXTRAS=0  no latency and memory parts
#   PUBLISH=0  print only; otherwise (the default) the Markdown goes between
#              the marker comments of docs/performance.md, the plots into
#              docs/performance-load.svg and docs/performance-memory.svg
#   NOTE       a sentence for the published block (e.g. the machine was busy)
#   PORTS      loopback ports are taken from PORTS+1 up (admin listeners: the
#              same plus 1000); default 19000
# The block names the commit measured (dirty when files other than the
# published ones differ from it), the date and the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
PROXY_CORE=${PROXY_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
FEATURES=${FEATURES:-}
ALLOCATORS=${ALLOCATORS:-}
SCALING=${SCALING:-1}
EXTRAS=${EXTRAS:-1}
PUBLISH=${PUBLISH:-1}
IDLE_COUNTS=${IDLE_COUNTS:-250 500 1000}
NOTE=${NOTE:-}
PORTS=${PORTS:-19000}

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
for allocator in $ALLOCATORS; do
    case "$allocator" in glibc|mimalloc|jemalloc) ;; *)
        echo "ALLOCATORS: $allocator is none of glibc, mimalloc, jemalloc" >&2; exit 1 ;;
    esac
done

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# What is measured, before anything is built or written: the published files
# themselves do not make the tree dirty.
published=(docs/performance.md docs/performance-load.svg docs/performance-memory.svg)
excluded=()
for file in "${published[@]}"; do excluded+=(":(exclude)$file"); done
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=no
[ -n "$(git status --porcelain -- . "${excluded[@]}" 2>/dev/null)" ] && dirty=yes
{
    echo "commit	$commit"
    echo "dirty	$dirty"
    echo "date	$(date -u +%Y-%m-%d)"
    echo "cores	$(nproc)"
    echo "kernel	$(uname -sr)"
    echo "cpu	$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "rounds	$ROUNDS"
    echo "duration	$DURATION"
    echo "connections	$CONNECTIONS"
    echo "features	$FEATURES"
    echo "allocators	$ALLOCATORS"
    echo "scaling	$SCALING"
    echo "extras	$EXTRAS"
    echo "note	$NOTE"
} > "$work/meta.tsv"
skipped() { echo "skipped	$1" >> "$work/meta.tsv"; echo "($1)" >&2; }

# One binary per allocator (copied out of target/, so that a build started
# meanwhile cannot swap it), then the one every other row runs.
for allocator in $ALLOCATORS; do
    feature=(--no-default-features)
    [ "$allocator" = glibc ] || feature+=(--features "$allocator")
    cargo build --release --quiet --bin jwtgate --example bench_upstream --example bench_token "${feature[@]}"
    cp target/release/jwtgate "$work/jwtgate-$allocator"
done
cargo build --release --quiet --bin jwtgate --example bench_upstream --example bench_token --features "$FEATURES"
cp target/release/jwtgate "$work/jwtgate"

target/release/examples/bench_token "$work" 10000
token=$(cat "$work/token")
issuer="https://bench.jwtgate.local/"

UPSTREAM=127.0.0.1:$((PORTS + 1))
taskset -c "$LOAD_CORE" target/release/examples/bench_upstream "$UPSTREAM" &
pids+=($!)

declare -A URL PIDOF NAME
keys=()

wait_for() { # url
    for _ in $(seq 1 100); do
        curl -fs -o /dev/null -H "Authorization: Bearer $token" "$1" && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    exit 1
}

add() { # key name url pid
    keys+=("$1"); NAME[$1]=$2; URL[$1]=$3; PIDOF[$1]=$4
    wait_for "$3"
}

add direct "direct (no proxy)" "http://$UPSTREAM/" ""

# Starts a jwtgate on PORT (admin on PORT+1000) with CACHE cached tokens, log
# level LEVEL, WORKERS runtime threads, from BINARY, on CPUS; its pid is left
# in $last_pid.
start_jwtgate() { # port level cache [binary] [workers] [cpus] [extra TOML]
    cat > "$work/jwtgate-$1.toml" <<TOML
[server]
listen = "127.0.0.1:$1"
admin_listen = "127.0.0.1:$(($1 + 1000))"
worker_threads = ${5:-1}
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
${7:-}
TOML
    RUST_LOG=$2 taskset -c "${6:-$PROXY_CORE}" "${4:-$work/jwtgate}" run -c "$work/jwtgate-$1.toml" >/dev/null 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
}

jwtgate() { # key name port log-level cache-tokens [path] [binary] [workers] [cpus]
    start_jwtgate "$3" "$4" "$5" "${7:-}" "${8:-}" "${9:-}"
    add "$1" "$2" "http://127.0.0.1:$3/${6:-}" "$last_pid"
}
jwtgate cache_off "jwtgate, cache off (RS256 every request)" $((PORTS + 11)) warn 0
jwtgate cache_on "jwtgate, cache on (repeated token)" $((PORTS + 12)) warn 10000
jwtgate public "jwtgate, public route (no token work)" $((PORTS + 13)) warn 0 public
jwtgate log "jwtgate, cache off, access log on" $((PORTS + 14)) info 0
# Tracing on at ratio 1.0: every request's spans exported over OTLP/HTTP to a
# receiver on the load core that reads and discards them.
python3 - "$((PORTS + 2))" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
sink_pid=$!
pids+=("$sink_pid")
taskset -p -c "$LOAD_CORE" "$sink_pid" >/dev/null
start_jwtgate $((PORTS + 15)) warn 10000 "" "" "" \
    "[tracing]
otlp_endpoint = \"http://127.0.0.1:$((PORTS + 2))\"
sample_ratio = 1.0"
add tracing "jwtgate, cache on, tracing on (OTLP/HTTP, sample_ratio 1.0)" "http://127.0.0.1:$((PORTS + 15))/" "$last_pid"
port=$((PORTS + 41))
for allocator in $ALLOCATORS; do
    jwtgate "alloc_$allocator" "jwtgate, cache on, allocator: $allocator" "$port" warn 10000 "" "$work/jwtgate-$allocator"
    port=$((port + 1))
done
if [ "$SCALING" = 1 ]; then
    jwtgate cache_on_2w "jwtgate, cache on, worker_threads = 2 (cores $PROXY_CORE,$LOAD_CORE)" $((PORTS + 16)) warn 10000 "" "" 2 \
        "$PROXY_CORE,$LOAD_CORE"
fi

start_nginx() { # port workers cpus: pid left in $last_pid
    cat > "$work/nginx-$1.conf" <<NGINX
worker_processes $2;
pid $work/nginx-$1.pid;
error_log $work/nginx-$1-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    upstream backend { server $UPSTREAM; keepalive 64; }
    server {
        listen 127.0.0.1:$1;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
    taskset -c "$3" nginx -c "$work/nginx-$1.conf" -g 'daemon off;' &
    last_pid=$!
    pids+=("$last_pid")
}

if command -v nginx >/dev/null; then
    nginx_version=$(nginx -v 2>&1 | sed 's|.*/||')
    start_nginx $((PORTS + 21)) 1 "$PROXY_CORE"
    add nginx "nginx $nginx_version, plain proxy" "http://127.0.0.1:$((PORTS + 21))/" "$last_pid"
    if [ "$SCALING" = 1 ]; then
        start_nginx $((PORTS + 22)) 2 "$PROXY_CORE,$LOAD_CORE"
        add nginx_2w "nginx $nginx_version, worker_processes 2 (cores $PROXY_CORE,$LOAD_CORE)" "http://127.0.0.1:$((PORTS + 22))/" "$last_pid"
    fi
else
    skipped "the nginx rows (nginx is not installed)"
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
    bind 127.0.0.1:$((PORTS + 31))
    default_backend up
frontend jwt
    bind 127.0.0.1:$((PORTS + 32))
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
    version=$(haproxy -v | awk 'NR == 1 {print $3}'); version=${version%%-*}
    add haproxy "HAProxy $version, plain proxy" "http://127.0.0.1:$((PORTS + 31))/" $!
    add haproxy_jwt "HAProxy $version + RS256 jwt_verify" "http://127.0.0.1:$((PORTS + 32))/" $!
else
    skipped "the HAProxy rows (haproxy is not installed)"
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
    for key in "${keys[@]}"; do
        pid=${PIDOF[$key]}
        before=0; [ -n "$pid" ] && before=$(cpu_ticks "$pid")
        out=$(taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
            -H "Authorization: Bearer $token" "${URL[$key]}")
        after=0; [ -n "$pid" ] && after=$(cpu_ticks "$pid")
        if grep -q "Non-2xx" <<< "$out"; then
            echo "${NAME[$key]} answered errors:" >&2; echo "$out" >&2; exit 1
        fi
        requests=$(echo "$out" | awk '/requests in/ {print $1}')
        rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
        p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
        p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "${NAME[$key]}" "$rps" "$p50" "$p99" "$((after - before))" \
            "$requests" >> "$results"
        echo "round $round: ${NAME[$key]}: $rps req/s" >&2
    done
done

report() { # the measurements outlive a failed report
    python3 benches/report.py "$work" "$(getconf CLK_TCK)" "$@" || {
        cp -r "$work" "$work.kept"
        echo "the report failed; the measurements are in $work.kept (benches/report.py $work.kept $(getconf CLK_TCK))" >&2
        exit 1
    }
}

if [ "$EXTRAS" != 1 ]; then
    skipped "the latency and memory measurements (EXTRAS=0)"
    if [ "$PUBLISH" = 1 ]; then report --publish; else report; fi
    exit 0
fi

if command -v oha >/dev/null; then
    for key in "${keys[@]}"; do
        case "$key" in direct|cache_off|cache_on|nginx|haproxy|haproxy_jwt) ;; *) continue ;; esac
        json=$(taskset -c "$LOAD_CORE" oha -z "${DURATION}s" -q 5000 -c 64 --latency-correction --no-tui \
            --output-format json -H "Authorization: Bearer $token" "${URL[$key]}")
        read -r p50 p99 < <(echo "$json" | python3 -c 'import json,sys; p=json.load(sys.stdin)["latencyPercentiles"]; print(p["p50"]*1000, p["p99"]*1000)')
        printf '%s\t%s\t%s\t%s\n' "$key" "${NAME[$key]}" "$p50" "$p99" >> "$work/latency.tsv"
        echo "at 5000 req/s: ${NAME[$key]}: p50 $p50 ms" >&2
    done
else
    skipped "the fixed-rate latency table (oha is not installed: cargo install oha)"
fi

# Memory: a fresh gateway, then 1000 keep-alive connections cycling through
# 10 000 distinct tokens, so the verified-token cache fills up; one gateway
# per allocator (or the one build) in each round, interleaved.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cat > "$work/tokens.lua" <<'LUA'
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1] })
end
LUA
variants=${ALLOCATORS:-default}
for round in $(seq 1 "$ROUNDS"); do
    port=$((PORTS + 100 + 10 * round))
    for variant in $variants; do
        binary=$work/jwtgate-$variant
        [ "$variant" = default ] && binary=$work/jwtgate
        start_jwtgate "$port" warn 10000 "$binary"
        mem_pid=$last_pid
        wait_for "http://127.0.0.1:$port/"
        sleep 1
        idle=$(awk '/VmRSS/ {print $2}' "/proc/$mem_pid/status")
        TOKENS="$work/tokens" taskset -c "$LOAD_CORE" wrk -t1 -c1000 -d"${DURATION}s" -s "$work/tokens.lua" \
            "http://127.0.0.1:$port/" > "$work/mem-wrk.txt"
        loaded=$(awk '/VmRSS/ {print $2}' "/proc/$mem_pid/status")
        peak=$(awk '/VmHWM/ {print $2}' "/proc/$mem_pid/status")
        # Then the issue's target case: the 10 000 tokens cached, 1000
        # keep-alive connections idle after one request each, settled.
        settled=$(python3 - "$port" "$token" "$mem_pid" <<'PY'
import socket, sys, time
port, token, pid = int(sys.argv[1]), sys.argv[2], sys.argv[3]
time.sleep(3)
held = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET / HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    held.append(s)
time.sleep(3)
print(next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")))
PY
)
        metrics=$(curl -fs "http://127.0.0.1:$((port + 1000))/metrics")
        lookups=$(echo "$metrics" | awk '/^jwtgate_token_cache_lookups_total/ {sum += $2} END {print sum}')
        misses=$(echo "$metrics" | awk '/^jwtgate_token_cache_lookups_total\{result="miss"\}/ {print $2}')
        kill "$mem_pid"; wait "$mem_pid" 2>/dev/null || true
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$idle" "$loaded" "$peak" "$misses" "$lookups" "$settled" >> "$work/memory.tsv"
        echo "memory round $round: $variant: idle $((idle / 1024)) MiB, loaded $((loaded / 1024)) MiB" >&2
        port=$((port + 1))
    done
done

# RSS against idle keep-alive connections: jwtgate (each allocator) and nginx.
idle_args=()
if [ -n "$ALLOCATORS" ]; then
    for allocator in $ALLOCATORS; do idle_args+=(--jwtgate "jwtgate 1 worker, allocator: $allocator=$work/jwtgate-$allocator"); done
else
    idle_args+=(--jwtgate "jwtgate 1 worker, public route=$work/jwtgate")
fi
# shellcheck disable=SC2086 # IDLE_COUNTS is a list of numbers
python3 benches/idle_memory.py --json "$work/idle.json" "${idle_args[@]}" $IDLE_COUNTS >&2

if [ "$PUBLISH" = 1 ]; then report --publish; else report; fi
