"""Pagination as generators driven by tiny paginators.

A paginator only reads the next cursor out of a response (a dict or an SDK model);
`pages(fetch, paginator)` does the looping: ``fetch(cursor)`` gets one page (cursor None for
the first), the page is yielded, and the loop ends when there is no next cursor. A cursor
seen before raises `PermanentError` (a provider looping on us would otherwise never end).

- `HubSpotAfter`: CRM v3 ``paging.next.after``.
- `HubSpotOffset`: legacy v1 ``hasMore`` + ``offset`` (e.g. marketing email events).
- `KlaviyoNext`: JSON:API ``links.next`` (a full URL); the raw ``page[cursor]`` value is
  parsed out of it here. Do not hand the URL to klaviyo-api 25.0.0: its cursor rewriting
  sends ``page[cursor]==<cursor>`` (an extra ``=``; ``klaviyo_api/wrapper.py:1126-1145``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from connectors.errors import PermanentError

__all__ = ["HubSpotAfter", "HubSpotOffset", "KlaviyoNext", "Paginator", "dig", "items", "pages"]

R = TypeVar("R")
I = TypeVar("I")  # noqa: E741


class Paginator(Protocol):
    """Reads the cursor of the page after `response`, or None on the last page."""

    provider: str

    def next_cursor(self, response: object) -> str | None: ...


def dig(obj: object, *path: str) -> object:
    """``obj[path[0]][path[1]]...`` through dicts or attributes; None when anything is missing."""
    for name in path:
        if obj is None:
            return None
        obj = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
    return obj


def _cursor(provider: str, value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PermanentError(provider, None, None, f"malformed page cursor at {where}: {value!r}")
    return str(value)


class HubSpotAfter:
    """CRM v3 lists and search: the next cursor is ``paging.next.after``."""

    provider = "hubspot"

    def next_cursor(self, response: object) -> str | None:
        return _cursor(self.provider, dig(response, "paging", "next", "after"), "paging.next.after")


class HubSpotOffset:
    """Legacy v1 endpoints: ``hasMore`` says whether ``offset`` leads to another page."""

    provider = "hubspot"

    def __init__(self, more: str = "hasMore", offset: str = "offset") -> None:
        self.more = more
        self.offset = offset

    def next_cursor(self, response: object) -> str | None:
        if dig(response, self.more) is not True:
            return None
        cursor = _cursor(self.provider, dig(response, self.offset), self.offset)
        if cursor is None:
            message = f"{self.more} is true but {self.offset} is missing"
            raise PermanentError(self.provider, None, None, message)
        return cursor


class KlaviyoNext:
    """JSON:API: ``links.next`` is a URL whose ``page[cursor]`` query value is the cursor."""

    provider = "klaviyo"

    def next_cursor(self, response: object) -> str | None:
        url = dig(response, "links", "next")
        if url is None or url == "":
            return None
        if not isinstance(url, str):
            raise PermanentError(self.provider, None, None, f"links.next is not a URL: {url!r}")
        # Split by hand: parse_qs would turn a literal "+" in the cursor into a space.
        for part in urlsplit(url).query.split("&"):
            name, _, value = part.partition("=")
            if unquote(name) == "page[cursor]" and value:
                return unquote(value)
        raise PermanentError(self.provider, None, None, f"links.next has no page[cursor]: {url}")


def pages(
    fetch: Callable[[str | None], R], paginator: Paginator, *, max_pages: int | None = None
) -> Iterator[R]:
    """Yield every page: ``fetch(None)``, then ``fetch(cursor)`` while there is a next cursor."""
    seen: set[str] = set()
    cursor: str | None = None
    count = 0
    while True:
        page = fetch(cursor)
        count += 1
        yield page
        cursor = paginator.next_cursor(page)
        if cursor is None:
            return
        if cursor in seen:
            raise PermanentError(
                paginator.provider, None, None, f"pagination cursor {cursor!r} repeated after {count} pages"
            )
        seen.add(cursor)
        if max_pages is not None and count >= max_pages:
            return


def items(
    fetch: Callable[[str | None], R],
    paginator: Paginator,
    extract: Callable[[R], Iterable[I] | None],
    *,
    max_pages: int | None = None,
) -> Iterator[I]:
    """Every item of every page (`extract` picks a page's items, e.g. ``results``)."""
    for page in pages(fetch, paginator, max_pages=max_pages):
        yield from extract(page) or ()
