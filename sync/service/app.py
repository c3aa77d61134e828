"""The HTTP service (FastAPI) and its uvicorn runner :func:`serve`.

Routes: ``POST /webhooks/hubspot``, ``POST /webhooks/klaviyo``, ``POST /events``,
``GET /healthz``, ``GET /metrics``. A POST is read (at most ``[service] max_body_bytes``, else
413), verified (401), validated (400), written to the inbox through the group committer and
acknowledged with 200 **only after that commit**; a rejected request stores nothing. A store
failure answers 503 so the provider retries. An endpoint whose secret is not configured answers
503 too. Processing is asynchronous (:mod:`sync.service.worker`).

:func:`serve` runs these routes in a front-end process of their own and the worker in the
caller's process (:mod:`sync.service.front`); :func:`create_app` builds the whole service in
one process (tests, embedding).

Response bodies are JSON: ``{"received": n, "new": m}`` on success (``new`` < ``received`` for
duplicates), ``{"error": reason}`` otherwise, plus ``"errors": [...]`` (one per bad event)
for an invalid ``/events`` batch.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors.hubspot import signature as hs_signature
from connectors.klaviyo import signature as kl_signature
from mapping.errors import InputError
from mapping.models import parse_duration, resolve_secret
from mapping.project import Project
from sync.service import ingest, metrics
from sync.service.inbox import Inbox, NewItem
from sync.service.ingest import EventsInvalid
from sync.service.worker import ContactsHook, Worker
from sync.store.errors import StoreError

__all__ = ["ServiceSettings", "create_app", "front_app", "serve"]

LOG = logging.getLogger("segsync.service")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ServiceSettings:
    """``[service]`` with its secrets resolved from the environment."""

    hubspot_secret: str | None = None
    klaviyo_secret: str | None = None
    events_key: str | None = None
    public_url: str | None = None
    legacy_versions: tuple[str, ...] = ()
    max_body_bytes: int = 5_000_000
    replay_window_ms: int = 300_000
    max_future_skew_ms: int = 30_000
    worker_batch: int = 500
    retention_ms: int = 7 * 86_400_000
    forget_remote: tuple[str, ...] = ()

    @classmethod
    def from_project(cls, project: Project) -> ServiceSettings:
        s = project.config.service

        def secret(value: str | None, name: str) -> str | None:
            return None if value is None else resolve_secret(value, f"service.{name}")

        return cls(
            hubspot_secret=secret(s.hubspot_client_secret, "hubspot_client_secret"),
            klaviyo_secret=secret(s.klaviyo_webhook_secret, "klaviyo_webhook_secret"),
            events_key=secret(s.events_api_key, "events_api_key"),
            public_url=s.public_url.rstrip("/") if s.public_url else None,
            legacy_versions=tuple(s.hubspot_legacy_signatures),
            max_body_bytes=s.max_body_bytes,
            replay_window_ms=parse_duration(s.replay_window),
            max_future_skew_ms=parse_duration(s.max_future_skew),
            worker_batch=s.worker_batch,
            retention_ms=parse_duration(s.inbox_retention),
            forget_remote=tuple(s.forget_remote),
        )


# FastAPI's built-in OpenTelemetry hooks look the providers up on every request (~0.1 ms);
# the service reports through its own /metrics
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters else {})
_Endpoint = Callable[[Request], Awaitable[Response]]


def _post(app: FastAPI, path: str) -> Callable[[_Endpoint], _Endpoint]:
    """A plain Starlette route: the webhook handlers read the raw request themselves, so
    FastAPI's parameter machinery would only add time to every acknowledgement."""
    def register(endpoint: _Endpoint) -> _Endpoint:
        app.router.add_route(path, endpoint, methods=["POST"])
        return endpoint

    return register


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _called_uri(request: Request, public_url: str | None) -> str:
    """The full URL the provider called (HubSpot signs it), escapes as received."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    path = raw.decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    tail = path + (f"?{query}" if query else "")
    if public_url:
        return public_url + tail
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}{tail}"


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def create_app(engine: Engine, project: Project, settings: ServiceSettings | None = None, *,
               hook: ContactsHook | None = None, run_worker: bool = True, worker_delay_s: float = 0.0,
               clock: Callable[[], int] = _now_ms) -> FastAPI:
    """The whole service in this process. The inbox writer and (``run_worker``) the worker
    start and stop with the app's lifespan; ``app.state.worker`` is the :class:`Worker`
    (tests call ``run_once``)."""
    cfg = settings or ServiceSettings.from_project(project)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = Worker(engine, project, hook=hook, batch=cfg.worker_batch,
                        start_delay_s=worker_delay_s, retention_ms=cfg.retention_ms,
                        forget_remote=cfg.forget_remote, clock=clock)
        committer = Inbox(engine).committer(on_commit=worker.wake, retention_ms=cfg.retention_ms)
        app.state.worker, app.state.committer = worker, committer
        if run_worker:
            worker.start()
        try:
            yield
        finally:
            committer.stop()
            worker.stop()

    return _app(engine, project, cfg, lifespan, clock)


def front_app(engine: Engine, project: Project, settings: ServiceSettings, *,
              notify: Callable[[], None] | None = None,
              main_metrics: Callable[[], Mapping[str, Sequence[str]]] | None = None,
              clock: Callable[[], int] = _now_ms) -> FastAPI:
    """The routes and the inbox writer without a worker (the front end process of
    :func:`serve`): ``notify`` after each commit, ``main_metrics`` adds the worker process's
    samples to ``GET /metrics``."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.committer = Inbox(engine).committer(on_commit=notify,
                                                      retention_ms=settings.retention_ms)
        try:
            yield
        finally:
            app.state.committer.stop()

    return _app(engine, project, settings, lifespan, clock, main_metrics)


def _app(engine: Engine, project: Project, cfg: ServiceSettings,
         lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]], clock: Callable[[], int],
         main_metrics: Callable[[], Mapping[str, Sequence[str]]] | None = None) -> FastAPI:
    app = FastAPI(title="segsync", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  **_NO_TELEMETRY)
    inbox = Inbox(engine)

    async def accept(request: Request, source: str, items: Sequence[NewItem],
                     received: float) -> JSONResponse:
        new = 0
        if items:
            try:
                new = await asyncio.wrap_future(request.app.state.committer.submit(items, clock()))
            except StoreError as e:
                metrics.DELIVERIES.inc(source=source, status="unavailable")
                return _error(503, str(e))
        metrics.DELIVERIES.inc(source=source, status="accepted")
        metrics.INBOX_ITEMS.inc(new, source=source, result="new")
        metrics.INBOX_ITEMS.inc(len(items) - new, source=source, result="duplicate")
        metrics.ACK_SECONDS.observe(time.perf_counter() - received, source=source)
        return JSONResponse({"received": len(items), "new": new})

    async def guarded(request: Request, source: str, secret: str | None, setting: str,
                      parse: Callable[[bytes, dict[str, str]], list[NewItem]]) -> JSONResponse:
        received = time.perf_counter()
        if secret is None:
            metrics.DELIVERIES.inc(source=source, status="unavailable")
            return _error(503, f"{request.url.path} is not configured: set [service] {setting}")
        try:
            body = await _read_body(request, cfg.max_body_bytes)
        except _TooLarge:
            metrics.DELIVERIES.inc(source=source, status="too_large")
            return _error(413, f"the body is larger than {cfg.max_body_bytes} bytes")
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            items = parse(body, headers)
        except (hs_signature.InvalidSignature, kl_signature.InvalidSignature, _Unauthorized) as e:
            metrics.DELIVERIES.inc(source=source, status="rejected_signature")
            return _error(401, str(e))
        except EventsInvalid as e:
            metrics.DELIVERIES.inc(source=source, status="malformed")
            return _error(400, str(e), errors=e.errors)
        except InputError as e:
            metrics.DELIVERIES.inc(source=source, status="malformed")
            return _error(400, str(e))
        return await accept(request, source, items, received)

    @_post(app, "/webhooks/hubspot")
    async def hubspot_webhook(request: Request) -> JSONResponse:
        def parse(body: bytes, headers: dict[str, str]) -> list[NewItem]:
            assert cfg.hubspot_secret is not None
            return ingest.hubspot_items(
                headers, request.method, _called_uri(request, cfg.public_url), body, cfg.hubspot_secret,
                clock(), legacy_versions=cfg.legacy_versions, max_age_ms=cfg.replay_window_ms,
                max_skew_ms=cfg.max_future_skew_ms)

        return await guarded(request, "hubspot", cfg.hubspot_secret, "hubspot_client_secret", parse)

    @_post(app, "/webhooks/klaviyo")
    async def klaviyo_webhook(request: Request) -> JSONResponse:
        def parse(body: bytes, headers: dict[str, str]) -> list[NewItem]:
            assert cfg.klaviyo_secret is not None
            return ingest.klaviyo_items(headers, body, cfg.klaviyo_secret, clock(),
                                        window_ms=cfg.replay_window_ms)

        return await guarded(request, "klaviyo", cfg.klaviyo_secret, "klaviyo_webhook_secret", parse)

    @_post(app, "/events")
    async def events(request: Request) -> JSONResponse:
        def parse(body: bytes, headers: dict[str, str]) -> list[NewItem]:
            assert cfg.events_key is not None
            given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
            if not given or not hmac.compare_digest(given.strip().encode(), cfg.events_key.encode()):
                raise _Unauthorized("missing or wrong API key (X-API-Key header)")
            return ingest.api_items(body, project, clock())

        return await guarded(request, "api", cfg.events_key, "events_api_key", parse)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        try:
            depth, oldest = inbox.stats()
        except (SQLAlchemyError, sqlite3.Error) as e:
            return _error(503, f"the store is unavailable: {type(e).__name__}")
        lag = 0 if oldest is None else max(0, clock() - oldest) / 1000
        return JSONResponse({"status": "ok", "queue_depth": depth, "lag_seconds": lag})

    @app.get("/metrics")
    def metrics_text() -> PlainTextResponse:
        depth, oldest = inbox.stats()
        metrics.QUEUE_DEPTH.set(depth)
        metrics.LAG_SECONDS.set(0 if oldest is None else max(0, clock() - oldest) / 1000)
        extra = main_metrics() if main_metrics is not None else None
        return PlainTextResponse(metrics.REGISTRY.render(extra), media_type="text/plain; version=0.0.4")

    return app


class _Unauthorized(InputError):
    pass


def serve(project: Project, host: str | None = None, port: int | None = None, *,
          engine: Engine | None = None, hook: ContactsHook | None = None, worker_delay_s: float = 0.0,
          on_listening: Callable[[str], None] | None = None, log_level: str = "info",
          separate_front: bool = True) -> None:
    """Run the service until SIGINT/SIGTERM. ``port`` 0 picks a free port;
    ``on_listening(url)`` is called with the bound URL before serving.

    The HTTP routes run in a front-end process of their own and the worker (with ``hook``) in
    this one (:mod:`sync.service.front`); ``separate_front=False`` (forced for an in-memory
    SQLite store) runs everything here under uvicorn."""
    from sync.store.db import open_project_store

    cfg = project.config.service
    host = host or cfg.host
    port = cfg.port if port is None else port
    settings = ServiceSettings.from_project(project)
    engine = engine or open_project_store(project)
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP
    # (without it a response's body waits ~40 ms behind its headers: Nagle + delayed ACK)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections wait in the backlog until the app has started
    bound = sock.getsockname()[1]
    if on_listening is not None:
        on_listening(f"http://{host}:{bound}")
    try:
        if separate_front and Inbox(engine).shared_with_other_processes:
            _serve_split(project, engine, settings, sock, hook, worker_delay_s, log_level)
        else:
            _serve_here(project, engine, settings, sock, hook, worker_delay_s, log_level)
    finally:
        sock.close()


def _serve_here(project: Project, engine: Engine, settings: ServiceSettings, sock: socket.socket,
                hook: ContactsHook | None, worker_delay_s: float, log_level: str) -> None:
    import uvicorn

    app = create_app(engine, project, settings, hook=hook, worker_delay_s=worker_delay_s)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False,
                                           timeout_graceful_shutdown=5))
    server.run(sockets=[sock])


def _serve_split(project: Project, engine: Engine, settings: ServiceSettings, sock: socket.socket,
                 hook: ContactsHook | None, worker_delay_s: float, log_level: str) -> None:
    from sync.service.front import FrontSpec, Supervisor

    worker = Worker(engine, project, hook=hook, batch=settings.worker_batch, start_delay_s=worker_delay_s,
                    retention_ms=settings.retention_ms, forget_remote=settings.forget_remote)
    spec = FrontSpec(project, engine.url.render_as_string(hide_password=False), settings,
                     -1, -1, -1, log_level)
    supervisor = Supervisor(spec, sock, on_wake=worker.wake)
    stop = threading.Event()
    handlers = _on_signals((signal.SIGINT, signal.SIGTERM), lambda: stop.set())
    try:
        supervisor.start()
        worker.start()
        supervisor.watch(stop)
    finally:
        LOG.info("stopping the HTTP front end, then the worker")
        supervisor.stop()
        worker.stop()
        for signum, previous in handlers.items():
            signal.signal(signum, previous)


def _on_signals(signums: Sequence[signal.Signals], action: Callable[[], None]) -> dict[int, Any]:
    """Install ``action`` for ``signums`` (main thread only); the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, lambda _n, _f: action()) for s in signums}
