#!/usr/bin/env bash
# The release binary as operators run it, beside the bench fixture, against nginx's plain proxy_pass.
# Loopback only; bounded; stops what it starts.
#
#   portcullis  target/release/portcullis with a minimal TOML (listen, public_url, upstream, the provider's issuer
#               and client id, the session secret): everything else, logging included (text at `info`), is the binary's
#               own default. The session comes from a real login at a provider in its own process: the npm
#               `oauth2-mock-server` (tests/e2e/mock-idp.mjs, RS256), whose ID token carries ID_TOKEN_GROUPS (25)
#               group names, as directory-backed providers send them: a session cookie of about 4.2 KB.
#   fixture     examples/bench_gateway.rs (JSON access log at info, dev provider in-process, its own ~4.9 KB
#               cookie), the figure docs/benchmarks.md section 1 reports.
#   nginx       nginx proxy_pass with a keep-alive upstream pool (2 workers), the reference.
#
# Variants, each with wrk -t1 and -t2 over CONNS connections, in interleaved rounds (nginx, portcullis and fixture
# one after the other in every round, so drift of the machine cancels in the per-round ratios):
#   small    a 20-byte response
#   cookie4k the same with a 4 KB application cookie in the same Cookie header (the gateway strips its own)
#   big64k   a 64 KB response
#   close    `Connection: close` on every request: a new TCP connection (and a first request that opens the
#            session cookie) per request
# CPU per request = delta(utime+stime) of the proxy's process(es) from /proc/PID/stat / requests completed.
#
#   bench/binary.sh                          ROUNDS=3 DURATION=8 (about 10 minutes)
#   VARIANTS="small close" THREADS="2" bench/binary.sh
#   SHIPPED_BIN=path GATEWAY_BIN=path bench/binary.sh    use already built binaries (not PORTCULLIS_*:
#                                           the binary reads those as configuration)
#
# MODE=syscalls instead counts, per request, for nginx, the binary and the fixture with the small and close
# variants (wrk -t2): system calls (`strace -c -f` attached for DURATION seconds; its summary's calls / requests
# completed meanwhile) and context switches (voluntary + involuntary, summed over the process's threads from
# /proc/PID/task/*/status). Counts, not times: they hold on a loaded machine.
#
# MODE=callgrind runs nginx (one process), the binary and the fixture under `valgrind --tool=callgrind` and counts
# user-space instructions per request for the small and close variants (wrk -t2 -c4, as bench/instructions.sh).
# KEEP=1 keeps the dumps for callgrind_annotate.
#
# Ports are fixed: on a shared machine run it in a private network namespace:
#   unshare -n bash -c 'ip link set lo up && bench/binary.sh'
set -euo pipefail

MODE=${MODE:-ratios}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-32}
ID_TOKEN_GROUPS=${ID_TOKEN_GROUPS:-25}
VARIANTS=${VARIANTS:-small cookie4k big64k close}
THREADS=${THREADS:-1 2}
UP_PORT=${UP_PORT:-18280}
NGINX_PORT=${NGINX_PORT:-18281}
GW_PORT=${GW_PORT:-18282}
FIXTURE_PORT=${FIXTURE_PORT:-18283}
HOST=127.0.0.1

# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
install_tools nginx:nginx wrk:wrk curl:curl node:nodejs
build_fixture
portcullis_bin=${SHIPPED_BIN:-}
if [ -z "$portcullis_bin" ]; then
    echo "building the release binary" >&2
    (cd "$repo" && cargo build --release --quiet --locked --bin portcullis)
    portcullis_bin=$target/release/portcullis
fi
[ -d "$repo/tests/e2e/node_modules/oauth2-mock-server" ] || (cd "$repo/tests/e2e" && npm ci --silent)

work=$(mktemp -d /tmp/portcullis-binary.XXXXXX)
cleanup() {
    stop_all
    if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
# Under MODE=callgrind each proxy runs under callgrind, nginx as one process.
wrap=()
nginx_processes="worker_processes auto;"
if [ "$MODE" = callgrind ]; then
    install_tools valgrind:valgrind
    wrap=(valgrind --tool=callgrind --collect-atstart=yes "--callgrind-out-file=$work/callgrind.%p.out")
    nginx_processes="master_process off; worker_processes 1;"
fi
trap cleanup EXIT INT TERM

wait_port() {
    for _ in $(seq 1200); do
        (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    exit 1
}

# --- upstream (small and 64 KB files) and nginx as the reference proxy, as bench/proxy.sh sets them up ----------
mkdir -p "$work/up" "$work/px" "$work/html"
printf 'hello from upstream\n' >"$work/html/small"
head -c 65536 /dev/zero | tr '\0' 'x' >"$work/html/big"
temp_paths() { echo "client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;"; }
cat >"$work/up/nginx.conf" <<EOF
user root; error_log stderr warn; pid $work/up/nginx.pid; worker_rlimit_nofile 8192; worker_processes 1;
events { worker_connections 4096; }
http { access_log off; $(temp_paths "$work/up") keepalive_requests 1000000;
  # The cookie4k variant's 4 KB application cookie reaches the upstream through both proxies.
  large_client_header_buffers 4 16k;
  server { listen $HOST:$UP_PORT; root $work/html; default_type text/plain; } }
EOF
cat >"$work/px/nginx.conf" <<EOF
user root; error_log stderr warn; pid $work/px/nginx.pid; worker_rlimit_nofile 8192; $nginx_processes
events { worker_connections 4096; }
http { access_log $work/px/access.log; $(temp_paths "$work/px") keepalive_requests 1000000;
  large_client_header_buffers 4 16k;
  upstream app { server $HOST:$UP_PORT; keepalive 256; }
  server { listen $HOST:$NGINX_PORT;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr; } } }
EOF
"$nginx_bin" -p "$work/up" -c "$work/up/nginx.conf" -g 'daemon off;' &
pids+=($!)
"${wrap[@]}" "$nginx_bin" -p "$work/px" -c "$work/px/nginx.conf" -g 'daemon off;' 2>"$work/px.log" &
nginx_pid=$!
pids+=("$nginx_pid")
wait_port "$UP_PORT"
wait_port "$NGINX_PORT"

# --- the provider, in its own process ---------------------------------------------------------------------------
client_id=portcullis-bench
node "$repo/tests/e2e/mock-idp.mjs" --client-id "$client_id" --groups "$ID_TOKEN_GROUPS" </dev/null >"$work/idp.out" 2>"$work/idp.log" &
idp_pid=$!
pids+=("$idp_pid")
for _ in $(seq 300); do
    grep -q '^MOCK_IDP_ISSUER=' "$work/idp.out" && break
    kill -0 "$idp_pid" 2>/dev/null || { cat "$work/idp.log" >&2; exit 1; }
    sleep 0.1
done
issuer=$(sed -n 's/^MOCK_IDP_ISSUER=//p' "$work/idp.out")
[ -n "$issuer" ] || { echo "the provider did not start" >&2; exit 1; }

# --- the binary, configured with only what is required ----------------------------------------------------------
cat >"$work/portcullis.toml" <<EOF
listen = "$HOST:$GW_PORT"
public_url = "http://$HOST:$GW_PORT"
upstream = "http://$HOST:$UP_PORT/"
[oidc]
issuer = "$issuer"
client_id = "$client_id"
[session]
secret = "$("$portcullis_bin" secret)"
EOF
"${wrap[@]}" "$portcullis_bin" --config "$work/portcullis.toml" run </dev/null >/dev/null 2>"$work/gw.log" &
gw_pid=$!
pids+=("$gw_pid")
for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$HOST:$GW_PORT/ready")" = 200 ] && break
    kill -0 "$gw_pid" 2>/dev/null || { cat "$work/gw.log" >&2; exit 1; }
    sleep 0.1
done

# A real login, as a browser does it: protected page -> provider (approves at once) -> callback -> the page.
status=$(curl -s -o /dev/null -w '%{http_code}' -L --max-redirs 5 -c "$work/jar" -b "$work/jar" \
    -H 'Accept: text/html' "http://$HOST:$GW_PORT/small")
[ "$status" = 200 ] || { echo "the login ended with $status" >&2; cat "$work/gw.log" >&2; exit 1; }
# The gateway's session cookie(s) from curl's jar (HttpOnly lines start with #HttpOnly_), not the login's flow cookie.
cookie=$(awk -F'\t' '($1 !~ /^#/ || $1 ~ /^#HttpOnly_/) && NF == 7 && $6 ~ /^_portcullis/ && $6 !~ /_flow_/ {
    printf "%s%s=%s", (n++ ? "; " : ""), $6, $7 }' "$work/jar")
[ -n "$cookie" ] || { echo "no session cookie after the login" >&2; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "http://$HOST:$GW_PORT/small")
[ "$status" = 200 ] || { echo "the binary answered $status with the session cookie" >&2; exit 1; }

# --- the fixture ------------------------------------------------------------------------------------------------
"${wrap[@]}" "$gateway_bin" "$HOST:$FIXTURE_PORT" "http://$HOST:$UP_PORT/" >"$work/fx.out" 2>"$work/fx.log" &
fx_pid=$!
pids+=("$fx_pid")
for _ in $(seq 300); do
    grep -q '^COOKIE ' "$work/fx.out" && break
    kill -0 "$fx_pid" 2>/dev/null || { cat "$work/fx.log" >&2; exit 1; }
    sleep 0.1
done
fixture_cookie=$(sed -n 's/^COOKIE //p' "$work/fx.out")
[ -n "$fixture_cookie" ] || { echo "no session cookie from the fixture" >&2; exit 1; }
app_cookie="app_prefs=$(head -c 4096 /dev/zero | tr '\0' 'a')"
echo "session Cookie header: binary ${#cookie} bytes (login at $issuer, $ID_TOKEN_GROUPS groups), fixture ${#fixture_cookie}" >&2

ticks_of() { # CPU ticks (utime+stime) of processes, their threads included
    local total=0 pid stat
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat")
        stat=${stat##*) }
        # shellcheck disable=SC2086
        set -- $stat
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}
hz=$(getconf CLK_TCK)

target_of() { # name -> "port pids..."
    case $1 in
        nginx) echo "$NGINX_PORT" "$nginx_pid" $(pgrep -P "$nginx_pid") ;;
        portcullis) echo "$GW_PORT" "$gw_pid" ;;
        fixture) echo "$FIXTURE_PORT" "$fx_pid" ;;
    esac
}
switches_of() { # context switches (voluntary + involuntary) of every thread of the processes
    local pid
    for pid in "$@"; do cat /proc/"$pid"/task/*/status; done | awk '/ctxt_switches:/ { n += $2 } END { print n }'
}
if [ "$MODE" = callgrind ]; then
    dumps() { local files=("$work"/callgrind."$1".out*); echo "${#files[@]}"; }
    echo "| target | variant | requests (under callgrind) | user-space instructions / request |"
    echo "|---|---|---|---|"
    for variant in small close; do
        for name in nginx portcullis fixture; do
            read -r port proc_pids <<<"$(target_of "$name")"
            read -r pid _ <<<"$proc_pids"
            session=$cookie
            [ "$name" = fixture ] && session=$fixture_cookie
            extra=()
            [ "$variant" = close ] && extra=(-H 'Connection: close')
            wrk -t1 -c4 -d2s -H "Cookie: $session" "${extra[@]}" "http://$HOST:$port/small" >/dev/null # warm-up
            callgrind_control --zero "$pid" >/dev/null
            requests=$(wrk -t2 -c4 -d"${DURATION}s" -H "Cookie: $session" "${extra[@]}" "http://$HOST:$port/small" |
                awk '/requests in/ { print $1 }')
            before=$(dumps "$pid")
            callgrind_control --dump "$pid" >/dev/null
            for _ in $(seq 300); do
                [ "$(dumps "$pid")" -gt "$before" ] && break
                sleep 0.1
            done
            for dump in "$work"/callgrind."$pid".out*; do :; done # the newest
            total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
            awk -v t="$name" -v v="$variant" -v n="$requests" -v i="$total" -v d="${dump##*/}" \
                'BEGIN { printf "| %s | %s | %d | %.0f |\n", t, v, n, i / n }'
            [ -n "${KEEP:-}" ] && echo "  ($name $variant: $dump)" >&2
        done
    done
    exit 0
fi
if [ "$MODE" = syscalls ]; then
    install_tools strace:strace
    echo "| target | variant | requests | system calls / request | context switches / request | top calls / request |"
    echo "|---|---|---|---|---|---|"
    for variant in small close; do
        for name in nginx portcullis fixture; do
            read -r port proc_pids <<<"$(target_of "$name")"
            read -ra proc <<<"$proc_pids"
            session=$cookie
            [ "$name" = fixture ] && session=$fixture_cookie
            extra=()
            [ "$variant" = close ] && extra=(-H 'Connection: close')
            before=$(switches_of "${proc[@]}")
            requests=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" -H "Cookie: $session" "${extra[@]}" "http://$HOST:$port/small" |
                awk '/requests in/ { print $1 }')
            after=$(switches_of "${proc[@]}")
            strace_args=()
            for pid in "${proc[@]}"; do strace_args+=(-p "$pid"); done
            strace -c -S calls -f -q -o "$work/strace.txt" "${strace_args[@]}" &
            strace_pid=$!
            sleep 1 # strace attaches to every thread; the count starts when it has
            traced=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" -H "Cookie: $session" "${extra[@]}" "http://$HOST:$port/small" |
                awk '/requests in/ { print $1 }')
            kill -INT "$strace_pid"
            wait "$strace_pid" || true
            awk -v n="$traced" -v r="$requests" -v s=$((after - before)) -v t="$name" -v v="$variant" '
                $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { calls[$NF] = $4; order[++k] = $NF }
                $NF == "total" { total = $4 }
                END {
                    top = ""
                    for (i = 1; i <= k && i <= 10; i++) top = top sprintf("%s %.2f, ", order[i], calls[order[i]] / n)
                    printf "| %s | %s | %d (%d traced) | %.2f | %.2f | %s |\n", t, v, r, n, total / n, s / r, top
                }' "$work/strace.txt"
        done
    done
    exit 0
fi

results=$work/results.tsv
: >"$results"
run_one() { # variant threads target
    local variant=$1 threads=$2 name=$3 port session path=/small before after out proc=()
    local extra=()
    case $name in
        nginx) port=$NGINX_PORT session=$cookie proc=("$nginx_pid" $(pgrep -P "$nginx_pid")) ;;
        portcullis) port=$GW_PORT session=$cookie proc=("$gw_pid") ;;
        fixture) port=$FIXTURE_PORT session=$fixture_cookie proc=("$fx_pid") ;;
    esac
    case $variant in
        cookie4k) session="$session; $app_cookie" ;;
        big64k) path=/big ;;
        close) extra=(-H 'Connection: close') ;;
    esac
    before=$(ticks_of "${proc[@]}")
    out=$(wrk -t"$threads" -c"$CONNS" -d"${DURATION}s" -H "Cookie: $session" "${extra[@]}" "http://$HOST:$port$path")
    after=$(ticks_of "${proc[@]}")
    local rps requests errors cpu_us
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/ { print }' <<<"$out" | tr '\n' ' ')
    cpu_us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    printf '%s\t%s\t%s\t%s\t%s\n' "$variant-t$threads" "$name" "$rps" "$cpu_us" "$errors" >>"$results"
    printf '  %-12s %-11s %10s req/s  cpu %6s us/req %s\n' "$variant-t$threads" "$name" "$rps" "$cpu_us" "$errors" >&2
}

echo "load: $(cat /proc/loadavg)" >&2
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for variant in $VARIANTS; do
        for threads in $THREADS; do
            for name in nginx portcullis fixture; do
                run_one "$variant" "$threads" "$name"
            done
        done
    done
done
echo "load after: $(cat /proc/loadavg)" >&2

echo
echo "Ratios to nginx from one interleaved run of $ROUNDS rounds x ${DURATION}s, $CONNS connections: median of the"
echo "per-round ratios (min-max); req/s and CPU us/req are medians over the rounds."
echo
echo "| variant | nginx req/s | nginx CPU us/req | binary: x req/s | binary: x CPU/req | fixture: x req/s | fixture: x CPU/req |"
echo "|---|---|---|---|---|---|---|"
awk -F'\t' '
function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function lo(list,   n, a, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
function hi(list,   n, a, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
function cell(list) { return sprintf("%.2f (%.2f-%.2f)", median(list), lo(list), hi(list)) }
{
    if (!($1 in seen)) { seen[$1] = 1; order[++nv] = $1 }
    # Rows come round by round: a round'"'"'s nginx row precedes its Portcullis and fixture rows.
    if ($2 == "nginx") { n_rps[$1] = n_rps[$1] " " $3; n_cpu[$1] = n_cpu[$1] " " $4; last_rps = $3; last_cpu = $4 }
    else { rps[$1, $2] = rps[$1, $2] " " $3 / last_rps; cpu[$1, $2] = cpu[$1, $2] " " $4 / last_cpu }
}
END {
    for (v = 1; v <= nv; v++) {
        w = order[v]
        printf "| %s | %.0f | %.1f | %s | %s | %s | %s |\n", w, median(n_rps[w]), median(n_cpu[w]),
            cell(rps[w, "portcullis"]), cell(cpu[w, "portcullis"]), cell(rps[w, "fixture"]), cell(cpu[w, "fixture"])
    }
}' "$results"
echo
echo "binary: $portcullis_bin ($(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo 'no git')); warnings it logged: $(grep -c WARN "$work/gw.log" || true)"
