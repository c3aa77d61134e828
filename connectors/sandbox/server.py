"""A small, fast HTTP/1.1 core for the sandbox stand-ins (stdlib ``ThreadingHTTPServer``).

Why not an ASGI framework: the sandbox must be able to *reset a connection after a write was
applied* (the ambiguous case retries must survive), delay responses, and serve several hundred
batch requests per second on one core. A threaded stdlib server with keep-alive does all of this
with full control over the socket.

Contract:

* :class:`App` holds routes (``"/crm/v3/objects/contacts/{contact_id}"`` patterns) and an ordered
  list of *guards*. Each guard sees the request and its :class:`Route` before the handler and may
  answer instead of it (auth, rate limits, fault injection). Guards may also set
  ``request.fault`` (a string the handler understands, e.g. ``"partial"``) or
  ``request.after`` (what to do *after* the handler ran: ``"reset"`` = apply, then drop the
  connection with a TCP RST; ``("delay", seconds)``).
* A handler returns a :class:`Response` or raises :class:`HTTPError` carrying one. Any other
  exception becomes the provider's 500 shape via ``App.internal_error`` — never a traceback page.
* Every request is recorded in ``App.log`` (method, path, status, milliseconds) and counted per
  route in ``App.counters``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

MAX_BODY = 20 * 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    raw_path: str  # path + query exactly as sent
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    path_params: dict[str, str] = field(default_factory=dict)
    fault: str | None = None
    after: Any = None
    client_key: str = ""  # the credential a rate limiter keys on, set by the auth guard

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """The body as JSON; raises ``ValueError`` with the reason when it is not."""
        if not self.body:
            raise ValueError("the request body is empty")
        return json.loads(self.body)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls,
        status: int,
        obj: Any,
        content_type: str = "application/json;charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> Response:
        h = {"Content-Type": content_type}
        if headers:
            h.update(headers)
        return cls(status, json.dumps(obj, separators=(",", ":")).encode(), h)


class HTTPError(Exception):
    """Raised by handlers and guards to answer with a prepared error response."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


Handler = Callable[[Request], Response]
Guard = Callable[[Request, "Route"], Response | None]


@dataclass
class Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler
    name: str  # stable id used by counters, rate limits and fault specs, e.g. "contacts.batch.update"
    rate_class: str | None = None
    auth: bool = True


@dataclass
class LogEntry:
    at: float
    method: str
    path: str
    route: str
    status: int
    ms: float


class App:
    """Routes, guards, request log and counters of one stand-in service."""

    def __init__(self, name: str, internal_error: Callable[[str], Response]):
        self.name = name
        self.routes: list[Route] = []
        self.guards: list[Guard] = []
        self.internal_error = internal_error
        self.not_found: Callable[[Request], Response] = lambda r: internal_error("not found")
        self.log: deque[LogEntry] = deque(maxlen=100_000)
        self.counters: Counter[str] = Counter()
        self.status_counters: Counter[tuple[str, int]] = Counter()
        self.lock = threading.RLock()  # handlers mutate shared state under this lock

    def route(
        self,
        method: str,
        pattern: str,
        name: str,
        *,
        rate_class: str | None = None,
        auth: bool = True,
    ) -> Callable[[Handler], Handler]:
        regex = re.compile(
            "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/") or "/") + "/?$"
        )

        def deco(fn: Handler) -> Handler:
            self.routes.append(Route(method, pattern, regex, fn, name, rate_class, auth))
            return fn

        return deco

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, params, path_exists_with_other_method)."""
        other = False
        for r in self.routes:
            m = r.regex.match(path)
            if m:
                if r.method == method:
                    return r, {k: unquote(v) for k, v in m.groupdict().items()}, False
                other = True
        return None, {}, other

    def dispatch(self, req: Request) -> tuple[Response, Any]:
        route, params, other = self.match(req.method, req.path)
        if route is None:
            resp = self.not_found(req)
            if other:
                resp.status = 405
            return resp, None
        req.path_params = params
        try:
            for guard in self.guards:
                early = guard(req, route)
                if early is not None:
                    return early, req.after
            return route.handler(req), req.after
        except HTTPError as e:
            return e.response, req.after
        except Exception as e:  # the one place a handler bug becomes a 500 (logged)
            log.exception("sandbox %s: handler %s failed", self.name, route.name)
            return self.internal_error(f"{type(e).__name__}: {e}"), None

    def record(self, req: Request, route_name: str, status: int, started: float) -> None:
        ms = (time.perf_counter() - started) * 1000
        with self.lock:
            self.log.append(LogEntry(time.time(), req.method, req.raw_path, route_name, status, ms))
            self.counters[route_name] += 1
            self.status_counters[(route_name, status)] += 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; with Nagle on, the client's delayed ACK adds ~40 ms
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _serve(self) -> None:
        app = self.server.app
        started = time.perf_counter()
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._write(Response(413, b"payload too large"))
            return
        body = self.rfile.read(length) if length else b""
        req = Request(
            method=self.command,
            path=split.path,
            raw_path=self.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        resp, after = app.dispatch(req)
        route, _, _ = app.match(req.method, req.path)
        route_name = route.name if route else "unmatched"
        if after == "reset":
            app.record(req, route_name, 0, started)
            self._reset()
            return
        if isinstance(after, tuple) and after[0] == "delay":
            time.sleep(float(after[1]))
        app.record(req, route_name, resp.status, started)
        self._write(resp)

    def _write(self, resp: Response) -> None:
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def _reset(self) -> None:
        """Drop the connection with a TCP RST (SO_LINGER 0): the client sees a reset."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], app: App):
        self.app = app
        super().__init__(addr, _Handler)


class SandboxServer:
    """One :class:`App` served on loopback in a background thread (port 0 = ephemeral)."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the sandbox only listens on loopback")
        self.app = app
        self._server = _Server((host, port), app)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{host_text}:{port}"

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{self.app.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
