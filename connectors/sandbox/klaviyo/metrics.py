"""Metrics: ``GET /api/metrics`` (200 per page, no ``page[size]``) and ``GET /api/metrics/{id}``.

Spec ``get_metrics``: "Returns a maximum of 200 results per page"; filters
``equals(integration.name,...)`` and ``equals(integration.category,...)``.
"""

from __future__ import annotations

from typing import Any

from connectors.sandbox.klaviyo.app import KlaviyoApp, route
from connectors.sandbox.klaviyo.errors import document, not_found
from connectors.sandbox.klaviyo.ids import iso
from connectors.sandbox.klaviyo.query import decode_cursor, links, parse_filter, sparse
from connectors.sandbox.klaviyo.resources import keyset, self_link
from connectors.sandbox.klaviyo.state import Metric
from connectors.sandbox.server import Request, Response

PAGE = 200
FILTERS = {"integration.name": ({"equals"}, "string"), "integration.category": ({"equals"}, "string")}


def integration(m: Metric) -> dict[str, Any]:
    category = "Internal" if m.service == "Klaviyo" else "API"
    return {"object": "integration", "id": m.service.lower()[:6], "name": m.service, "category": category}


def metric_resource(req: Request, m: Metric) -> dict[str, Any]:
    attrs = {
        "name": m.name,
        "created": iso(m.created),
        "updated": iso(m.created),
        "integration": integration(m),
    }
    return {
        "type": "metric",
        "id": m.id,
        "attributes": sparse(req, "metric", attrs),
        "links": self_link(req, f"/api/metrics/{m.id}/"),
    }


def register(app: KlaviyoApp) -> None:
    state = app.state

    @route(app, "GET", "/api/metrics", "get_metrics")
    def get_metrics(req: Request) -> Response:
        conds = parse_filter(req.arg("filter"), FILTERS)
        after = decode_cursor(req, app.settings.tolerate_cursor_equals)

        def keep(mid: str) -> bool:
            integ = integration(state.metrics[mid])
            return all(integ[c.field.split(".")[1]] == c.value for c in conds)

        with state.lock:
            order = [(m.index, m.id) for m in state.metrics.values()]
            ids, nxt = keyset(order, after, False, keep, PAGE)
            data = [metric_resource(req, state.metrics[i]) for i in ids]
        return document(200, {"data": data, "links": links(req, nxt)})

    @route(app, "GET", "/api/metrics/{id}", "get_metric")
    def get_metric(req: Request) -> Response:
        with state.lock:
            m = state.metrics.get(req.path_params["id"])
            if m is None:
                raise not_found(f"A metric with id {req.path_params['id']} does not exist.")
            return document(200, {"data": metric_resource(req, m), "links": self_link(req, req.path)})
