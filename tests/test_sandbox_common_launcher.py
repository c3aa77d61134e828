"""``start_sandbox``: both real stand-ins, the commons mounted, faults seen by real clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3

from connectors.sandbox import Sandbox, start_sandbox

NOW = 1_750_000_000_000


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with start_sandbox(contacts=300, seed=4, now_ms=NOW, rate_limits=False) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def clean(sb: Sandbox) -> Iterator[None]:
    yield
    sb.set_faults(None)
    for url in (sb.hubspot_url, sb.klaviyo_url):
        requests.post(f"{url}/_sandbox/reset", timeout=5).raise_for_status()


def hs(sb: Sandbox, method: str, path: str, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {sb.hubspot_token}"}
    return requests.request(method, sb.hubspot_url + path, headers=headers, timeout=10, **kw)


def kl(sb: Sandbox, method: str, path: str, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Klaviyo-API-Key {sb.klaviyo_key}", "revision": "2024-10-15"}
    return requests.request(method, sb.klaviyo_url + path, headers=headers, timeout=10, **kw)


def city_of(sb: Sandbox, contact_id: str) -> str | None:
    r = requests.get(f"{sb.hubspot_url}/_sandbox/hubspot/contacts/{contact_id}", timeout=5)
    r.raise_for_status()
    return r.json()["properties"].get("city")  # type: ignore[no-any-return]


BATCH = "/crm/v3/objects/contacts/batch/update"


def test_both_serve_the_dataset(sb: Sandbox) -> None:
    in_hubspot = {p.email.strip().lower() for p in sb.dataset.people if p.in_hubspot}
    page = hs(sb, "GET", "/crm/v3/objects/contacts", params={"limit": 100}).json()
    assert {c["properties"]["email"] for c in page["results"]} <= in_hubspot
    profiles = kl(sb, "GET", "/api/profiles", params={"page[size]": 10}).json()["data"]
    emails = {p.email for p in sb.dataset.people if p.in_klaviyo}
    assert profiles and all(p["attributes"]["email"] in emails | {None} for p in profiles)
    assert sb.hubspot_url.startswith("http://127.0.0.1:") and sb.klaviyo_url != sb.hubspot_url


def test_reset_after_applies_the_batch_but_the_client_sees_a_connection_error(sb: Sandbox) -> None:
    sb.set_faults("reset_after=1#1@contacts.batch.update")
    before = city_of(sb, "1")
    with pytest.raises(requests.ConnectionError):
        hs(sb, "POST", BATCH, json={"inputs": [{"id": "1", "properties": {"city": "Atlantis"}}]})
    assert before != "Atlantis" and city_of(sb, "1") == "Atlantis"
    log = requests.get(f"{sb.hubspot_url}/_sandbox/log", params={"route": "contacts.batch.*"}, timeout=5)
    assert [e["status"] for e in log.json()["entries"]] == [0]


def test_reset_before_leaves_state_untouched(sb: Sandbox) -> None:
    sb.set_faults("reset=1#1@contacts.batch.update")
    before = city_of(sb, "2")
    with pytest.raises(requests.ConnectionError):
        hs(sb, "POST", BATCH, json={"inputs": [{"id": "2", "properties": {"city": "Atlantis"}}]})
    assert city_of(sb, "2") == before


def test_the_official_sdk_sees_the_lost_response(sb: Sandbox) -> None:
    from hubspot import HubSpot
    from hubspot.crm.contacts import BatchInputSimplePublicObjectBatchInput, SimplePublicObjectBatchInput

    client = HubSpot(access_token=sb.hubspot_token, host=sb.hubspot_url)
    sb.set_faults("reset_after=1#1@contacts.batch.update")
    body = BatchInputSimplePublicObjectBatchInput(
        inputs=[SimplePublicObjectBatchInput(id="3", properties={"city": "Lemuria"})]
    )
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.crm.contacts.batch_api.update(batch_input_simple_public_object_batch_input=body)
    assert city_of(sb, "3") == "Lemuria"


def test_faulted_429_is_hubspots_shape(sb: Sandbox) -> None:
    sb.set_faults("429=1#1@contacts.list")
    r = hs(sb, "GET", "/crm/v3/objects/contacts")
    body = r.json()
    assert r.status_code == 429 and body["category"] == "RATE_LIMITS" and body["correlationId"]
    assert hs(sb, "GET", "/crm/v3/objects/contacts").status_code == 200


def test_faulted_429_and_5xx_are_klaviyos_shape(sb: Sandbox) -> None:
    sb.set_faults("429=1#1@get_profiles,503=1#1@get_metrics")
    r = kl(sb, "GET", "/api/profiles")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert r.json()["errors"][0]["code"] == "throttled"
    r = kl(sb, "GET", "/api/metrics")
    assert r.status_code == 503 and r.json()["errors"][0]["status"] == 500  # the provider's 5xx body


def test_partial_gives_a_207(sb: Sandbox) -> None:
    sb.set_faults("partial=1#1@contacts.batch.update")
    inputs = [{"id": str(i), "properties": {"city": f"Town {i}"}} for i in range(1, 11)]
    r = hs(sb, "POST", BATCH, json={"inputs": inputs})
    assert r.status_code == 207
    body = r.json()
    assert body["numErrors"] >= 1 and len(body["results"]) + body["numErrors"] == 10


def test_control_on_both(sb: Sandbox) -> None:
    for url in (sb.hubspot_url, sb.klaviyo_url):
        r = requests.put(f"{url}/_sandbox/faults", json={"spec": "slow=1:10ms", "seed": 2}, timeout=5)
        assert r.json()["seed"] == 2
    assert sb.hubspot.faults.seed == 2 and sb.klaviyo.faults.seed == 2
    r = requests.put(f"{sb.hubspot_url}/_sandbox/rate-limits", json={"max_requests": 100}, timeout=5)
    assert r.json()["max_requests"] == 100 and sb.hubspot.settings.rate_limit.max_requests == 100
    r = requests.put(f"{sb.klaviyo_url}/_sandbox/rate-limits", json={"scale": 0.5}, timeout=5)
    assert r.json() == {"enabled": False, "scale": 0.5}
    r = requests.put(f"{sb.klaviyo_url}/_sandbox/rate-limits", json={"scale": -1}, timeout=5)
    assert r.status_code == 400 and "positive" in r.json()["error"]
    requests.put(f"{sb.hubspot_url}/_sandbox/rate-limits", json={"max_requests": 190}, timeout=5)
    requests.put(f"{sb.klaviyo_url}/_sandbox/rate-limits", json={"scale": 1}, timeout=5)


def test_live_activity_through_the_generic_route(sb: Sandbox) -> None:
    r = requests.post(f"{sb.hubspot_url}/_sandbox/live", json={"count": 4, "seed": 1}, timeout=5)
    assert r.status_code == 200 and r.json()["generated"] == 4
    r = requests.post(f"{sb.klaviyo_url}/_sandbox/live", json={"events": 3, "seed": 1}, timeout=5)
    assert r.ok and len(r.json()["events"]) == 3


def test_reset_restores_the_dataset(sb: Sandbox) -> None:
    hs(sb, "POST", BATCH, json={"inputs": [{"id": "5", "properties": {"city": "Mu"}}]}).raise_for_status()
    assert city_of(sb, "5") == "Mu"
    requests.post(f"{sb.hubspot_url}/_sandbox/reset", timeout=5).raise_for_status()
    assert city_of(sb, "5") != "Mu"
    routes = requests.get(f"{sb.hubspot_url}/_sandbox/counters", timeout=5).json()["routes"]
    assert "contacts.batch.update" not in routes


def test_webhook_urls_and_stop() -> None:
    sandbox = start_sandbox(contacts=20, seed=1, webhook_url="http://127.0.0.1:9/", faults="429=0.5")
    try:
        assert sandbox.hubspot.settings.webhooks.url == "http://127.0.0.1:9/webhooks/hubspot"
        assert sandbox.klaviyo.settings.webhook_url == "http://127.0.0.1:9/webhooks/klaviyo"
        assert sandbox.hubspot.settings.rate_limit.enabled and sandbox.klaviyo.settings.rate_limits
        assert sandbox.klaviyo.faults.to_json()["spec"] == "429=0.5"
        url = sandbox.hubspot_url
    finally:
        sandbox.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_sandbox/counters", timeout=2)
    sandbox.stop()  # idempotent


def test_the_python_example_in_the_docs_runs() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "sandbox.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "start_sandbox(" in b]
    assert len(blocks) == 1
    exec(compile(blocks[0], "docs/sandbox.md", "exec"), {})
