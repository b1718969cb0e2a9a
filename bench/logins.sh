#!/usr/bin/env bash
# Login storm, loopback only: complete logins per second through the release gateway binary
# (target/release/portcullis, its default configuration plus the required keys) against the development
# provider running in its own process (crates/devkit/examples/devidp.rs), and in the same run the gateway's CPU
# per authenticated request, so a login's cost is given as a multiple of a request's.
#
# A login (bench/login_load.py, CONCURRENCY browsers, each with its own keep-alive connections):
# GET / → 302 to the provider (flow cookie) → the provider's form → POST → 302 to /oauth2/callback → code exchange,
# ID-token verification, sealed session cookie, 302 → GET / with that cookie → 200 from the upstream.
# Each round: LOGINS logins, then wrk -t1 -c4 for DURATION s with the last login's cookie. CPU = Δ(utime+stime) of
# the gateway process (/proc/PID/stat) over each phase. Reports logins/s, CPU µs per login, CPU µs per
# authenticated request and their ratio, per round and as medians; also the gateway's context switches per login
# and per request (all threads, /proc/PID/task/*/status), a count that moves less with machine load than CPU time.
#
#   unshare -n bash -c 'ip link set lo up && bench/logins.sh'        ROUNDS=3 LOGINS=2000 CONCURRENCY=4 DURATION=8
#   CALLGRIND=1 bench/logins.sh    user-space instructions per login and per request instead (valgrind; load-independent)
#   GATEWAY_BIN=path DEVIDP_BIN=path bench/logins.sh   use already built binaries
#   KEEP=1 ...                     keep the work directory (callgrind dumps, logs)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
LOGINS=${LOGINS:-2000}
CONCURRENCY=${CONCURRENCY:-4}
DURATION=${DURATION:-8}
UP_PORT=${UP_PORT:-18280}
IDP_PORT=${IDP_PORT:-18281}
GW_PORT=${GW_PORT:-18282}
HOST=127.0.0.1

# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
install_tools nginx:nginx-light wrk:wrk python3:python3
[ -n "${CALLGRIND:-}" ] && install_tools valgrind:valgrind

gateway_bin=${GATEWAY_BIN:-}
if [ -z "$gateway_bin" ]; then
    echo "building the release gateway (target/release/portcullis)" >&2
    (cd "$repo" && cargo build --release --quiet --locked --bin portcullis)
    gateway_bin=$target/release/portcullis
fi
devidp_bin=${DEVIDP_BIN:-}
if [ -z "$devidp_bin" ]; then
    echo "building the development provider (crates/devkit/examples/devidp.rs)" >&2
    (cd "$repo" && cargo build --release --quiet --locked -p portcullis-devkit --example devidp)
    devidp_bin=$target/release/examples/devidp
fi

work=$(mktemp -d /tmp/portcullis-logins.XXXXXX)
cleanup() {
    stop_all
    if [ -n "${KEEP:-}" ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
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

# --- the upstream (nginx, a small fixed response) -------------------------------------------------------------
mkdir -p "$work/up" "$work/html"
printf 'hello from upstream\n' >"$work/html/index.html"
cat >"$work/up/nginx.conf" <<CONF
user root; error_log stderr warn; pid $work/up/nginx.pid; worker_processes 1;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $work/up; proxy_temp_path $work/up; fastcgi_temp_path $work/up;
  uwsgi_temp_path $work/up; scgi_temp_path $work/up; keepalive_requests 1000000;
  server { listen $HOST:$UP_PORT; root $work/html; default_type text/plain; } }
CONF
"$nginx_bin" -p "$work/up" -c "$work/up/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$UP_PORT"

# --- the development provider, its own process ----------------------------------------------------------------
"$devidp_bin" "$HOST:$IDP_PORT" portcullis-bench "http://$HOST:$GW_PORT/oauth2/callback" >"$work/idp.out" 2>"$work/idp.log" &
idp_pid=$!
pids+=("$idp_pid")
wait_port "$IDP_PORT"

# --- the gateway: the shipped defaults plus what a deployment must set ----------------------------------------
cat >"$work/portcullis.toml" <<CONF
listen = "$HOST:$GW_PORT"
public_url = "http://$HOST:$GW_PORT"
upstream = "http://$HOST:$UP_PORT/"
[oidc]
issuer = "http://$HOST:$IDP_PORT"
client_id = "portcullis-bench"
[session]
secret = "$(head -c 32 /dev/urandom | base64)"
[metrics]
enabled = false
CONF
gateway_cmd=("$gateway_bin" --config "$work/portcullis.toml")
if [ -n "${CALLGRIND:-}" ]; then
    gateway_cmd=(valgrind --tool=callgrind --collect-atstart=yes --callgrind-out-file="$work/gateway.%p.out" "${gateway_cmd[@]}")
fi
"${gateway_cmd[@]}" >"$work/gw.out" 2>"$work/gw.log" &
gw_pid=$!
pids+=("$gw_pid")
for _ in $(seq 1200); do
    curl -sf -o /dev/null "http://$HOST:$GW_PORT/ready" 2>/dev/null && break
    kill -0 "$gw_pid" 2>/dev/null || { tail -20 "$work/gw.log" >&2; exit 1; }
    sleep 0.1
done

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$gw_pid/stat"; }
# Context switches (voluntary + involuntary) of all the gateway's threads so far.
switches() { cat /proc/"$gw_pid"/task/*/status | awk '/ctxt_switches/ { n += $2 } END { print n }'; }

# logins N CONCURRENCY: runs the generator, sets ok, seconds, cookie.
logins() {
    python3 "$repo/bench/login_load.py" "http://$HOST:$GW_PORT" "$1" "$2" >"$work/load.out" 2>"$work/load.err" ||
        { cat "$work/load.out" "$work/load.err" >&2; tail -20 "$work/gw.log" >&2; exit 1; }
    read -r _ ok _ _ _ seconds < <(grep '^LOGINS ' "$work/load.out")
    cookie=$(sed -n 's/^COOKIE //p' "$work/load.out")
}

# wrk_requests: authenticated requests for DURATION s with $cookie; sets requests.
wrk_requests() {
    requests=$(wrk -t1 -c4 -d"${DURATION}s" -H "Cookie: $cookie" "http://$HOST:$GW_PORT/" |
        awk '/requests in/ { print $1 } /Non-2xx/ { print "non-2xx: " $0 > "/dev/stderr"; exit 1 }')
}

if [ -n "${CALLGRIND:-}" ]; then
    CG_LOGINS=${CG_LOGINS:-200}
    dumps() { local files=("$work"/gateway."$gw_pid".out*); echo "${#files[@]}"; }
    dump() {
        local before
        before=$(dumps)
        callgrind_control --dump "$gw_pid" >/dev/null
        for _ in $(seq 300); do
            [ "$(dumps)" -gt "$before" ] && break
            sleep 0.1
        done
        local file
        for file in "$work"/gateway."$gw_pid".out*; do :; done
        awk '/^(summary|totals):/ { print $2; exit }' "$file"
    }
    logins 20 1 # warm-up: the provider connection, caches, allocator
    wrk -t1 -c4 -d2s -H "Cookie: $cookie" "http://$HOST:$GW_PORT/" >/dev/null
    callgrind_control --zero "$gw_pid" >/dev/null 2>&1
    logins "$CG_LOGINS" 1
    login_total=$(dump)
    callgrind_control --zero "$gw_pid" >/dev/null 2>&1
    wrk_requests
    request_total=$(dump)
    awk -v l="$ok" -v lt="$login_total" -v r="$requests" -v rt="$request_total" 'BEGIN {
        printf "| what | count (under callgrind) | user-space instructions each |\n|---|---|---|\n"
        printf "| login (3 gateway requests: start, callback with code exchange, the authenticated one) | %d | %.0f |\n", l, lt / l
        printf "| authenticated request (keep-alive) | %d | %.0f |\n", r, rt / r
        printf "ratio login/request: %.1f\n", (lt / l) / (rt / r)
    }'
    [ -n "${KEEP:-}" ] && echo "profile: callgrind_annotate --inclusive=yes $work/gateway.$gw_pid.out.1" >&2
    exit 0
fi

logins 50 "$CONCURRENCY" # warm-up
echo "round | logins | logins/s | CPU µs/login | requests | req/s | CPU µs/request | login/request | switches/login | switches/request"
results=()
for round in $(seq "$ROUNDS"); do
    before=$(cpu_ticks) switched=$(switches)
    logins "$LOGINS" "$CONCURRENCY"
    login_ticks=$(($(cpu_ticks) - before)) login_switches=$(($(switches) - switched))
    before=$(cpu_ticks) switched=$(switches)
    wrk_requests
    request_ticks=$(($(cpu_ticks) - before)) request_switches=$(($(switches) - switched))
    line=$(awk -v r="$round" -v l="$ok" -v s="$seconds" -v lt="$login_ticks" -v q="$requests" -v qt="$request_ticks" \
        -v hz="$ticks" -v d="$DURATION" -v ls="$login_switches" -v qs="$request_switches" 'BEGIN {
        cl = lt / hz * 1e6 / l; cq = qt / hz * 1e6 / q
        printf "%d | %d | %.0f | %.0f | %d | %.0f | %.1f | %.1f | %.1f | %.2f", r, l, l / s, cl, q, q / d, cq, cl / cq, ls / l, qs / q }')
    echo "$line"
    results+=("$line")
done
printf '%s\n' "${results[@]}" | awk -F' [|] ' '
    { ls[NR] = $3; cl[NR] = $4; cq[NR] = $7; ratio[NR] = $8 }
    function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        n = NR
        printf "medians over %d rounds: %.0f logins/s, %.0f CPU µs per login, %.1f CPU µs per request, login/request %.1f (rounds: %.1f-%.1f)\n",
            n, median(ls, n), median(cl, n), median(cq, n), median(ratio, n), ratio[1], ratio[n]
    }'
