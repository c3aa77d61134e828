"""Vectorised (numpy) generation of the activity columns behind :mod:`connectors.sandbox.dataset`.

Every random draw comes from the one ``Generator`` passed in, in a fixed order, so the output is
a pure function of the seed and the arguments. Kind codes are positions in ``dataset.KINDS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

DAY_MS = 86_400_000
SENT, DELIVERED, OPENED, CLICKED, BOUNCED, UNSUBSCRIBED, VIEWED, CARTED, ORDERED = range(9)

# Per persona (engaged, casual, dormant, new).
P_OPEN = np.array([0.55, 0.22, 0.03, 0.40])
P_CLICK = np.array([0.35, 0.15, 0.05, 0.25])  # given an open
P_UNSUB = np.array([0.002, 0.003, 0.006, 0.002])  # per delivered email
SESSIONS_PER_DAY = np.array([0.35, 0.11, 0.008, 0.3])
P_CART = np.array([0.12, 0.08, 0.05, 0.10])  # per product view
P_ORDER = np.array([0.40, 0.30, 0.20, 0.35])  # per session with a cart, before propensity
P_RECEIVE = 0.95  # share of a campaign's audience a subscriber is in
P_HARD_BOUNCE = 0.015  # dead mailbox: the first send bounces, later sends are suppressed
P_SOFT_BOUNCE = 0.01
P_CLICK_VISITS = 0.7  # a click that leads to a browsing session starting on that product
P_BULK = 0.003  # cart adds with a wholesale quantity (order value outliers)

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass
class Columns:
    person: I32
    kind: npt.NDArray[np.int8]
    ts: I64
    value: F64
    aux: I32  # campaign index (email kinds), session / cart id (views, carts), order index
    product: I32  # product index or -1
    quantity: npt.NDArray[np.int16]
    item_start: I64  # order o's items are item_*[item_start[o]:item_start[o + 1]]
    item_product: I32
    item_quantity: npt.NDArray[np.int16]
    order_session: I64  # order o was placed from cart ``order_session[o]``


Arr = npt.NDArray[Any]


@dataclass
class _Acc:
    parts: list[tuple[int, list[Arr | None]]] = field(default_factory=list)

    def add(self, kind: int, person: Arr, ts: Arr, *, value: Arr | None = None, aux: Arr,
            product: Arr | None = None, quantity: Arr | None = None) -> None:
        self.parts.append((kind, [person, ts, value, aux, product, quantity]))

    def build(self, items: tuple[I64, I32, npt.NDArray[np.int16], I64]) -> Columns:
        sizes = [len(cols[1]) for _, cols in self.parts]  # type: ignore[arg-type]

        def cat(i: int, dtype: type[np.generic], default: float) -> Arr:
            arrays: list[Arr] = [
                np.full(size, default, dtype) if cols[i] is None else np.asarray(cols[i], dtype)
                for size, (_, cols) in zip(sizes, self.parts, strict=True)
            ]
            return np.concatenate(arrays) if arrays else np.zeros(0, dtype)

        kind = np.concatenate([np.full(size, k, np.int8) for size, (k, _) in zip(sizes, self.parts,
                                                                                    strict=True)])
        return Columns(cat(0, np.int32, 0), kind, cat(1, np.int64, 0), cat(2, np.float64, 0.0),
                       cat(3, np.int32, -1), cat(4, np.int32, -1), cat(5, np.int16, 0), *items)


def activity_columns(rng: np.random.Generator, *, now: int, days: int, scale: float,
                     persona: npt.NDArray[np.int8], created: I64, sendable: npt.NDArray[np.bool_],
                     campaign_ts: I64, campaign_products: npt.NDArray[np.int64],
                     prices: F64) -> Columns:
    acc = _Acc()
    clicks = _email(acc, rng, now, persona, created, sendable, campaign_ts, campaign_products)
    items = _shop(acc, rng, now, days, scale, persona, created, clicks, prices)
    return acc.build(items)


def _email(acc: _Acc, rng: np.random.Generator, now: int, persona: npt.NDArray[np.int8],
           created: I64, sendable: npt.NDArray[np.bool_], campaign_ts: I64,
           campaign_products: npt.NDArray[np.int64]) -> tuple[I64, I64, I64]:
    n, c = len(persona), len(campaign_ts)
    shape = (c, n)
    cidx = np.arange(c)[:, None]
    elig = (campaign_ts[:, None] >= created[None, :]) & sendable[None, :]
    elig &= rng.random(shape) < P_RECEIVE
    unsub_draw = elig & (rng.random(shape) < P_UNSUB[persona][None, :])
    first_unsub = np.where(unsub_draw.any(0), unsub_draw.argmax(0), c)
    elig &= cidx <= first_unsub[None, :]
    hard = rng.random(n) < P_HARD_BOUNCE
    first_send = np.where(elig.any(0), elig.argmax(0), c)
    elig &= ~hard[None, :] | (cidx <= first_send[None, :])
    bounced = elig & ((rng.random(shape) < P_SOFT_BOUNCE) | (hard[None, :] & (cidx == first_send)))
    delivered = elig & ~bounced
    opened = delivered & (rng.random(shape) < P_OPEN[persona][None, :])
    clicked = opened & (rng.random(shape) < P_CLICK[persona][None, :])
    send_ts = campaign_ts[:, None] + rng.integers(0, 1_800_000, shape)
    deliv_ts = send_ts + rng.integers(1_000, 60_000, shape)
    open_ts = deliv_ts + rng.exponential(6 * 3_600_000, shape).astype(np.int64)
    click_ts = open_ts + rng.integers(5_000, 300_000, shape)
    unsub_ts = open_ts + rng.integers(10_000, 600_000, shape)
    unsub = delivered & (cidx == first_unsub[None, :]) & (unsub_ts < now)
    opened &= open_ts < now
    clicked &= opened & (click_ts < now)
    for kind, mask, ts in ((SENT, elig, send_ts), (DELIVERED, delivered, deliv_ts),
                           (BOUNCED, bounced, deliv_ts), (OPENED, opened, open_ts),
                           (UNSUBSCRIBED, unsub, unsub_ts)):
        cs, ps = np.nonzero(mask)
        acc.add(kind, ps, ts[cs, ps], aux=cs)
    cs, ps = np.nonzero(clicked)
    product = campaign_products[cs, rng.integers(0, campaign_products.shape[1], len(cs))]
    cts = click_ts[cs, ps]
    acc.add(CLICKED, ps, cts, aux=cs, product=product)
    return ps.astype(np.int64), cts, product.astype(np.int64)


def _shop(acc: _Acc, rng: np.random.Generator, now: int, days: int, scale: float,
          persona: npt.NDArray[np.int8], created: I64, clicks: tuple[I64, I64, I64],
          prices: F64) -> tuple[I64, I32, npt.NDArray[np.int16], I64]:
    n, n_products = len(persona), len(prices)
    active_from = np.maximum(created, now - days * DAY_MS)
    span = now - active_from
    n_sess = rng.poisson(SESSIONS_PER_DAY[persona] * span / DAY_MS * scale)
    sp = np.repeat(np.arange(n, dtype=np.int64), n_sess)
    st = active_from[sp] + (rng.random(len(sp)) * span[sp]).astype(np.int64)
    click_p, click_ts, click_prod = clicks
    visit = rng.random(len(click_p)) < P_CLICK_VISITS
    sp = np.concatenate([sp, click_p[visit]])
    st = np.concatenate([st, click_ts[visit] + rng.integers(20_000, 600_000, int(visit.sum()))])
    first_prod = np.concatenate([np.full(len(sp) - int(visit.sum()), -1), click_prod[visit]])
    keep = st < now
    sp, st, first_prod = sp[keep], st[keep], first_prod[keep]
    s = len(sp)

    n_views = 1 + rng.poisson(1.8, s)
    vs = np.repeat(np.arange(s, dtype=np.int64), n_views)
    group_first = np.cumsum(n_views) - n_views
    cum = np.cumsum(rng.integers(10_000, 180_000, len(vs)))
    vts = st[vs] + cum - cum[group_first][vs]
    popularity = 1.0 / (rng.permutation(n_products) + 1.0) ** 0.9
    prod = rng.choice(n_products, len(vs), p=popularity / popularity.sum())
    lead = (np.arange(len(vs)) == group_first[vs]) & (first_prod[vs] >= 0)
    prod[lead] = first_prod[vs][lead]
    seen = vts < now
    acc.add(VIEWED, sp[vs][seen], vts[seen], value=prices[prod][seen], aux=vs[seen],
            product=prod[seen])

    carted = seen & (rng.random(len(vs)) < P_CART[persona[sp[vs]]])
    cts_all = vts + rng.integers(5_000, 120_000, len(vs))
    r = rng.random(len(vs))
    qty_all = 1 + (r < 0.2) + (r < 0.05)
    bulk = rng.random(len(vs)) < P_BULK
    qty_all = np.where(bulk, rng.integers(20, 60, len(vs)), qty_all)
    cv = np.flatnonzero(carted & (cts_all < now))
    csess, cts, cprod, cqty = vs[cv], cts_all[cv], prod[cv], qty_all[cv]
    line_value = prices[cprod] * cqty
    acc.add(CARTED, sp[csess], cts, value=line_value, aux=csess, product=cprod, quantity=cqty)

    carts_per_sess = np.bincount(csess, minlength=s)
    propensity = rng.lognormal(0.0, 0.5, n)
    p_order = np.minimum(P_ORDER[persona[sp]] * propensity[sp], 0.95)
    ordered = (carts_per_sess > 0) & (rng.random(s) < p_order)
    last_cart = np.zeros(s, dtype=np.int64)
    np.maximum.at(last_cart, csess, cts)
    ots = last_cart + rng.integers(60_000, 2_400_000, s)
    ordered &= ots < now
    osess = np.flatnonzero(ordered)
    value = np.round(np.bincount(csess, weights=line_value, minlength=s)[osess], 2)
    acc.add(ORDERED, sp[osess], ots[osess], value=value, aux=np.arange(len(osess)))
    in_order = ordered[csess]
    item_start = np.concatenate([[0], np.cumsum(carts_per_sess[osess])]).astype(np.int64)
    return (item_start, cprod[in_order].astype(np.int32), cqty[in_order].astype(np.int16),
            osess.astype(np.int64))
