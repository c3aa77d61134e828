"""The synthetic data set behind both stand-ins: people and their activity, deterministic per seed.

Contract (stable; the HubSpot and Klaviyo stand-ins load from it):

* :func:`generate` returns a :class:`Dataset`. Same ``seed`` (and arguments) -> the same data; the
  time stamps are offsets from ``now_ms`` (wall clock floored to the minute when omitted), so two
  runs with different ``now_ms`` hold the same data shifted in time.
* ``Dataset.people`` is a tuple of :class:`Person`; ``Person.key`` (``"p0000042"``) is the stable
  id, ``index_of(key)`` its position. ``in_hubspot`` / ``in_klaviyo`` say which stand-in holds the
  person (most are in both, matched by email; some only in one). Data-quality cases on purpose:
  ``quality == "duplicate"`` (email is a case / whitespace variant of ``duplicate_of``'s email) and
  ``quality == "invalid"`` (malformed or empty email; such people never receive email events).
* ``Dataset.activities`` (:class:`Activities`) stores events columnar (numpy; ~30 bytes each),
  sorted by ``ts``. Iterating or indexing yields :class:`Activity` objects whose ``properties``
  are built on access; ``id`` is the position, stable per seed. Kinds and properties::

    email_sent / email_delivered / email_bounced / email_unsubscribed / email_opened
                     campaign_id, email_id, subject
    email_clicked    + url (https://shop.example/products/<slug>), product
    product_viewed   product, product_id, category, price, url          value = price
    added_to_cart    product, product_id, category, price, quantity, cart_id
                                                                        value = price * quantity
    order_placed     order_id, items (product names), item_count, cart_id   value = order total

  ``value`` is 0.0 for kinds without one. Columns ``person`` (index into ``people``), ``kind``
  (index into :data:`KINDS`), ``ts`` (epoch ms) and ``value`` are public read-only arrays for fast
  bulk loading; :meth:`Activities.select` narrows by kind / time / person.
* :mod:`connectors.sandbox.live` (``live_activity``, ``live_changes``) makes fresh, seeded
  activity and attribute changes for the "generate live activity" control call.

Behaviour modelled: personas (engaged / casual / dormant / new), a twice-weekly send cadence,
opens and clicks following deliveries, unsubscribes and bounces that stop later sends, browsing
sessions (some started by a click) -> carts -> orders with cart abandonment, repeat buyers (a
per-person purchase propensity), rare bulk orders (value outliers), lifecycle stages consistent
with behaviour (an order <=> ``customer``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from connectors.sandbox import _catalog
from connectors.sandbox._datagen import Columns, activity_columns

KINDS = (
    "email_sent", "email_delivered", "email_opened", "email_clicked", "email_bounced",
    "email_unsubscribed", "product_viewed", "added_to_cart", "order_placed",
)  # fmt: skip
EMAIL_KINDS = frozenset(KINDS[:6])
LIFECYCLE_STAGES = ("subscriber", "lead", "marketingqualifiedlead", "opportunity", "customer")
PERSONAS = ("engaged", "casual", "dormant", "new")
SHOP_URL = "https://shop.example/products/"
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Person:
    key: str
    email: str  # may be invalid, empty, or a case/whitespace variant of another person's email
    first_name: str
    last_name: str
    phone: str
    city: str
    country: str  # ISO 3166-1 alpha-2
    lifecycle_stage: str  # one of LIFECYCLE_STAGES
    created_at: int  # epoch ms
    in_hubspot: bool
    in_klaviyo: bool
    external_id: str | None  # shop customer id; None for people without a shop account
    persona: str  # one of PERSONAS
    quality: str  # "ok" | "duplicate" | "invalid"
    duplicate_of: str | None  # key of the person whose email this one duplicates


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    name: str
    slug: str
    category: str
    price: float

    @property
    def url(self) -> str:
        return SHOP_URL + self.slug


@dataclass(frozen=True, slots=True)
class Campaign:
    campaign_id: int
    email_id: int
    subject: str
    sent_at: int  # epoch ms
    products: tuple[int, ...]  # indices of the featured products (click targets)


@dataclass(frozen=True, slots=True)
class Activity:
    person_key: str
    kind: str
    ts: int  # epoch ms
    value: float
    properties: dict[str, Any]
    id: int  # position in Dataset.activities (live activity continues after it)


IntArray = npt.NDArray[np.int64]


class Activities:
    """Columnar, ``ts``-sorted activity store; rows become :class:`Activity` on access."""

    def __init__(self, cols: Columns, keys: Sequence[str], products: Sequence[Product],
                 campaigns: Sequence[Campaign]):
        order = np.lexsort((cols.person, cols.ts))
        self.person = cols.person[order]
        self.kind = cols.kind[order]
        self.ts = cols.ts[order]
        self.value = cols.value[order]
        self._aux = cols.aux[order]
        self._product = cols.product[order]
        self._quantity = cols.quantity[order]
        self._item_start = cols.item_start
        self._item_product = cols.item_product
        self._item_quantity = cols.item_quantity
        self._order_session = cols.order_session
        for a in (self.person, self.kind, self.ts, self.value):
            a.flags.writeable = False
        self._keys = keys
        self._products = products
        self._campaigns = campaigns
        self._by_person: tuple[IntArray, IntArray] | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def __iter__(self) -> Iterator[Activity]:
        return (self[i] for i in range(len(self.ts)))

    def __getitem__(self, i: int) -> Activity:
        if not -len(self.ts) <= i < len(self.ts):
            raise IndexError(i)
        i = int(i) % len(self.ts)
        kind = KINDS[self.kind[i]]
        return Activity(self._keys[self.person[i]], kind, int(self.ts[i]), float(self.value[i]),
                        self._properties(i, kind), i)

    @property
    def nbytes(self) -> int:
        arrays = (self.person, self.kind, self.ts, self.value, self._aux, self._product,
                  self._quantity, self._item_start, self._item_product, self._item_quantity,
                  self._order_session)
        return sum(a.nbytes for a in arrays)

    def select(self, kinds: Sequence[str] | None = None, since: int | None = None,
               until: int | None = None, person: int | None = None) -> IntArray:
        """Row indices (ascending ts) with kind in ``kinds``, ``since <= ts < until``, of ``person``."""
        if person is not None:
            idx = self.rows_of(person)
            if since is not None:
                idx = idx[self.ts[idx] >= since]
            if until is not None:
                idx = idx[self.ts[idx] < until]
        else:
            lo = 0 if since is None else int(np.searchsorted(self.ts, since, "left"))
            hi = len(self.ts) if until is None else int(np.searchsorted(self.ts, until, "left"))
            idx = np.arange(lo, hi, dtype=np.int64)
        if kinds is not None:
            codes = [KINDS.index(k) for k in kinds]
            idx = idx[np.isin(self.kind[idx], codes)]
        return idx

    def rows_of(self, person: int) -> IntArray:
        """Row indices of one person's activity, ascending ts."""
        if self._by_person is None:
            order = np.argsort(self.person, kind="stable").astype(np.int64)
            starts = np.searchsorted(self.person[order], np.arange(len(self._keys) + 1))
            self._by_person = (order, starts.astype(np.int64))
        order, starts = self._by_person
        return order[starts[person]:starts[person + 1]]

    def for_person(self, person: int) -> list[Activity]:
        return [self[int(i)] for i in self.rows_of(person)]

    def count_by_kind(self) -> dict[str, int]:
        counts = np.bincount(self.kind, minlength=len(KINDS))
        return {k: int(c) for k, c in zip(KINDS, counts, strict=True)}

    def _properties(self, i: int, kind: str) -> dict[str, Any]:
        if kind in EMAIL_KINDS:
            c = self._campaigns[self._aux[i]]
            props: dict[str, Any] = {"campaign_id": c.campaign_id, "email_id": c.email_id,
                                     "subject": c.subject}
            if kind == "email_clicked":
                p = self._products[self._product[i]]
                props.update(url=p.url, product=p.name)
            return props
        if kind == "order_placed":
            o = int(self._aux[i])
            lo, hi = int(self._item_start[o]), int(self._item_start[o + 1])
            return {"order_id": f"ORD-{100000 + o}",
                    "items": [self._products[j].name for j in self._item_product[lo:hi]],
                    "item_count": int(self._item_quantity[lo:hi].sum()),
                    "cart_id": f"cart-{int(self._order_session[o]):07d}"}
        p = self._products[self._product[i]]
        props = {"product": p.name, "product_id": p.product_id, "category": p.category,
                 "price": p.price, "url": p.url}
        if kind == "added_to_cart":
            props.update(quantity=int(self._quantity[i]), cart_id=f"cart-{int(self._aux[i]):07d}")
        return props


@dataclass(frozen=True)
class Dataset:
    seed: int
    now_ms: int
    days: int
    people: tuple[Person, ...]
    products: tuple[Product, ...]
    campaigns: tuple[Campaign, ...]
    activities: Activities

    def index_of(self, key: str) -> int:
        return int(key[1:])

    def person(self, key: str) -> Person:
        return self.people[self.index_of(key)]

    def hubspot_people(self) -> Iterator[Person]:
        return (p for p in self.people if p.in_hubspot)

    def klaviyo_people(self) -> Iterator[Person]:
        return (p for p in self.people if p.in_klaviyo)

    def summary(self) -> dict[str, Any]:
        people = self.people
        return {
            "seed": self.seed, "now_ms": self.now_ms, "days": self.days,
            "contacts": len(people),
            "in_hubspot": sum(p.in_hubspot for p in people),
            "in_klaviyo": sum(p.in_klaviyo for p in people),
            "in_both": sum(p.in_hubspot and p.in_klaviyo for p in people),
            "duplicates": sum(p.quality == "duplicate" for p in people),
            "invalid_emails": sum(p.quality == "invalid" for p in people),
            "activities": len(self.activities),
            "by_kind": self.activities.count_by_kind(),
        }


def generate(n_contacts: int = 5000, seed: int = 0, days: int = 110, now_ms: int | None = None,
             events_per_contact: float | None = None) -> Dataset:
    """Make ``n_contacts`` people and ~``events_per_contact`` (default ~95) events each over ``days``."""
    if n_contacts < 1 or days < 1:
        raise ValueError("n_contacts and days must be positive")
    if events_per_contact is not None and events_per_contact <= 0:
        raise ValueError("events_per_contact must be positive")
    now = now_ms if now_ms is not None else time.time_ns() // 60_000_000_000 * 60_000
    rng = np.random.default_rng(seed)
    products = _products(rng)
    n = n_contacts
    persona = rng.choice(len(PERSONAS), size=n, p=[0.15, 0.45, 0.25, 0.15]).astype(np.int8)
    age_days = np.where(persona == PERSONAS.index("new"), rng.uniform(0.5, 30, n),
                        rng.uniform(days + 1, 3 * 365, n))
    created = now - (age_days * DAY_MS).astype(np.int64)
    quality, dup_of, emails = _emails(rng, n)
    membership = rng.random(n)
    scale = 1.0 if events_per_contact is None else events_per_contact / 95.0
    campaigns = _campaigns(rng, now, days, scale, len(products))
    cols = activity_columns(rng, now=now, days=days, scale=scale, persona=persona,
                            created=created, sendable=quality != 2,
                            campaign_ts=np.array([c.sent_at for c in campaigns], dtype=np.int64),
                            campaign_products=np.array([c.products for c in campaigns]),
                            prices=np.array([p.price for p in products]))
    counts = {k: np.bincount(cols.person[cols.kind == KINDS.index(k)], minlength=n) for k in KINDS}
    stage = np.zeros(n, dtype=np.int8)
    stage[(counts["email_opened"] + counts["email_clicked"] + counts["product_viewed"]) > 0] = 1
    stage[(counts["email_clicked"] >= 2) | (counts["product_viewed"] >= 5)] = 2
    stage[counts["added_to_cart"] > 0] = 3
    stage[counts["order_placed"] > 0] = 4
    has_account = (counts["order_placed"] > 0) | (rng.random(n) < 0.4)
    first = rng.integers(0, len(_catalog.FIRST_NAMES), n)
    last = rng.integers(0, len(_catalog.LAST_NAMES), n)
    city = rng.integers(0, len(_catalog.CITIES), n)
    phone = rng.integers(200_000_000, 999_999_999, n)
    width = max(7, len(str(n - 1)))
    people: list[Person] = []
    for i in range(n):
        fn, ln = _catalog.FIRST_NAMES[first[i]], _catalog.LAST_NAMES[last[i]]
        d: int = int(dup_of[i])
        if d >= 0:  # a duplicate record of the same human: same name, variant email
            fn, ln = people[d].first_name, people[d].last_name
        cname, country, cc = _catalog.CITIES[city[i]]
        m = membership[i]
        people.append(Person(
            key=f"p{i:0{width}d}", email=emails[i](fn, ln, i, people[d].email if d >= 0 else ""),
            first_name=fn, last_name=ln, phone=f"+{cc}{phone[i]}", city=cname, country=country,
            lifecycle_stage=LIFECYCLE_STAGES[stage[i]], created_at=int(created[i]),
            in_hubspot=bool(m >= 0.08), in_klaviyo=bool(m < 0.08 or m >= 0.16),
            external_id=f"cust-{100000 + i}" if has_account[i] else None,
            persona=PERSONAS[persona[i]], quality=("ok", "duplicate", "invalid")[quality[i]],
            duplicate_of=f"p{d:0{width}d}" if d >= 0 else None,
        ))  # fmt: skip
    keys = [p.key for p in people]
    return Dataset(seed, int(now), days, tuple(people), products, campaigns,
                   Activities(cols, keys, products, campaigns))


def _products(rng: np.random.Generator) -> tuple[Product, ...]:
    names = _catalog.product_names()
    prices = np.round(np.exp(rng.normal(np.log(45.0), 0.6, len(names))), 0) - 0.01
    return tuple(Product(f"P{1000 + i}", name, slug, cat, float(max(prices[i], 4.99)))
                 for i, (name, slug, cat) in enumerate(names))


def _campaigns(rng: np.random.Generator, now: int, days: int, scale: float,
               n_products: int) -> tuple[Campaign, ...]:
    n = max(1, round(days * 2 / 7 * scale))
    start = now - days * DAY_MS
    spacing = (days - 1) * DAY_MS // n
    out = []
    for k in range(n):
        at = start + k * spacing + 10 * 3_600_000 + int(rng.integers(0, 3_600_000))
        featured = tuple(int(x) for x in rng.choice(n_products, 3, replace=False))
        out.append(Campaign(5000 + k, 90000 + k, f"Campaign {k + 1}: new in", at, featured))
    return tuple(out)


EmailMaker = Any  # Callable[[first, last, index, original_email], str]


def _emails(rng: np.random.Generator, n: int) -> tuple[npt.NDArray[np.int8], IntArray, list[EmailMaker]]:
    """Per person: quality code (0 ok, 1 duplicate, 2 invalid), original index, email maker."""
    r = rng.random(n)
    quality = np.zeros(n, dtype=np.int8)
    quality[(r < 0.01) & (np.arange(n) > 0)] = 1
    quality[(r >= 0.01) & (r < 0.02)] = 2
    domain = rng.integers(0, len(_catalog.DOMAINS), n)
    shape = rng.integers(0, len(_catalog.INVALID_EMAIL_SHAPES), n)
    variant = rng.integers(0, 3, n)
    dup_of = np.full(n, -1, dtype=np.int64)
    ok = np.flatnonzero(quality == 0)
    for d in np.flatnonzero(quality == 1).tolist():
        n_earlier = int(np.searchsorted(ok, d))
        if n_earlier == 0:
            quality[d] = 0
        else:
            dup_of[d] = int(ok[rng.integers(0, n_earlier)])
    makers: list[EmailMaker] = []
    for i in range(n):
        if quality[i] == 1:
            makers.append(_variant_maker(int(variant[i])))
        elif quality[i] == 2:
            makers.append(_invalid_maker(_catalog.INVALID_EMAIL_SHAPES[shape[i]]))
        else:
            makers.append(_valid_maker(_catalog.DOMAINS[domain[i]]))
    return quality, dup_of, makers


def _valid_maker(domain: str) -> EmailMaker:
    return lambda fn, ln, i, _orig: f"{fn}.{ln}{i}@{domain}".lower()


def _invalid_maker(shape: str) -> EmailMaker:
    return lambda fn, ln, i, _orig: shape.format(first=fn.lower(), last=f"{ln.lower()}{i}")


def _variant_maker(variant: int) -> EmailMaker:
    def make(fn: str, ln: str, i: int, orig: str) -> str:
        if variant == 0:
            return orig.upper()
        if variant == 1:
            return f"  {orig} "
        return orig[0].upper() + orig[1:]

    return make

