"""An HTTP client that runs inside a network namespace (see netns.Host), driven from the test.

The test process lives in the machine's own namespace and cannot reach the hosts' addresses, so
each `NsHttp` starts one small stdlib-only Python process inside a host (`host.popen`) that reads
one JSON request per line on stdin, performs it with http.client and writes one JSON answer per
line. One long-lived process per host costs far less than a new interpreter per request.

    client = NsHttp(host)                       # started inside host's namespace
    status, body = client.request("GET", "http://10.213.0.1:5000/api/version", headers={...})
    client.close()

Requests are built with `requests.Request(...).prepare()` by `prepared()` (form fields, files),
so multipart bodies need no code here. Every request has a timeout: a frozen or unreachable
node gives `(0, b"<error text>")` instead of a hang.
"""

from __future__ import annotations

import base64
import json
import select
import subprocess
import sys
import threading
from typing import Any

import requests

__all__ = ["NsHttp", "NsHttpError"]

_SERVER = r"""
import base64, http.client, json, sys, urllib.parse
for line in sys.stdin:
    req = json.loads(line)
    try:
        u = urllib.parse.urlsplit(req["url"])
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=req["timeout"])
        path = u.path + ("?" + u.query if u.query else "")
        body = base64.b64decode(req["body"]) if req["body"] is not None else None
        conn.request(req["method"], path or "/", body=body, headers=req["headers"])
        r = conn.getresponse()
        data = r.read()
        conn.close()
        out = {"status": r.status, "body": base64.b64encode(data).decode()}
    except Exception as e:
        out = {"status": 0, "body": base64.b64encode(repr(e).encode()).decode()}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class NsHttpError(Exception):
    pass


class NsHttp:
    def __init__(self, host: Any) -> None:
        self.host = host
        self._proc = host.popen([sys.executable, "-u", "-c", _SERVER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self._lock = threading.Lock()

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
        line = json.dumps({"method": method, "url": url, "headers": headers or {}, "timeout": timeout,
                           "body": base64.b64encode(body).decode() if body is not None else None})
        with self._lock:
            if self._proc.poll() is not None:
                raise NsHttpError("the namespace HTTP client exited")
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
            ready, _, _ = select.select([self._proc.stdout], [], [], timeout * 2 + 5)
            if not ready:
                raise NsHttpError(f"no answer for {method} {url}")
            answer = self._proc.stdout.readline()
        if not answer:
            raise NsHttpError("the namespace HTTP client exited")
        out = json.loads(answer)
        return out["status"], base64.b64decode(out["body"])

    def send(self, method: str, url: str, *, timeout: float = 5.0, **kw: Any) -> tuple[int, bytes]:
        """Like `requests.request(method, url, **kw)` (headers, data, files, json), run inside the host."""
        p = requests.Request(method, url, **kw).prepare()
        body = p.body.encode() if isinstance(p.body, str) else p.body
        return self.request(method, url, headers=dict(p.headers), body=body, timeout=timeout)

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.close()
                self._proc.wait(3)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
