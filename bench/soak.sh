#!/usr/bin/env bash
# Endurance soak of the release binary (issue 18, item 6): target/release/portcullis with a minimal configuration
# (only the required keys; everything else its defaults: log level info, metrics on their own listener), an nginx
# upstream serving a 20-byte file, and the provider in its own process (tests/e2e/mock-idp.mjs, oauth2-mock-server,
# with --token-ttl so access tokens live TOKEN_TTL seconds and every busy session refreshes every few seconds).
# bench/soak_load.py drives a steady, moderate, rate-limited mix and checks every response:
#   - SESSIONS logged-in sessions, one keep-alive connection each, RATE authenticated GETs per second in all,
#     honouring Set-Cookie as a browser does (so refreshes re-seal their cookies); their logins are spread over
#     the first TOKEN_TTL seconds, so their refreshes are too;
#   - one churn loop, a new connection per cycle, every CHURN_INTERVAL seconds: a login (navigation -> 302 ->
#     provider authorize -> callback -> the page), a few authenticated requests, a sign-out, and the signed-out
#     cookie refused (401, expected);
# samples every SAMPLE_SECONDS into a CSV (elapsed, the gateway's VmRSS and open fds, its CPU, requests, logins and
# refreshes from /metrics, sign-outs, errors, the fds by kind), and ends with the verdict: after the warm-up (the
# first WARMUP_PERCENT of the run), RSS within +-5 % of its post-warm-up median at every sample, the fds that are not
# connections too, each connection pool no larger than the load's concurrency and no socket lingering in CLOSE_WAIT
# (the connections themselves follow the load: see verdict() in bench/soak_load.py), and zero errors; the exit
# status is non-zero otherwise.
# bench/plot_soak.py draws the CSV.
#
#   bench/soak.sh                 20 minutes (SOAK_MINUTES=20), a sample every 10 s
#   SOAK_MINUTES=60 bench/soak.sh one hour
#   bench/soak.sh --short         2 minutes, a sample every 2 s: to try the machinery. Its verdict is expected to
#                                 fail on RSS: the gateway's RSS still rises for its first 2-3 minutes (warm-up)
#   OUT=dir bench/soak.sh         where the CSV, the summary and the logs go (default target/soak)
#
# Fixed ports (18180-18183): it runs itself in a private network namespace (`unshare -n`, loopback only) so that
# parallel runs never collide; SOAK_NETNS=0 runs it in the current one. Needs root for that, nginx (installed from
# Debian when missing), node with tests/e2e/node_modules (tests/run-all.sh --deps-only) and python3. Builds the
# release binary unless GATEWAY_BIN names one.
set -euo pipefail

if [ "${1:-}" = --short ]; then
    SOAK_MINUTES=${SOAK_MINUTES:-2}
    SAMPLE_SECONDS=${SAMPLE_SECONDS:-2}
fi
if [ "${SOAK_NETNS:-1}" = 1 ]; then
    exec unshare -n env SOAK_NETNS=inside SOAK_MINUTES="${SOAK_MINUTES:-20}" SAMPLE_SECONDS="${SAMPLE_SECONDS:-10}" \
        bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi

SOAK_MINUTES=${SOAK_MINUTES:-20}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-10}
WARMUP_PERCENT=${WARMUP_PERCENT:-20}
SESSIONS=${SESSIONS:-16}
RATE=${RATE:-100}
CHURN_INTERVAL=${CHURN_INTERVAL:-1}
TOKEN_TTL=${TOKEN_TTL:-20}
UP_PORT=18180
GW_PORT=18181
METRICS_PORT=18182
IDP_PORT=18183
HOST=127.0.0.1

# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
install_tools nginx:nginx python3:python3 node:nodejs
out=${OUT:-$target/soak}
mkdir -p "$out"
gateway_bin=${GATEWAY_BIN:-}
if [ -z "$gateway_bin" ]; then
    echo "building the release binary" >&2
    (cd "$repo" && cargo build --release --quiet --locked --bin portcullis)
    gateway_bin=$target/release/portcullis
fi
[ -d "$repo/tests/e2e/node_modules/oauth2-mock-server" ] || (cd "$repo/tests/e2e" && npm ci --no-audit --no-fund)

work=$(mktemp -d /tmp/portcullis-soak.XXXXXX)
cleanup() {
    stop_all
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

wait_port() {
    for _ in $(seq 150); do
        (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    exit 1
}

# --- the upstream --------------------------------------------------------------------------------------------
mkdir -p "$work/up" "$work/html"
printf 'hello from upstream\n' >"$work/html/small"
printf 'hello from upstream\n' >"$work/html/index.html"
cat >"$work/up/nginx.conf" <<EOF
user root; error_log stderr warn; pid $work/up/nginx.pid; worker_rlimit_nofile 8192;
events { worker_connections 4096; }
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
"$nginx_bin" -p "$work/up" -c "$work/up/nginx.conf" -g 'daemon off;' 2>"$out/nginx.log" &
pids+=($!)

# --- the provider, in its own process ------------------------------------------------------------------------
node "$repo/tests/e2e/mock-idp.mjs" --port "$IDP_PORT" --client-id portcullis --token-ttl "$TOKEN_TTL" \
    </dev/null >"$work/idp.out" 2>"$out/idp.log" &
pids+=($!)
wait_port "$UP_PORT"
wait_port "$IDP_PORT"

# --- the gateway: only the required keys ---------------------------------------------------------------------
cat >"$work/portcullis.toml" <<EOF
listen = "$HOST:$GW_PORT"
public_url = "http://$HOST:$GW_PORT"
upstream = "http://$HOST:$UP_PORT"

[oidc]
issuer = "http://$HOST:$IDP_PORT"
client_id = "portcullis"

[metrics]
listen = "$HOST:$METRICS_PORT"
EOF
# The session key only in the environment, as config/portcullis.toml recommends.
PORTCULLIS_SESSION__SECRET=$("$gateway_bin" secret) \
    "$gateway_bin" --config "$work/portcullis.toml" 2>"$out/gateway.log" &
gw_pid=$!
pids+=("$gw_pid")
wait_port "$GW_PORT"
wait_port "$METRICS_PORT"

{
    echo "binary: $gateway_bin ($(stat -c %s "$gateway_bin") bytes, modified $(date -u -r "$gateway_bin" '+%Y-%m-%d %H:%M UTC'));" \
        "repository at $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo 'no git')"
    echo "machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1), $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "soak: $SOAK_MINUTES min, sample every $SAMPLE_SECONDS s, warm-up $WARMUP_PERCENT %, $SESSIONS sessions at $RATE req/s," \
        "a login + sign-out cycle every $CHURN_INTERVAL s, access tokens of $TOKEN_TTL s"
} | tee "$out/summary.txt" >&2

status=0
python3 "$repo/bench/soak_load.py" \
    --gateway "http://$HOST:$GW_PORT" --metrics "http://$HOST:$METRICS_PORT/metrics" --pid "$gw_pid" \
    --minutes "$SOAK_MINUTES" --sample-seconds "$SAMPLE_SECONDS" --warmup-percent "$WARMUP_PERCENT" \
    --sessions "$SESSIONS" --rate "$RATE" --churn-interval "$CHURN_INTERVAL" --stagger-seconds "$TOKEN_TTL" \
    --upstream-port "$UP_PORT" --idp-port "$IDP_PORT" --csv "$out/soak.csv" | tee -a "$out/summary.txt" || status=$?
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.txt" >&2
kill -0 "$gw_pid" 2>/dev/null || { echo "the gateway is not running any more" >&2; status=1; }
echo "CSV: $out/soak.csv; summary: $out/summary.txt; plot: python3 bench/plot_soak.py $out/soak.csv OUT.png" >&2
exit "$status"
