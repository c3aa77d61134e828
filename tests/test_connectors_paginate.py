"""Paginators on hand-made responses (dicts and SDK-like objects), without HTTP."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from connectors.errors import PermanentError
from connectors.paginate import HubSpotAfter, HubSpotOffset, KlaviyoNext, Paginator, dig, items, pages


class Pages:
    """fetch(cursor) over a dict of cursor -> page; records the cursors asked for."""

    def __init__(self, by_cursor: Mapping[str | None, Any]) -> None:
        self.by_cursor = by_cursor
        self.asked: list[str | None] = []

    def __call__(self, cursor: str | None) -> Any:
        self.asked.append(cursor)
        return self.by_cursor[cursor]


def hs(ids: Sequence[int], after: str | None) -> dict[str, Any]:
    page: dict[str, Any] = {"results": [{"id": str(i)} for i in ids]}
    if after is not None:
        page["paging"] = {"next": {"after": after, "link": f"?after={after}"}}
    return page


def kl(ids: Sequence[str], next_url: str | None) -> dict[str, Any]:
    return {"data": [{"type": "profile", "id": i} for i in ids], "links": {"self": "x", "next": next_url}}


BASE = "https://a.klaviyo.com/api/profiles/?page%5Bsize%5D=2"


@pytest.mark.parametrize(
    ("paginator", "by_cursor", "asked", "extract", "expected"),
    [
        pytest.param(
            HubSpotAfter(), {None: hs([1, 2], "2"), "2": hs([3, 4], "4"), "4": hs([5], None)},
            [None, "2", "4"], lambda p: [r["id"] for r in p["results"]], ["1", "2", "3", "4", "5"],
            id="hubspot-after",
        ),
        pytest.param(
            HubSpotAfter(),
            {None: SimpleNamespace(results=["a"], paging=SimpleNamespace(next=SimpleNamespace(after="9"))),
             "9": SimpleNamespace(results=["b"], paging=None)},
            [None, "9"], lambda p: p.results, ["a", "b"], id="hubspot-sdk-models",
        ),
        pytest.param(
            HubSpotOffset(),
            {None: {"events": [1, 2], "hasMore": True, "offset": "abc"},
             "abc": {"events": [3], "hasMore": False, "offset": "def"}},
            [None, "abc"], lambda p: p["events"], [1, 2, 3], id="hubspot-legacy-offset",
        ),
        pytest.param(
            KlaviyoNext(),
            {None: kl(["p1", "p2"], BASE + "&page%5Bcursor%5D=bmV4dDo6aWQ6OjE%3D"),
             "bmV4dDo6aWQ6OjE=": kl(["p3"], None)},
            [None, "bmV4dDo6aWQ6OjE="], lambda p: [d["id"] for d in p["data"]], ["p1", "p2", "p3"],
            id="klaviyo-encoded-cursor",
        ),
        pytest.param(
            KlaviyoNext(),
            {None: kl(["p1"], "https://a.klaviyo.com/api/events/?page[cursor]=a+b/c&filter=x"),
             "a+b/c": kl([], "")},
            [None, "a+b/c"], lambda p: [d["id"] for d in p["data"]], ["p1"], id="klaviyo-raw-plus-kept",
        ),
    ],
)
def test_pages_follow_cursors(
    paginator: Paginator, by_cursor: Mapping[str | None, Any], asked: list[str | None],
    extract: Callable[[Any], list[Any]], expected: list[Any],
) -> None:
    fetch = Pages(by_cursor)
    assert list(items(fetch, paginator, extract)) == expected
    assert fetch.asked == asked


@pytest.mark.parametrize(
    ("paginator", "by_cursor", "message"),
    [
        (HubSpotAfter(), {None: hs([1], "5"), "5": hs([2], "6"), "6": hs([3], "5")}, "cursor '5' repeated"),
        (HubSpotAfter(), {None: hs([1], "1"), "1": hs([1], "1")}, "cursor '1' repeated after 2 pages"),
        (
            KlaviyoNext(),
            {None: kl(["a"], f"{BASE}&page%5Bcursor%5D=X"), "X": kl(["b"], f"{BASE}&page[cursor]=X")},
            "repeated",
        ),
        (HubSpotOffset(), {None: {"hasMore": True}}, "offset is missing"),
        (KlaviyoNext(), {None: kl(["a"], BASE)}, "no page[cursor]"),
        (KlaviyoNext(), {None: {"links": {"next": 5}}}, "not a URL"),
        (HubSpotAfter(), {None: {"paging": {"next": {"after": {"x": 1}}}}}, "malformed page cursor"),
    ],
)
def test_pagination_errors(paginator: Paginator, by_cursor: Mapping[str | None, Any], message: str) -> None:
    with pytest.raises(PermanentError, match=message.replace("[", r"\[")) as info:
        list(pages(Pages(by_cursor), paginator))
    assert info.value.provider == paginator.provider


def test_pages_are_lazy_and_bounded() -> None:
    fetch = Pages({None: hs([1], "a"), "a": hs([2], "b"), "b": hs([3], None)})
    gen = pages(fetch, HubSpotAfter())
    next(gen)
    assert fetch.asked == [None]  # nothing fetched ahead
    assert len(list(pages(fetch, HubSpotAfter(), max_pages=2))) == 2


def test_dig() -> None:
    assert dig({"a": SimpleNamespace(b={"c": 1})}, "a", "b", "c") == 1
    assert dig({"a": None}, "a", "b") is None
    assert dig(SimpleNamespace(), "missing") is None
