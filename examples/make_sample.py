"""Write the sample data set in this directory: ``contacts.csv`` and ``events.jsonl``.

Deterministic (fixed seed): running it again writes byte-identical files. 200 contacts and a few
thousand events over the 100 days before ``AS_OF``, for the attributes and event types of
``config.example.toml``. Contacts follow personas (engaged, casual, lapsed, new) and a few are
placed in the situations the example segments look for (a burst of opens in the last day, an
abandoned cart, an outlier order). Evaluate the sample ``--as-of 2025-03-01T00:00:00Z``.

    python3 examples/make_sample.py
"""

from __future__ import annotations

import csv
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

AS_OF = datetime(2025, 3, 1, tzinfo=UTC)
DAYS = 100
CONTACTS = 200
SEED = 20250301
HERE = Path(__file__).resolve().parent

COUNTRIES = ["US", "US", "US", "GB", "DE", "FR", "CA", "AU", "NL", "SE"]
CATEGORIES = {"shoes": (40, 180), "jackets": (80, 400), "bags": (30, 250), "socks": (5, 25)}
FIRST_NAMES = ["Ann", "Bo", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun"]
CAMPAIGNS = ["winter_sale", "new_arrivals", "weekly_digest", "vip_preview"]
PERSONAS = [("engaged", 0.3), ("casual", 0.4), ("lapsed", 0.2), ("new", 0.1)]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Sample:
    def __init__(self) -> None:
        self.rng = random.Random(SEED)
        self.events: list[dict[str, object]] = []
        self.serial = 0

    def product(self) -> tuple[str, str, float]:
        category = self.rng.choice(sorted(CATEGORIES))
        low, high = CATEGORIES[category]
        return f"{category}-{self.rng.randint(1, 12):02d}", category, float(self.rng.randint(low, high))

    def add(self, key: dict[str, str], type_: str, at: datetime, value: float | None,
            props: dict[str, object], with_id: bool = True) -> None:
        self.serial += 1
        row: dict[str, object] = {**key, "type": type_, "timestamp": iso(at)}
        if value is not None:
            row["value"] = value
        row["properties"] = props
        if with_id:
            row["event_id"] = f"evt_{self.serial:06d}"
        self.events.append(row)

    def email_events(self, key: dict[str, str], start: datetime, end: datetime, every_days: float,
                     click_share: float) -> None:
        at = start + timedelta(hours=self.rng.uniform(0, 24 * every_days))
        while at < end:
            campaign = self.rng.choice(CAMPAIGNS)
            self.add(key, "email_sent", at - timedelta(minutes=self.rng.randint(5, 600)), None,
                     {"campaign": campaign})
            if self.rng.random() < 0.25:  # sent, never opened
                at += timedelta(hours=self.rng.uniform(0.5, 2) * 24 * every_days)
                continue
            self.add(key, "opened_email", at, None, {"campaign": campaign},
                     with_id=self.rng.random() > 0.1)
            if self.rng.random() < click_share:
                name, _, price = self.product()
                url = f"https://shop.example.com/p/{name}"
                self.add(key, "clicked_email", at + timedelta(minutes=self.rng.randint(1, 90)),
                         None, {"campaign": campaign, "url": url, "product_price": price})
            at += timedelta(hours=self.rng.uniform(0.5, 2) * 24 * every_days)

    def shopping(self, key: dict[str, str], start: datetime, end: datetime, every_days: float,
                 buy_share: float) -> int:
        orders = 0
        at = start + timedelta(hours=self.rng.uniform(0, 24 * every_days))
        while at < end:
            name, category, price = self.product()
            for _ in range(self.rng.randint(1, 4)):
                self.add(key, "viewed_product", at, None,
                         {"product": name, "price": price, "category": category})
                at += timedelta(minutes=self.rng.randint(1, 30))
            if self.rng.random() < 0.5:
                self.add(key, "added_to_cart", at, price, {"product": name, "price": price})
                if self.rng.random() < buy_share:
                    items = self.rng.randint(1, 3)
                    paid = at + timedelta(minutes=self.rng.randint(2, 600))
                    self.serial += 1
                    self.add(key, "placed_order", paid, price * items,
                             {"order_id": f"ord_{self.serial:06d}", "items": items})
                    orders += 1
            at += timedelta(hours=self.rng.uniform(0.5, 2) * 24 * every_days)
        return orders


def build() -> tuple[list[dict[str, str]], list[dict[str, object]]]:
    sample = Sample()
    rng = sample.rng
    start = AS_OF - timedelta(days=DAYS)
    contacts: list[dict[str, str]] = []
    for n in range(1, CONTACTS + 1):
        persona = rng.choices([p for p, _ in PERSONAS], [w for _, w in PERSONAS])[0]
        email = f"customer{n:03d}@example.com" if n % 40 else ""  # a few have no email
        ext = f"C{n:05d}"
        key = {"email": email} if email else {"external_id": ext}
        signup = (AS_OF - timedelta(days=rng.randint(1, 19) if persona == "new"
                                    else rng.randint(20, 700))).date()
        active_from = max(start, datetime(signup.year, signup.month, signup.day, tzinfo=UTC))
        active_to = AS_OF - timedelta(days=rng.randint(40, 95)) if persona == "lapsed" else AS_OF
        every = {"engaged": 3.0, "casual": 9.0, "lapsed": 6.0, "new": 4.0}[persona]
        sample.email_events(key, active_from, active_to, every, 0.35 if persona == "engaged" else 0.1)
        orders = sample.shopping(key, active_from, active_to, every * 2.5,
                                 0.6 if persona == "engaged" else 0.3)
        plan = "paid" if orders and rng.random() < 0.7 else rng.choice(["free", "trial", ""])
        contacts.append({
            "email": email.upper() if n % 17 == 0 else email,  # normalised on import
            "external_id": ext,
            "first_name": rng.choice(FIRST_NAMES),
            "country": rng.choice(COUNTRIES),
            "plan": plan,
            "signup_date": signup.isoformat(),
            "email_opt_in": "false" if rng.random() < 0.08 else "true",
            "interests": ";".join(sorted(rng.sample(sorted(CATEGORIES), rng.randint(0, 2)))),
        })
    # situations the example segments look for, all relative to AS_OF
    spike = {"email": "customer005@example.com"}
    for minutes in (50, 200, 600, 1000):
        sample.add(spike, "opened_email", AS_OF - timedelta(minutes=minutes), None,
                   {"campaign": "winter_sale"})
    cart = {"email": "customer007@example.com"}
    sample.add(cart, "added_to_cart", AS_OF - timedelta(minutes=40), 120.0,
               {"product": "jackets-03", "price": 120.0})
    sample.add(spike, "clicked_email", AS_OF - timedelta(minutes=45), None,
               {"campaign": "winter_sale", "url": "https://shop.example.com/p/jackets-09",
                "product_price": 350.0})
    outlier = {"email": "customer011@example.com"}
    sample.add(outlier, "placed_order", AS_OF - timedelta(days=3), 9999.0,
               {"order_id": "ord_outlier", "items": 40})
    sample.events.sort(key=lambda e: (str(e["timestamp"]), str(e.get("event_id", ""))))
    return contacts, sample.events


def main(out: Path = HERE) -> None:
    contacts, events = build()
    with (out / "contacts.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(contacts[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(contacts)
    with (out / "events.jsonl").open("w", encoding="utf-8") as f:
        for event in events:
            f.write(json.dumps(event, separators=(",", ":")) + "\n")
    print(f"wrote {len(contacts)} contacts and {len(events)} events to {out}")


if __name__ == "__main__":
    main()
