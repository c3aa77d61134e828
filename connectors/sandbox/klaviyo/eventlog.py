"""Compact, time-ordered storage of millions of events (parallel ``array`` columns).

An event is a row ``(ms, seq, metric, profile, value, props)``: epoch milliseconds, a unique
sequence number, the metric's and profile's small-integer indexes, the value (NaN = none) and a
properties reference: ``>= 0`` indexes an interned table of dicts, ``< 0`` is row ``-1 - ref`` of
an external source (the synthetic data set builds those dicts on access; ``external``). Rows
are kept sorted by ``(ms, seq)``; appending in time order is O(1), an older event is inserted
in place. The public id of an event is
``ulid(ms, seq)``, so it is found again by bisection without an id index. Response objects are
built only for the rows a page returns.
"""

from __future__ import annotations

import json
import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping
from typing import Any


class EventLog:
    def __init__(self) -> None:
        self.ms = array("q")
        self.seq = array("q")
        self.metric = array("h")
        self.profile = array("i")
        self.value = array("d")
        self.props = array("i")
        self.prop_table: list[Mapping[str, Any]] = [{}]
        self._prop_index: dict[str, int] = {"{}": 0}
        self.next_seq = 1
        self.external: Callable[[int], Mapping[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.ms)

    def intern(self, props: Mapping[str, Any]) -> int:
        """Index of ``props`` in the property table (equal dicts share one entry)."""
        key = json.dumps(props, sort_keys=True, separators=(",", ":"), default=str)
        idx = self._prop_index.get(key)
        if idx is None:
            idx = len(self.prop_table)
            self.prop_table.append(dict(props))
            self._prop_index[key] = idx
        return idx

    def add(self, ms: int, metric: int, profile: int, value: float | None, props: int) -> tuple[int, int]:
        """Store one event; returns ``(position, seq)``."""
        seq = self.next_seq
        self.next_seq += 1
        if not self.ms or ms >= self.ms[-1]:
            pos = len(self.ms)
            self.ms.append(ms)
            self.seq.append(seq)
            self.metric.append(metric)
            self.profile.append(profile)
            self.value.append(math.nan if value is None else float(value))
            self.props.append(props)
        else:
            pos = bisect_right(self.ms, ms)
            self.ms.insert(pos, ms)
            self.seq.insert(pos, seq)
            self.metric.insert(pos, metric)
            self.profile.insert(pos, profile)
            self.value.insert(pos, math.nan if value is None else float(value))
            self.props.insert(pos, props)
        return pos, seq

    def extend_sorted(
        self, ms: array[int], metric: array[int], profile: array[int], value: array[float], props: array[int]
    ) -> None:
        """Bulk load rows already sorted by time, all at or after the last stored one."""
        n = len(ms)
        if self.ms and n and ms[0] < self.ms[-1]:
            raise ValueError("bulk rows must not precede stored events")
        self.ms.extend(ms)
        self.seq.extend(array("q", range(self.next_seq, self.next_seq + n)))
        self.next_seq += n
        self.metric.extend(metric)
        self.profile.extend(profile)
        self.value.extend(value)
        self.props.extend(props)

    def remove_profile(self, profile: int) -> int:
        """Delete every event of one profile (a privacy deletion); returns how many went."""
        positions = list(self.scan(0, len(self.ms), profile=profile))
        for pos in reversed(positions):
            for column in (self.ms, self.seq, self.metric, self.profile, self.value, self.props):
                del column[pos]
        return len(positions)

    def find(self, ms: int, seq: int) -> int | None:
        lo, hi = bisect_left(self.ms, ms), bisect_right(self.ms, ms)
        for pos in range(lo, hi):
            if self.seq[pos] == seq:
                return pos
        return None

    def position_after(self, ms: int, seq: int) -> int:
        """First position whose ``(ms, seq)`` is greater than the given key."""
        pos = bisect_left(self.ms, ms)
        while pos < len(self.ms) and self.ms[pos] == ms and self.seq[pos] <= seq:
            pos += 1
        return pos

    def position_before(self, ms: int, seq: int) -> int:
        """Last position whose ``(ms, seq)`` is smaller than the given key (-1 if none)."""
        pos = bisect_right(self.ms, ms) - 1
        while pos >= 0 and self.ms[pos] == ms and self.seq[pos] >= seq:
            pos -= 1
        return pos

    def scan(
        self,
        lo: int,
        hi: int,
        *,
        metric: int | None = None,
        profile: int | None = None,
        descending: bool = False,
    ) -> Iterator[int]:
        """Positions in ``[lo, hi)`` matching the equality conditions, in the given direction.

        Equality on one column jumps with ``array.index`` (C speed), so a profile's events are
        found in a 10M-row log without a per-row Python loop.
        """
        if descending:
            for pos in range(hi - 1, lo - 1, -1):
                if (metric is None or self.metric[pos] == metric) and (
                    profile is None or self.profile[pos] == profile
                ):
                    yield pos
            return
        column, wanted, other, other_wanted = (
            (self.profile, profile, self.metric, metric)
            if profile is not None
            else (self.metric, metric, None, None)
        )
        if wanted is None:
            yield from range(lo, hi)
            return
        pos = lo
        while pos < hi:
            try:
                pos = column.index(wanted, pos, hi)
            except ValueError:
                return
            if other is None or other_wanted is None or other[pos] == other_wanted:
                yield pos
            pos += 1

    def properties(self, pos: int) -> dict[str, Any]:
        ref = self.props[pos]
        if ref < 0 and self.external is not None:
            out = dict(self.external(-1 - ref))
        else:
            out = dict(self.prop_table[max(ref, 0)])
        v = self.value[pos]
        if not math.isnan(v):
            out["$value"] = v
        return out
