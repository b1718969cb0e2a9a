#!/usr/bin/env python3
"""Login-storm load generator for bench/logins.sh (loopback only, bounded).

Each of CONCURRENCY workers walks complete logins as a new browser would, one
after another, until LOGINS logins have been started in all:

  1. GET  <gateway>/                    -> 302 to the provider, flow cookie set
  2. GET  <provider>/authorize?...      -> the login form
  3. POST <provider>/authorize          -> 302 to <gateway>/oauth2/callback?code=...
  4. GET  <gateway>/oauth2/callback?... -> 302 back to /, session cookie set
  5. GET  <gateway>/                    -> 200 from the upstream: the cookie works

Every worker keeps one connection to the gateway and one to the provider (as a
browser does); each login starts with an empty cookie jar. Prints
`LOGINS <ok> FAILED <n> SECONDS <s>` and `COOKIE <header>` (the last login's
session cookie, for the authenticated-request load). Exits non-zero if any
login failed.

Usage: login_load.py <gateway base URL> <logins> <concurrency>
"""

import html
import http.client
import re
import sys
import threading
import time
from urllib.parse import urlencode, urlsplit

HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)"')


class Browser:
    """One worker: a keep-alive connection per origin and a cookie jar for the gateway."""

    def __init__(self, gateway):
        self.gateway = urlsplit(gateway)
        self.connections = {}
        self.jar = {}

    def connection(self, netloc):
        conn = self.connections.get(netloc)
        if conn is None:
            conn = http.client.HTTPConnection(netloc, timeout=30)
            self.connections[netloc] = conn
        return conn

    def send(self, method, url, body=None):
        parts = urlsplit(url)
        netloc = parts.netloc or self.gateway.netloc
        target = parts.path + ("?" + parts.query if parts.query else "")
        headers = {"Accept": "text/html"}
        to_gateway = netloc == self.gateway.netloc
        if to_gateway and self.jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in range(2):
            conn = self.connection(netloc)
            try:
                conn.request(method, target, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                # A kept-alive connection the server closed: reconnect once.
                conn.close()
                del self.connections[netloc]
                if attempt:
                    raise
        if to_gateway:
            for value in response.msg.get_all("Set-Cookie") or []:
                name, _, rest = value.split(";", 1)[0].partition("=")
                if not rest or "Max-Age=0" in value:
                    self.jar.pop(name, None)
                else:
                    self.jar[name] = rest
        if response.status >= 400 and response.getheader("Connection", "").lower() == "close":
            conn.close()
            del self.connections[netloc]
        return response.status, response.getheader("Location"), data

    def login(self):
        self.jar = {}
        base = f"{self.gateway.scheme}://{self.gateway.netloc}"
        status, location, _ = self.send("GET", base + "/")
        if status != 302 or not location:
            return f"start answered {status}"
        status, _, page = self.send("GET", location)
        if status != 200:
            return f"authorize answered {status}"
        fields = [(html.unescape(n), html.unescape(v)) for n, v in HIDDEN.findall(page.decode())]
        fields += [("username", "alice"), ("password", "alice")]
        authorize = location.split("?", 1)[0]
        status, callback, _ = self.send("POST", authorize, urlencode(fields))
        if status not in (302, 303) or not callback:
            return f"login form answered {status}"
        status, back, _ = self.send("GET", callback)
        if status != 302:
            return f"callback answered {status}"
        status, _, _ = self.send("GET", base + "/")
        if status != 200:
            return f"authenticated request answered {status}"
        return None


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    gateway, total, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if urlsplit(gateway).hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loopback only")
    lock = threading.Lock()
    state = {"started": 0, "ok": 0, "failed": [], "cookie": None}

    def worker():
        browser = Browser(gateway)
        while True:
            with lock:
                if state["started"] >= total:
                    return
                state["started"] += 1
            try:
                failure = browser.login()
            except (OSError, http.client.HTTPException) as error:
                failure = f"{type(error).__name__}: {error}"
                browser = Browser(gateway)
            with lock:
                if failure:
                    state["failed"].append(failure)
                else:
                    state["ok"] += 1
                    state["cookie"] = "; ".join(f"{k}={v}" for k, v in browser.jar.items())

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    print(f"LOGINS {state['ok']} FAILED {len(state['failed'])} SECONDS {seconds:.3f}", flush=True)
    if state["cookie"]:
        print(f"COOKIE {state['cookie']}", flush=True)
    for failure in sorted(set(state["failed"]))[:5]:
        print(f"failure: {failure}", file=sys.stderr)
    sys.exit(1 if state["failed"] or not state["ok"] else 0)


if __name__ == "__main__":
    main()
