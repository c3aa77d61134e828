"""The real-time service of ``segsync serve``: webhooks and first-party events in, applied to
the store, affected contacts re-evaluated.

* :mod:`sync.service.app` — the FastAPI app and :func:`~sync.service.app.serve` (uvicorn);
* :mod:`sync.service.ingest` — request bodies -> verified, validated inbox items;
* :mod:`sync.service.inbox` — the durable inbox (dedupe, group commit, queue stats);
* :mod:`sync.service.apply` / :mod:`sync.service.worker` — inbox items -> store changes;
* :mod:`sync.service.forget` — deletion, privacy and suppressions (``is_suppressed``);
* :mod:`sync.service.metrics` — the Prometheus registry other components increment.

Importing this package imports nothing heavy (no FastAPI): ``forget`` and ``metrics`` are
usable from the batch paths.
"""
