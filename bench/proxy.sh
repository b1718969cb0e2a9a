#!/usr/bin/env bash
# Whole-proxy load benchmark, loopback only: wrk drives, in interleaved rounds,
#   direct     nginx upstream serving a fixed response (the floor)
#   nginx      nginx as a plain proxy_pass reverse proxy with a keep-alive upstream pool (the reference)
#   portcullis the release-built gateway (examples/bench_gateway.rs) with a valid ~4 KB session cookie
# every request carrying the same Cookie header. Variants: small body at 32 connections, 64 KB body at 32
# connections, small body at 200 connections. Reports req/s, p50/p99 latency, CPU time per request of each
# proxy process (utime+stime from /proc/PID/stat) and the Portcullis/nginx ratios. Then latency at a fixed rate
# (oha, RATE requests/s over 32 connections, well below saturation, with latency correction): at saturation the
# p99 measures the CPU scheduler of a machine shared by five busy threads; at a fixed rate it measures the hop.
# Last, the gateway's 100k-session resident memory, start-up time and the release binary size.
#
#   bench/proxy.sh                 ROUNDS=3 DURATION=8 by default (about 4 minutes)
#   ROUNDS=5 DURATION=10 bench/proxy.sh
#   SESSIONS=0 bench/proxy.sh      skip the 100k-session memory measurement
#   RATE=0 bench/proxy.sh          skip the fixed-rate latency rounds (RATE=5000 by default)
#   GATEWAY_BIN=path bench/proxy.sh   use an already built fixture instead of building it
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
SESSIONS=${SESSIONS:-100000}
RATE=${RATE:-5000}
THREADS=${THREADS:-2}
UP_PORT=${UP_PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18081}
GW_PORT=${GW_PORT:-18082}
MEM_PORT=${MEM_PORT:-18083}
HOST=127.0.0.1

# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
install_tools nginx:nginx wrk:wrk python3:python3
[ "$RATE" -gt 0 ] && install_oha
build_fixture

work=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
cleanup() {
    stop_all
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# --- the upstream: small fixed response and a 64 KB one -------------------------------------------------------
mkdir -p "$work/up" "$work/px" "$work/html"
printf 'hello from upstream\n' >"$work/html/small"
head -c 65536 /dev/zero | tr '\0' 'x' >"$work/html/big"
common="user root; error_log stderr warn; pid PIDFILE; worker_rlimit_nofile 8192;
events { worker_connections 4096; }"
cat >"$work/up/nginx.conf" <<EOF
${common//PIDFILE/$work/up/nginx.pid}
worker_processes 1;
http {
    access_log off;
    client_body_temp_path $work/up; proxy_temp_path $work/up; fastcgi_temp_path $work/up;
    uwsgi_temp_path $work/up; scgi_temp_path $work/up;
    keepalive_requests 1000000;
    server {
        listen $HOST:$UP_PORT;
        root $work/html;
        default_type text/plain;
    }
}
EOF
# --- the reference: nginx as a plain reverse proxy ------------------------------------------------------------
cat >"$work/px/nginx.conf" <<EOF
${common//PIDFILE/$work/px/nginx.pid}
worker_processes auto;
http {
    access_log $work/px/access.log;
    client_body_temp_path $work/px; proxy_temp_path $work/px; fastcgi_temp_path $work/px;
    uwsgi_temp_path $work/px; scgi_temp_path $work/px;
    keepalive_requests 1000000;
    upstream app { server $HOST:$UP_PORT; keepalive 256; }
    server {
        listen $HOST:$NGINX_PORT;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
    }
}
EOF
"$nginx_bin" -p "$work/up" -c "$work/up/nginx.conf" -g 'daemon off;' &
pids+=($!)
"$nginx_bin" -p "$work/px" -c "$work/px/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
pids+=("$nginx_pid")

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    exit 1
}
wait_port "$UP_PORT"
wait_port "$NGINX_PORT"

# --- Portcullis with a logged-in session ----------------------------------------------------------------------
"$gateway_bin" "$HOST:$GW_PORT" "http://$HOST:$UP_PORT/" >"$work/gw.out" 2>"$work/gw.log" &
gw_pid=$!
pids+=("$gw_pid")
for _ in $(seq 200); do
    grep -q '^COOKIE ' "$work/gw.out" && break
    kill -0 "$gw_pid" 2>/dev/null || { cat "$work/gw.log" >&2; exit 1; }
    sleep 0.1
done
cookie=$(sed -n 's/^COOKIE //p' "$work/gw.out")
startup_ms=$(sed -n 's/^STARTUP_MS //p' "$work/gw.out")
[ -n "$cookie" ] || { echo "no session cookie" >&2; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "http://$HOST:$GW_PORT/small")
[ "$status" = 200 ] || { echo "gateway answered $status with the session cookie" >&2; exit 1; }
echo "session cookie header: ${#cookie} bytes; start-up to ready: ${startup_ms} ms" >&2

# CPU ticks (utime+stime) of a process and its children threads; for nginx, master + workers.
ticks_of() {
    local total=0 pid
    for pid in "$@"; do
        # Fields 14 and 15 after the ")" that ends the command name.
        local stat
        stat=$(cat "/proc/$pid/stat")
        stat=${stat##*) }
        set -- $stat
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}
nginx_pids() { echo "$nginx_pid" $(pgrep -P "$nginx_pid"); }
hz=$(getconf CLK_TCK)

# to_ms "1.23ms" -> 1.23
to_ms() {
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

results=$work/results.tsv
: >"$results"
run_one() { # variant target port path conns
    local variant=$1 name=$2 port=$3 path=$4 conns=$5 before after out
    local proc=()
    case $name in
        nginx) proc=($(nginx_pids)) ;;
        portcullis) proc=("$gw_pid") ;;
    esac
    [ ${#proc[@]} -gt 0 ] && before=$(ticks_of "${proc[@]}")
    out=$(wrk -t"$THREADS" -c"$conns" -d"${DURATION}s" --latency -H "Cookie: $cookie" "http://$HOST:$port$path")
    [ ${#proc[@]} -gt 0 ] && after=$(ticks_of "${proc[@]}")
    local rps requests p50 p99 errors cpu_us=-
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    errors=$(awk '/Non-2xx|Socket errors/ { print }' <<<"$out" | tr '\n' ' ')
    if [ ${#proc[@]} -gt 0 ]; then
        cpu_us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$name" "$rps" "$p50" "$p99" "$cpu_us" "$errors" >>"$results"
    printf '  %-12s %-11s %10s req/s  p50 %7s ms  p99 %7s ms  cpu %6s us/req %s\n' \
        "$variant" "$name" "$rps" "$p50" "$p99" "$cpu_us" "$errors" >&2
}

echo "load: $(cat /proc/loadavg)" >&2
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for variant in small-c32:/small:32 big64k-c32:/big:32 small-c200:/small:200; do
        IFS=: read -r name path conns <<<"$variant"
        run_one "$name" direct "$UP_PORT" "$path" "$conns"
        run_one "$name" nginx "$NGINX_PORT" "$path" "$conns"
        run_one "$name" portcullis "$GW_PORT" "$path" "$conns"
    done
done
echo "load after: $(cat /proc/loadavg)" >&2

# Medians over rounds, min-max spread, ratios Portcullis/nginx, added p99 over direct.
AWK_SPREAD='
function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function lo(list,   n, a, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
function hi(list,   n, a, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
'
echo
echo "| variant | target | req/s (median, min-max) | p50 ms | p99 ms | CPU us/req |"
echo "|---|---|---|---|---|---|"
awk -F'\t' "$AWK_SPREAD"'
{ k = $1 SUBSEP $2; rps[k] = rps[k] " " $3; p50[k] = p50[k] " " $4; p99[k] = p99[k] " " $5; cpu[k] = cpu[k] " " $6
  if (!($1 in seen)) { seen[$1] = 1; order[++nv] = $1 }
  # Rows come round by round: the nth nginx and nth Portcullis row of a variant ran side by side.
  if ($2 == "nginx") { last_rps[$1] = $3; last_cpu[$1] = $6 }
  if ($2 == "portcullis") { rps_pair[$1] = rps_pair[$1] " " $3 / last_rps[$1]; cpu_pair[$1] = cpu_pair[$1] " " $6 / last_cpu[$1] } }
END {
    split("direct nginx portcullis", names, " ")
    for (v = 1; v <= nv; v++) for (t = 1; t <= 3; t++) {
        k = order[v] SUBSEP names[t]
        printf "| %s | %s | %.0f (%.0f-%.0f) | %.3f | %.3f | %s |\n", order[v], names[t], median(rps[k]), lo(rps[k]), hi(rps[k]), median(p50[k]), median(p99[k]), (names[t] == "direct") ? "-" : sprintf("%.1f", median(cpu[k]))
    }
    print ""
    print "Ratios Portcullis/nginx: of the medians, and per round (each round ran both side by side, so drift cancels): median (min-max)"
    print ""
    print "| variant | req/s: of medians | req/s: per round | CPU/req: of medians | CPU/req: per round | added p99 over direct: nginx, Portcullis (ms) |"
    print "|---|---|---|---|---|---|"
    for (v = 1; v <= nv; v++) {
        d = order[v] SUBSEP "direct"; n = order[v] SUBSEP "nginx"; p = order[v] SUBSEP "portcullis"; w = order[v]
        printf "| %s | %.2f | %.2f (%.2f-%.2f) | %.2f | %.2f (%.2f-%.2f) | %.3f, %.3f |\n", w, median(rps[p]) / median(rps[n]), median(rps_pair[w]), lo(rps_pair[w]), hi(rps_pair[w]), median(cpu[p]) / median(cpu[n]), median(cpu_pair[w]), lo(cpu_pair[w]), hi(cpu_pair[w]), median(p99[n]) - median(p99[d]), median(p99[p]) - median(p99[d])
    }
}' "$results"

# --- latency at a fixed rate ---------------------------------------------------------------------------------
if [ "$RATE" -gt 0 ]; then
    latencies=$work/latency.tsv
    : >"$latencies"
    echo >&2
    echo "latency at $RATE requests/s over 32 connections (oha --latency-correction), $ROUNDS interleaved rounds" >&2
    for round in $(seq "$ROUNDS"); do
        for target_port in direct:$UP_PORT nginx:$NGINX_PORT portcullis:$GW_PORT; do
            "$oha_bin" -z "${DURATION}s" -c 32 -q "$RATE" --latency-correction --no-tui --output-format json \
                -H "Cookie: $cookie" "http://$HOST:${target_port#*:}/small" >"$work/oha.json"
            python3 - "${target_port%%:*}" "$work/oha.json" >>"$latencies" <<'PY'
import json, sys
report = json.load(open(sys.argv[2]))
p = report["latencyPercentiles"]
codes = report.get("statusCodeDistribution", {})
bad = sum(n for code, n in codes.items() if code != "200")
print(f"{sys.argv[1]}\t{report['summary']['requestsPerSec']:.0f}\t{p['p50'] * 1000:.3f}\t{p['p99'] * 1000:.3f}\t{bad}")
PY
            tail -n 1 "$latencies" | awk -F'\t' '{ printf "  %-11s %6s req/s  p50 %s ms  p99 %s ms  non-200 %s\n", $1, $2, $3, $4, $5 }' >&2
        done
    done
    echo
    echo "| target | p50 ms (median) | p99 ms (median, min-max) | added p99 over direct (ms) |"
    echo "|---|---|---|---|"
    awk -F'\t' "$AWK_SPREAD"'
    { p50[$1] = p50[$1] " " $3; p99[$1] = p99[$1] " " $4 }
    END {
        split("direct nginx portcullis", names, " ")
        for (t = 1; t <= 3; t++) {
            n = names[t]
            added = (n == "direct") ? "-" : sprintf("%.3f", median(p99[n]) - median(p99["direct"]))
            printf "| %s | %.3f | %.3f (%.3f-%.3f) | %s |\n", n, median(p50[n]), median(p99[n]), lo(p99[n]), hi(p99[n]), added
        }
    }' "$latencies"
fi

# --- resident memory with many live sessions ------------------------------------------------------------------
if [ "$SESSIONS" -gt 0 ]; then
    echo >&2
    echo "filling the token cache with $SESSIONS sessions (through the gateway's real request path)" >&2
    "$gateway_bin" "$HOST:$MEM_PORT" "http://$HOST:$UP_PORT/" 1500 "$SESSIONS" >"$work/mem.out" 2>/dev/null &
    mem_pid=$!
    pids+=("$mem_pid")
    for _ in $(seq 1800); do
        grep -q '^RSS_AFTER_KB ' "$work/mem.out" && break
        kill -0 "$mem_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo
    grep -E '^(RSS_|CACHE|STARTUP)' "$work/mem.out" || echo "memory measurement did not finish"
fi
echo
echo "start-up to ready (config built -> provider metadata and keys loaded): ${startup_ms} ms"
# Built (or found up to date) here, so the size is never that of a stale binary.
(cd "$repo" && cargo build --release --quiet --locked --bin portcullis) >&2 || echo "building the release binary failed" >&2
echo "release binary: $(stat -c %s "$target/release/portcullis" 2>/dev/null || echo '?') bytes ($target/release/portcullis, $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
