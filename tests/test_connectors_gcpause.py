"""connectors.gcpause: the young-generation threshold is raised while a pull iterates and
restored when the last one ends, however it ends."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from connectors.gcpause import YOUNG_THRESHOLD, relaxed, relaxed_pages


@pytest.fixture(autouse=True)
def default_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def _pages(n: int, seen: list[tuple[int, int, int]]) -> Iterator[int]:
    for i in range(n):
        seen.append(gc.get_threshold())
        yield i


def test_threshold_raised_while_pages_flow_and_restored_after() -> None:
    seen: list[tuple[int, int, int]] = []
    assert list(relaxed_pages(_pages(3, seen))) == [0, 1, 2]
    assert seen == [(YOUNG_THRESHOLD, 10, 10)] * 3
    assert gc.get_threshold() == (700, 10, 10)


def test_nested_and_interleaved_pulls_restore_only_at_the_last_end() -> None:
    seen: list[tuple[int, int, int]] = []
    a, b = relaxed_pages(_pages(2, seen)), relaxed_pages(_pages(2, seen))
    next(a)
    next(b)
    assert list(a) == [1]  # a ends; b is still running
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert list(b) == [1]
    assert gc.get_threshold() == (700, 10, 10)


def test_an_abandoned_or_failing_pull_restores_the_thresholds() -> None:
    pages = relaxed_pages(_pages(5, []))
    next(pages)
    pages.close()  # the caller stopped early
    assert gc.get_threshold() == (700, 10, 10)

    def broken() -> Iterator[int]:
        yield 1
        raise RuntimeError("page 2 failed")

    with pytest.raises(RuntimeError, match="page 2"):
        list(relaxed_pages(broken()))
    assert gc.get_threshold() == (700, 10, 10)
    with relaxed():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
