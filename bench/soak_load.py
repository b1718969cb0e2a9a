#!/usr/bin/env python3
"""Load, sampling and verdict of the endurance soak; bench/soak.sh starts the processes and runs this.

Standard library only. Every response is checked against what a browser expects at that step; anything else
(another status, a wrong body or redirect target, a connection error or a 10 s timeout) is an error, counted
and its first occurrences printed. Requests are paced (a fixed interval per session, never a catch-up burst), so the
load stays moderate whatever the machine does. Writes one CSV row every --sample-seconds:
elapsed_s, rss_kb (the gateway's VmRSS), fds (entries of /proc/PID/fd), cpu_percent (the gateway's utime+stime
over the interval, percent of one core), requests (portcullis_requests_total, all routes), logins and refreshes
(portcullis_logins_total{stage="succeeded"}, portcullis_token_refreshes_total{result="refreshed"}), signouts and
errors (counted here), then the fds by kind (process_sample): client_conns, upstream_conns, idp_conns,
close_wait, other_fds. Exit status 0 only when the verdict holds (see verdict()).
"""

import argparse
import csv
import http.client
import os
import re
import statistics
import sys
import threading
import time
import urllib.parse

BODY = b"hello from upstream\n"
TIMEOUT_S = 10
MAX_REDIRECTS = 6
ERROR_SAMPLES = 10
FLAT_BAND = 0.05
NAVIGATION = {"accept": "text/html,application/xhtml+xml", "sec-fetch-mode": "navigate", "sec-fetch-site": "none"}
API = {"accept": "application/json"}


class Counters:
    """Client-side counts, shared by the load threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.values = {"requests": 0, "logins": 0, "signouts": 0, "refused_after_signout": 0, "errors": 0,
                       "reconnects": 0}
        self.samples = []

    def add(self, name, n=1):
        with self.lock:
            self.values[name] += n

    def error(self, what):
        with self.lock:
            self.values["errors"] += 1
            if len(self.samples) < ERROR_SAMPLES:
                self.samples.append(f"{time.strftime('%H:%M:%S')} {what}")
                print(f"error: {what}", file=sys.stderr, flush=True)

    def get(self, name):
        with self.lock:
            return self.values[name]


class Unexpected(Exception):
    """A response a browser at this step would not get from a working gateway."""


class Browser:
    """One user agent: a cookie jar for the gateway and one keep-alive connection per origin."""

    def __init__(self, gateway, counters):
        self.gateway = urllib.parse.urlsplit(gateway)
        self.counters = counters
        self.cookies = {}
        self.connections = {}

    def close(self):
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()

    def cookie_header(self):
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def store_cookies(self, response):
        for line in response.headers.get_all("set-cookie") or []:
            pair, _, attributes = line.partition(";")
            name, _, value = pair.strip().partition("=")
            attributes = attributes.lower()
            if "max-age=0" in attributes or "1970" in attributes or value == "":
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def request(self, url, headers, send_cookies=True):
        """GET url; returns (status, headers, body). Retries once on a fresh connection when a reused
        keep-alive connection turns out closed before answering (as browsers do), counting it."""
        parts = urllib.parse.urlsplit(url)
        origin = (parts.hostname, parts.port)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        to_gateway = origin == (self.gateway.hostname, self.gateway.port)
        all_headers = dict(headers)
        if to_gateway and send_cookies and self.cookies:
            all_headers["cookie"] = self.cookie_header()
        for attempt in range(2):
            reused = origin in self.connections
            connection = self.connections.get(origin) or http.client.HTTPConnection(*origin, timeout=TIMEOUT_S)
            self.connections[origin] = connection
            try:
                connection.request("GET", path, headers=all_headers)
                response = connection.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                connection.close()
                del self.connections[origin]
                if reused and attempt == 0:
                    self.counters.add("reconnects")
                    continue
                raise Unexpected(f"GET {parts.path}: {type(error).__name__}") from None
            except OSError as error:
                connection.close()
                del self.connections[origin]
                raise Unexpected(f"GET {parts.path}: {type(error).__name__} {error}") from None
            if response.getheader("connection", "").lower() == "close":
                connection.close()
                del self.connections[origin]
            if to_gateway:
                self.counters.add("requests")
                self.store_cookies(response)
            return response.status, response.headers, body
        raise Unexpected(f"GET {parts.path}: unreachable")

    def page(self, path, headers):
        """An authenticated GET through the gateway that must reach the upstream."""
        status, _, body = self.request(self.url(path), headers)
        if status != 200 or body != BODY:
            raise Unexpected(f"GET {path}: {status} (expected 200 from the upstream)")

    def url(self, path):
        return f"{self.gateway.scheme}://{self.gateway.netloc}{path}"

    def login(self, path):
        """A navigation without a session: 302 to the provider, its authorize (auto-approved) 302 to the
        callback, the callback's 302 back to the page, the page."""
        url = self.url(path)
        for _ in range(MAX_REDIRECTS):
            status, headers, body = self.request(url, NAVIGATION)
            if status == 200:
                if body != BODY or urllib.parse.urlsplit(url).path != path.partition("?")[0]:
                    raise Unexpected(f"login ended at {urllib.parse.urlsplit(url).path} with a 200 not from upstream")
                self.counters.add("logins")
                return
            if status not in (302, 303) or not headers.get("location"):
                raise Unexpected(f"login step {urllib.parse.urlsplit(url).path}: {status}")
            url = urllib.parse.urljoin(url, headers["location"])
        raise Unexpected("login: more than 6 redirects")

    def sign_out(self):
        """The user's own sign-out navigation (Fetch Metadata same-origin): 302, the session cookie cleared;
        the cookie the browser held until then is refused afterwards (401 to an API request)."""
        before = self.cookie_header()
        status, headers, _ = self.request(self.url("/oauth2/sign_out"), dict(NAVIGATION, **{"sec-fetch-site": "same-origin"}))
        if status != 302 or not headers.get("location"):
            raise Unexpected(f"sign-out: {status}")
        if any(name.startswith("_portcullis") for name in self.cookies):
            raise Unexpected("sign-out left a session cookie in the jar")
        self.counters.add("signouts")
        status, _, _ = self.request(self.url("/small"), dict(API, cookie=before), send_cookies=False)
        if status != 401:
            raise Unexpected(f"the signed-out cookie got {status}, not 401")
        self.counters.add("refused_after_signout")


def paced(interval, stop, action):
    """Calls action() every `interval` seconds until stop is set; a late call moves the schedule, no burst."""
    next_at = time.monotonic()
    while not stop.is_set():
        action()
        next_at += interval
        now = time.monotonic()
        if now - next_at > 1.0:
            next_at = now
        stop.wait(max(0.0, next_at - now))


def steady_session(index, args, counters, stop):
    """A logged-in user on one keep-alive connection, paced at rate/sessions requests per second. Refreshes
    happen inside these requests as the short-lived access tokens near expiry. Session i logs in
    i/sessions of --stagger-seconds after the first, so that their refreshes do not all fall in the same second
    (users do not all sign in at once)."""
    browser = Browser(args.gateway, counters)
    if stop.wait(index * args.stagger_seconds / args.sessions):
        return

    def step():
        try:
            if not any(name.startswith("_portcullis") for name in browser.cookies):
                browser.login(f"/small?session={index}")
            else:
                browser.page("/small", {"accept": "*/*"})
        except Unexpected as error:
            counters.error(f"session {index}: {error}")
            browser.close()

    paced(args.sessions / args.rate, stop, step)
    browser.close()


def churn(args, counters, stop):
    """A new browser each cycle: login, three authenticated requests, sign-out, the old cookie refused."""

    def cycle():
        browser = Browser(args.gateway, counters)
        try:
            browser.login("/small?churn=1")
            for _ in range(3):
                browser.page("/small", {"accept": "*/*"})
            browser.sign_out()
        except Unexpected as error:
            counters.error(f"churn: {error}")
        finally:
            browser.close()

    paced(args.churn_interval, stop, cycle)


METRIC_LINE = re.compile(r"^(portcullis_[a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$")


def scrape(url):
    """Sums of the counters the CSV needs, from the gateway's /metrics."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        text = response.read().decode()
        if response.status != 200:
            raise Unexpected(f"/metrics: {response.status}")
    finally:
        connection.close()
    totals = {"requests": 0.0, "logins": 0.0, "refreshes": 0.0, "refresh_failures": 0.0}
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if not match:
            continue
        name, labels, value = match.group(1), match.group(2) or "", float(match.group(3))
        if name == "portcullis_requests_total":
            totals["requests"] += value
        elif name == "portcullis_logins_total" and 'stage="succeeded"' in labels:
            totals["logins"] += value
        elif name == "portcullis_token_refreshes_total":
            totals["refreshes" if 'result="refreshed"' in labels else "refresh_failures"] += value
    return totals


TCP_ESTABLISHED, TCP_CLOSE_WAIT, TCP_LISTEN = "01", "08", "0A"


def tcp_sockets(pid):
    """inode -> (local port, remote port, state) of the TCP sockets in the process's network namespace."""
    sockets = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as source:
                next(source)
                for line in source:
                    fields = line.split()
                    local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                    sockets[inode] = (int(local.rpartition(":")[2], 16), int(remote.rpartition(":")[2], 16), state)
        except FileNotFoundError:
            pass
    return sockets


def process_sample(pid, ports):
    """VmRSS (KB), CPU ticks, and the open fds: all of them, and by kind: client connections (to the gateway or
    metrics port), pool connections to the upstream and to the provider, sockets in CLOSE_WAIT (peer gone, not
    closed here: what a leaked connection looks like), and the rest (listeners, epoll, eventfd, pipes, files)."""
    with open(f"/proc/{pid}/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])
    sockets = tcp_sockets(pid)
    counts = {"fds": 0, "client_conns": 0, "upstream_conns": 0, "idp_conns": 0, "close_wait": 0, "other_fds": 0}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed between the listing and the read
        counts["fds"] += 1
        inode = link[len("socket:["):-1] if link.startswith("socket:[") else None
        local, remote, state = sockets.get(inode, (0, 0, ""))
        if state == TCP_CLOSE_WAIT:
            counts["close_wait"] += 1
        if state != TCP_LISTEN and local in ports["served"]:
            counts["client_conns"] += 1
        elif state != TCP_LISTEN and remote == ports["upstream"]:
            counts["upstream_conns"] += 1
        elif state != TCP_LISTEN and remote == ports["idp"]:
            counts["idp_conns"] += 1
        else:
            counts["other_fds"] += 1
    return rss_kb, ticks, counts


def flat(values):
    """(median, min, max, within): every value within +-FLAT_BAND of the median."""
    median = statistics.median(values)
    return median, min(values), max(values), all(abs(v - median) <= FLAT_BAND * median for v in values)




def slope_per_minute(rows, key):
    """Least-squares slope of rows[key] over elapsed time, per minute (information only, not the verdict)."""
    xs = [row["elapsed_s"] / 60 for row in rows]
    ys = [row[key] for row in rows]
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else 0.0


def verdict(rows, args, counters, last_metrics):
    """After the warm-up: RSS within +-5 % of its median at every sample; the fds that are not connections
    (listeners, epoll, eventfd, pipes, files) within +-5 % of their median at every sample; no socket left in
    CLOSE_WAIT at two samples in a row; the upstream pool and the provider pool each at most as many connections
    as the load can have requests in flight (--sessions + 1: each session and the churn loop send one request at a
    time), at every sample. Connections are not held to the +-5 % band: the client's are the load's, and each
    keep-alive pool sizes itself to the concurrency of the last proxy.pool_idle_timeout (90 s), which moves with
    the machine's stalls (8-19 pooled connections in the 20-minute run); a connection leak shows as CLOSE_WAIT
    sockets or as a pool larger than any concurrency. The total is reported against the +-5 % band as well. Then
    zero errors, and the whole mix exercised (logins, refreshes, sign-outs all happened, no refresh failed)."""
    warmup_s = args.minutes * 60 * args.warmup_percent / 100
    after = [row for row in rows if row["elapsed_s"] >= warmup_s]
    problems = []
    if len(after) < 3:
        problems.append(f"only {len(after)} samples after the warm-up")
        after = rows
    rss = flat([row["rss_kb"] for row in after])
    fds = flat([row["fds"] for row in after])
    other = flat([row["other_fds"] for row in after])
    concurrency = args.sessions + 1
    pool_max = max(max(row["upstream_conns"], row["idp_conns"]) for row in after)
    close_wait_runs = sum(1 for a, b in zip(after, after[1:]) if a["close_wait"] and b["close_wait"])
    cpu = [row["cpu_percent"] for row in after]
    errors = counters.get("errors")
    if not rss[3]:
        problems.append("RSS not within +-5 % after the warm-up")
    if not other[3]:
        problems.append("fds other than connections not within +-5 % after the warm-up")
    if pool_max > concurrency:
        problems.append(f"a pool held {pool_max} connections, more than {concurrency} requests can be in flight")
    if close_wait_runs:
        problems.append(f"sockets in CLOSE_WAIT at {close_wait_runs} pairs of consecutive samples")
    if errors:
        problems.append(f"{errors} errors")
    if last_metrics["refresh_failures"]:
        problems.append(f"{last_metrics['refresh_failures']:.0f} refreshes failed at the gateway")
    for name in ("logins", "refreshes"):
        if not last_metrics[name]:
            problems.append(f"no {name} happened")
    if not counters.get("signouts"):
        problems.append("no sign-outs happened")
    duration = rows[-1]["elapsed_s"] if rows else 0
    print(f"samples: {len(rows)} over {duration:.0f} s; warm-up: the first {warmup_s:.0f} s ({args.warmup_percent} %),"
          f" {len(after)} samples after it")
    print(f"totals: {last_metrics['requests']:.0f} requests answered by the gateway (client: "
          f"{counters.get('requests')}), {last_metrics['logins']:.0f} logins, {last_metrics['refreshes']:.0f}"
          f" refreshes, {counters.get('signouts')} sign-outs (each signed-out cookie then refused with 401:"
          f" {counters.get('refused_after_signout')}), {errors} errors, {counters.get('reconnects')} reconnects")
    if duration:
        print(f"rates: {last_metrics['requests'] / duration:.1f} requests/s, {last_metrics['logins'] / duration:.2f}"
              f" logins/s, {last_metrics['refreshes'] / duration:.2f} refreshes/s,"
              f" {counters.get('signouts') / duration:.2f} sign-outs/s")
    print(f"RSS after warm-up: median {rss[0]:.0f} KB, min {rss[1]} ({(rss[1] / rss[0] - 1) * 100:+.1f} %),"
          f" max {rss[2]} ({(rss[2] / rss[0] - 1) * 100:+.1f} %); first sample {rows[0]['rss_kb']} KB,"
          f" last {rows[-1]['rss_kb']} KB; trend after warm-up {slope_per_minute(after, 'rss_kb'):+.1f} KB/min")
    print(f"open fds after warm-up: median {fds[0]:.0f}, min {fds[1]}, max {fds[2]}"
          f" ({'within' if fds[3] else 'not within'} +-5 % of the median); trend {slope_per_minute(after, 'fds'):+.3f}/min")
    print(f"  of which not connections: median {other[0]:.0f}, min {other[1]}, max {other[2]}; client connections"
          f" {min(r['client_conns'] for r in after)}-{max(r['client_conns'] for r in after)}; upstream pool"
          f" {min(r['upstream_conns'] for r in after)}-{max(r['upstream_conns'] for r in after)}, provider pool"
          f" {min(r['idp_conns'] for r in after)}-{max(r['idp_conns'] for r in after)} (bound {concurrency});"
          f" CLOSE_WAIT max {max(r['close_wait'] for r in after)}")
    print(f"gateway CPU after warm-up: mean {statistics.mean(cpu):.1f} % of one core, max {max(cpu):.1f} %")
    for sample in counters.samples:
        print(f"  error: {sample}")
    if problems:
        print("verdict: FAIL (" + "; ".join(problems) + ")")
        return 1
    print("verdict: PASS (after the warm-up: RSS and the fds other than connections within +-5 %, pools within"
          " the load's concurrency, no CLOSE_WAIT; zero errors)")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--sample-seconds", type=float, default=10)
    parser.add_argument("--warmup-percent", type=float, default=20)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--churn-interval", type=float, default=1)
    parser.add_argument("--stagger-seconds", type=float, default=0)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--idp-port", type=int, required=True)
    parser.add_argument("--csv", required=True)
    args = parser.parse_args()

    counters = Counters()
    stop = threading.Event()
    threads = [threading.Thread(target=steady_session, args=(i, args, counters, stop), daemon=True)
               for i in range(args.sessions)]
    threads.append(threading.Thread(target=churn, args=(args, counters, stop), daemon=True))
    hz = os.sysconf("SC_CLK_TCK")
    start = time.monotonic()
    end = start + args.minutes * 60
    ports = {
        "served": {urllib.parse.urlsplit(args.gateway).port, urllib.parse.urlsplit(args.metrics).port},
        "upstream": args.upstream_port,
        "idp": args.idp_port,
    }
    _, last_ticks, _ = process_sample(args.pid, ports)
    last_time = start
    for thread in threads:
        thread.start()

    rows = []
    last_metrics = scrape(args.metrics)
    fields = ["elapsed_s", "rss_kb", "fds", "cpu_percent", "requests", "logins", "refreshes", "signouts", "errors",
              "client_conns", "upstream_conns", "idp_conns", "close_wait", "other_fds"]
    with open(args.csv, "w", newline="") as output:
        writer = csv.DictWriter(output, fieldnames=fields)
        writer.writeheader()
        next_sample = start + args.sample_seconds
        while next_sample <= end + 0.001:
            time.sleep(max(0.0, next_sample - time.monotonic()))
            next_sample += args.sample_seconds
            now = time.monotonic()
            try:
                rss_kb, ticks, fd_counts = process_sample(args.pid, ports)
                last_metrics = scrape(args.metrics)
            except (OSError, StopIteration, Unexpected) as error:
                counters.error(f"sampling: {error}")
                break
            row = {
                "elapsed_s": round(now - start, 1),
                "rss_kb": rss_kb,
                "fds": fd_counts["fds"],
                "cpu_percent": round((ticks - last_ticks) / hz / (now - last_time) * 100, 1),
                "requests": int(last_metrics["requests"]),
                "logins": int(last_metrics["logins"]),
                "refreshes": int(last_metrics["refreshes"]),
                "signouts": counters.get("signouts"),
                "errors": counters.get("errors"),
                **{key: fd_counts[key] for key in fields[9:]},
            }
            last_ticks, last_time = ticks, now
            rows.append(row)
            writer.writerow(row)
            output.flush()
            print(" ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr, flush=True)
    stop.set()
    for thread in threads:
        thread.join(timeout=2 * TIMEOUT_S)
    if not rows:
        print("verdict: FAIL (no samples)")
        return 1
    return verdict(rows, args, counters, last_metrics)


if __name__ == "__main__":
    sys.exit(main())
