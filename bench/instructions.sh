#!/usr/bin/env bash
# User-space instructions per proxied request, Portcullis vs nginx, counted by
# callgrind: a figure that does not move with machine load (wall-clock and CPU
# time on a shared 2-core machine do). Kernel work (the loopback TCP both
# proxies pay for) is not counted. Loopback only; bounded; stops what it starts.
#
#   bench/instructions.sh                  build the fixture, measure both
#   GATEWAY_BIN=path bench/instructions.sh use an already built fixture
#   DURATION=10 bench/instructions.sh      seconds of load per proxy (default 8)
#   KEEP=1 bench/instructions.sh           keep the callgrind dumps (profile with callgrind_annotate)
#
# Each proxy runs under `valgrind --tool=callgrind`; after a warm-up its
# counters are zeroed, wrk sends requests with the 4.9 KB session cookie for
# DURATION seconds over 4 connections, the counters are dumped, and the dump's
# instruction total is divided by the requests wrk completed.
set -euo pipefail

DURATION=${DURATION:-8}
UP_PORT=${UP_PORT:-18180}
NGINX_PORT=${NGINX_PORT:-18181}
GW_PORT=${GW_PORT:-18182}
HOST=127.0.0.1
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
install_tools valgrind:valgrind wrk:wrk nginx:nginx-light
build_fixture

work=$(mktemp -d /tmp/portcullis-instr.XXXXXX)
cleanup() {
    stop_all
    if [ -n "${KEEP:-}" ]; then echo "callgrind dumps kept in $work (callgrind_annotate <file>)" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

wait_port() {
    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    exit 1
}

mkdir -p "$work/up" "$work/px" "$work/html"
printf 'hello from upstream\n' >"$work/html/small"
temp_paths() { echo "client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;"; }
cat >"$work/up/nginx.conf" <<CONF
user root; error_log stderr warn; pid $work/up/nginx.pid; worker_processes 1;
events { worker_connections 1024; }
http { access_log off; $(temp_paths "$work/up") keepalive_requests 1000000;
  server { listen $HOST:$UP_PORT; root $work/html; default_type text/plain; } }
CONF
# The reference under callgrind: one process (no master), as Portcullis is one process.
cat >"$work/px/nginx.conf" <<CONF
user root; error_log stderr warn; pid $work/px/nginx.pid; master_process off; worker_processes 1;
events { worker_connections 1024; }
http { access_log $work/px/access.log; $(temp_paths "$work/px") keepalive_requests 1000000;
  upstream app { server $HOST:$UP_PORT; keepalive 64; }
  server { listen $HOST:$NGINX_PORT;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr; } } }
CONF
"$nginx_bin" -p "$work/up" -c "$work/up/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$UP_PORT"

callgrind() { exec valgrind --tool=callgrind --collect-atstart=yes --callgrind-out-file="$work/$1.%p.out" "${@:2}"; }

callgrind gateway "$gateway_bin" "$HOST:$GW_PORT" "http://$HOST:$UP_PORT/" >"$work/gw.out" 2>"$work/gw.log" &
gw_pid=$!
pids+=("$gw_pid")
for _ in $(seq 1200); do
    grep -q '^COOKIE ' "$work/gw.out" && break
    kill -0 "$gw_pid" 2>/dev/null || { tail -20 "$work/gw.log" >&2; exit 1; }
    sleep 0.1
done
cookie=$(sed -n 's/^COOKIE //p' "$work/gw.out")
[ -n "$cookie" ] || { echo "no session cookie from the fixture" >&2; exit 1; }

callgrind nginx "$nginx_bin" -p "$work/px" -c "$work/px/nginx.conf" -g 'daemon off;' 2>"$work/nginx.log" &
nginx_pid=$!
pids+=("$nginx_pid")
wait_port "$NGINX_PORT"

dumps() { local files=("$work"/*."$1".out*); echo "${#files[@]}"; }

# Instructions per request of the callgrind process $1 behind port $2.
measure() {
    local pid=$1 port=$2 before requests total
    wrk -t1 -c4 -d2s -H "Cookie: $cookie" "http://$HOST:$port/small" >/dev/null # warm-up
    callgrind_control --zero "$pid" >/dev/null
    requests=$(wrk -t2 -c4 -d"${DURATION}s" -H "Cookie: $cookie" "http://$HOST:$port/small" |
        awk '/requests in/ { print $1 }')
    before=$(dumps "$pid")
    callgrind_control --dump "$pid" >/dev/null
    for _ in $(seq 300); do
        [ "$(dumps "$pid")" -gt "$before" ] && break
        sleep 0.1
    done
    local dump
    for dump in "$work"/*."$pid".out*; do :; done # the newest: .out, .out.1, ...
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
    echo "$requests $total"
}

read -r gw_requests gw_total < <(measure "$gw_pid" "$GW_PORT")
read -r ng_requests ng_total < <(measure "$nginx_pid" "$NGINX_PORT")
awk -v gr="$gw_requests" -v gt="$gw_total" -v nr="$ng_requests" -v nt="$ng_total" 'BEGIN {
    printf "| proxy | requests (under callgrind) | user-space instructions per request |\n|---|---|---|\n"
    printf "| nginx proxy_pass | %d | %.0f |\n", nr, nt / nr
    printf "| portcullis (session cookie) | %d | %.0f |\n", gr, gt / gr
    printf "ratio Portcullis/nginx: %.2f\n", (gt / gr) / (nt / nr)
}'
