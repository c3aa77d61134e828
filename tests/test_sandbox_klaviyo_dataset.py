"""Loading the synthetic data set into the Klaviyo stand-in, and live activity from it."""

from __future__ import annotations

from connectors.sandbox.dataset import KINDS, generate
from connectors.sandbox.klaviyo import KlaviyoSettings, KlaviyoState, build_app
from connectors.sandbox.klaviyo.loader import METRIC_OF_KIND


def test_load_dataset_profiles_events_and_live() -> None:
    ds = generate(400, seed=7)
    state = KlaviyoState(KlaviyoSettings(seed=7))
    state.load_dataset(ds)
    people = [p for p in ds.people if p.in_klaviyo]
    dup_merged = [
        p for p in people if p.quality == "duplicate" and ds.person(p.duplicate_of or "").in_klaviyo
    ]
    assert len(state.profiles) == len(people) - len(dup_merged)
    for p in people:
        if p.quality == "ok":
            prof = state.find("email", p.email)
            assert prof is not None and prof.attrs["first_name"] == p.first_name
        if p.quality == "invalid" and p.email.strip():
            assert state.find("email", p.email.strip()) is None
    assert all(len(pid) == 26 for pid in state.profiles)
    kinds = ds.activities.count_by_kind()
    in_k = {i for i, p in enumerate(ds.people) if p.in_klaviyo}
    expected = sum(
        1
        for i in range(len(ds.activities))
        if ds.activities.person[i] in in_k and KINDS[ds.activities.kind[i]] in METRIC_OF_KIND
    )
    assert len(state.events) == expected < sum(kinds.values())
    assert list(state.events.ms) == sorted(state.events.ms)
    order_metric = state.metrics[state.metric_by_name["Placed Order"]].index
    pos = state.events.metric.index(order_metric)
    props = state.events.properties(pos)
    assert props["order_id"].startswith("ORD-") and props["$value"] > 0
    assert {m.name for m in state.metrics.values()} == {n for n, _ in METRIC_OF_KIND.values()}

    app = build_app(state, state.settings)
    before = len(state.events)
    out = app.generate_live({"events": 5, "changes": 2, "seed": 1})
    assert len(out["events"]) == 5 and len(out["changes"]) == 2
    assert len(state.events) == before + 5
    again = KlaviyoState(KlaviyoSettings(seed=7))
    again.load_dataset(ds)
    assert sorted(again.profiles) == sorted(state.profiles)  # deterministic ids
