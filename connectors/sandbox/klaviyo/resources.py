"""Shared JSON:API plumbing: request ``data`` objects, resource objects, keyset pages."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from connectors.sandbox.klaviyo.errors import body_json, invalid
from connectors.sandbox.klaviyo.query import base_url, sparse
from connectors.sandbox.klaviyo.state import Profile
from connectors.sandbox.server import Request


def data_object(req: Request, rtype: str) -> dict[str, Any]:
    """``body["data"]`` as an object of type ``rtype`` (400 otherwise)."""
    body = body_json(req.body)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise invalid("'data' must be an object.", pointer="/data")
    if data.get("type") != rtype:
        raise invalid(f"'type' must be '{rtype}', got {data.get('type')!r}.", pointer="/data/type")
    attrs = data.get("attributes", {})
    if not isinstance(attrs, dict):
        raise invalid("'attributes' must be an object.", pointer="/data/attributes")
    return data


def identifiers(req: Request, rtype: str, maximum: int) -> list[str]:
    """``{"data": [{"type": rtype, "id": ...}, ...]}`` (relationship bodies) as ids."""
    body = body_json(req.body)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise invalid("'data' must be an array of resource identifiers.", pointer="/data")
    if len(data) > maximum:
        raise invalid(
            f"This endpoint accepts a maximum of {maximum} {rtype}s per call; got {len(data)}.",
            pointer="/data",
        )
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or item.get("type") != rtype or not isinstance(item.get("id"), str):
            raise invalid(f"Each item must be {{'type': '{rtype}', 'id': <string>}}.", pointer=f"/data/{i}")
        out.append(item["id"])
    return out


def self_link(req: Request, path: str) -> dict[str, str]:
    return {"self": f"{base_url(req)}{path}"}


def profile_resource(req: Request, p: Profile, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    attrs = p.attributes()
    if extra:
        attrs.update(extra)
    return {
        "type": "profile",
        "id": p.id,
        "attributes": sparse(req, "profile", attrs),
        "links": self_link(req, f"/api/profiles/{p.id}/"),
    }


def keyset(
    order: Sequence[tuple[Any, str]],
    after: Sequence[Any] | None,
    descending: bool,
    keep: Callable[[str], bool],
    size: int,
) -> tuple[list[str], tuple[Any, str] | None]:
    """Ids of one page from a sorted ``(sort value, id)`` sequence, and the next page's key.

    ``after`` is the key of the last row of the previous page (from the cursor). Keyset paging
    keeps pages stable while rows are added or updated between requests.
    """

    if after is not None and not (
        isinstance(after, list)
        and len(after) == 2
        and isinstance(after[1], str)
        and (not order or type(after[0]) is type(order[0][0]))
    ):
        raise invalid("Invalid page cursor.", parameter="page[cursor]")

    def walk() -> Iterator[tuple[Any, str]]:
        if descending:
            start = len(order) if after is None else bisect_left(order, tuple(after))
            for i in range(start - 1, -1, -1):
                yield order[i]
        else:
            start = 0 if after is None else bisect_right(order, tuple(after))
            for i in range(start, len(order)):
                yield order[i]

    page: list[str] = []
    last: tuple[Any, str] | None = None
    for key in walk():
        if keep(key[1]):
            if len(page) == size:
                return page, last
            page.append(key[1])
            last = key
    return page, None
