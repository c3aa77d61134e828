"""Webhook signature verification: the API_FACTS.md vectors and every way to fail."""

from __future__ import annotations

import pytest

from connectors.hubspot import signature as hs
from connectors.klaviyo import signature as kl

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URI = "https://www.example.com/webhook_uri"
V1_BODY = (
    '[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    '"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
    '"changeFlag":"NEW","appId":54321}]'
)
TS = 1564113600000
KL_SECRET = "0123456789abcdef0123"
KL_TS = "2024-06-28T12:00:00+00:00"
KL_BODY = (
    b'{"data":[{"topic":"event:klaviyo.opened_email","external_id":"evt_1","payload":{}}],'
    b'"meta":{"klaviyo_account_id":"ABC123","klaviyo_webhook_id":"01HX",'
    b'"timestamp":"2024-06-28T12:00:00+00:00"}}'
)
KL_NOW = 1719576000000  # 2024-06-28T12:00:00Z


@pytest.mark.parametrize(("computed", "expected"), [
    (lambda: hs.signature_v1(SECRET, V1_BODY),
     "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"),
    (lambda: hs.signature_v2(SECRET, "GET", URI),
     "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"),
    (lambda: hs.signature_v2(SECRET, "POST", URI, '{"example_field":"example_value"}'),
     "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"),
    (lambda: hs.signature_v3(SECRET, "POST", URI, V1_BODY, TS),
     "DxmVAjFNa2xfF3YgQjdZP6TNcok9k1oaH7UXombPtvw="),
    (lambda: kl.sign(KL_SECRET, KL_BODY, KL_TS),
     "f0923d2b45eecc044092e17dd590facf1de54e2d09a8294ca13d755b0ab84c23"),
], ids=["hubspot-v1", "hubspot-v2-get", "hubspot-v2-post", "hubspot-v3", "klaviyo"])
def test_api_facts_vectors(computed: object, expected: str) -> None:
    assert callable(computed)
    assert computed() == expected


@pytest.mark.parametrize(("raw", "decoded"), [
    ("https://h.example/p%3Aa%2Fb%3Fc%40d", "https://h.example/p:a/b?c@d"),
    ("/w?x=%21%24%27%28%29%2a%2C%3b", "/w?x=!$'()*,;"),
    ("/w?email=a%2Bb%40x.com&q=%20", "/w?email=a%2Bb@x.com&q=%20"),  # %2B and %20 stay
])
def test_uri_decoding_only_touches_the_listed_escapes(raw: str, decoded: str) -> None:
    assert hs.decode_uri(raw) == decoded


def test_v3_hashes_the_decoded_uri() -> None:
    encoded = "https://www.example.com/hook?email=a%40b.com"
    plain = "https://www.example.com/hook?email=a@b.com"
    assert hs.signature_v3(SECRET, "POST", encoded, "[]", TS) == hs.signature_v3(
        SECRET, "POST", plain, "[]", TS)
    sig = hs.signature_v3(SECRET, "POST", plain, "[]", TS)
    headers = {"x-hubspot-signature-v3": sig, "x-hubspot-request-timestamp": str(TS)}
    assert hs.verify(headers, "POST", encoded, b"[]", SECRET, TS) == "v3"


def _v3_headers(ts: int = TS, secret: str = SECRET, body: str = V1_BODY) -> dict[str, str]:
    return {"x-hubspot-signature-v3": hs.signature_v3(secret, "POST", URI, body, ts),
            "x-hubspot-request-timestamp": str(ts)}


def test_v3_accepts_a_fresh_signed_request() -> None:
    assert hs.verify(_v3_headers(), "POST", URI, V1_BODY.encode(), SECRET, TS + 1000) == "v3"


@pytest.mark.parametrize(("headers", "body", "now", "reason"), [
    (_v3_headers(), V1_BODY.replace("123", "124"), TS, "does not match"),
    (_v3_headers(secret="wrong"), V1_BODY, TS, "does not match"),
    (_v3_headers(), V1_BODY, TS + 5 * 60_000 + 1, "stale"),
    (_v3_headers(ts=TS + 31_000), V1_BODY, TS, "in the future"),
    ({"x-hubspot-signature-v3": "x"}, V1_BODY, TS, "malformed x-hubspot-request-timestamp"),
    ({**_v3_headers(), "x-hubspot-request-timestamp": "2019-07-26"}, V1_BODY, TS, "malformed"),
    ({}, V1_BODY, TS, "missing X-HubSpot-Signature-v3"),
    ({"x-hubspot-signature": hs.signature_v1(SECRET, V1_BODY), "x-hubspot-signature-version": "v1"},
     V1_BODY, TS, "not accepted"),
], ids=["tampered-body", "wrong-secret", "stale", "future", "no-timestamp", "bad-timestamp",
        "unsigned", "legacy-not-configured"])
def test_v3_rejections(headers: dict[str, str], body: str, now: int, reason: str) -> None:
    with pytest.raises(hs.InvalidSignature, match=reason):
        hs.verify(headers, "POST", URI, body.encode(), SECRET, now)


def test_a_bad_v3_signature_is_not_rescued_by_a_legacy_one() -> None:
    headers = {**_v3_headers(secret="wrong"), "x-hubspot-signature": hs.signature_v1(SECRET, V1_BODY),
               "x-hubspot-signature-version": "v1"}
    with pytest.raises(hs.InvalidSignature):
        hs.verify(headers, "POST", URI, V1_BODY.encode(), SECRET, TS, legacy_versions=("v1",))


@pytest.mark.parametrize(("version", "signature"), [
    ("v1", hs.signature_v1(SECRET, V1_BODY)),
    ("v2", hs.signature_v2(SECRET, "POST", URI, V1_BODY)),
])
def test_legacy_versions_only_when_configured(version: str, signature: str) -> None:
    headers = {"x-hubspot-signature": signature, "x-hubspot-signature-version": version}
    got = hs.verify(headers, "POST", URI, V1_BODY.encode(), SECRET, TS, legacy_versions=(version,))
    assert got == version
    with pytest.raises(hs.InvalidSignature, match="not accepted"):
        hs.verify(headers, "POST", URI, V1_BODY.encode(), SECRET, TS)
    tampered = V1_BODY.replace("CRM", "API").encode()
    with pytest.raises(hs.InvalidSignature, match="does not match"):
        hs.verify(headers, "POST", URI, tampered, SECRET, TS, legacy_versions=(version,))


# ------------------------------------------------------------------------------- Klaviyo


def _kl_headers(ts: str = KL_TS, secret: str = KL_SECRET, body: bytes = KL_BODY,
                webhook_id: str = "01HX") -> dict[str, str]:
    return {"klaviyo-signature": kl.sign(secret, body, ts), "klaviyo-timestamp": ts,
            "klaviyo-webhook-id": webhook_id}


def test_klaviyo_accepts_the_vector_request() -> None:
    kl.verify(_kl_headers(), KL_BODY, KL_SECRET, KL_NOW + 10_000)


@pytest.mark.parametrize(("headers", "body", "now", "reason"), [
    (_kl_headers(), KL_BODY.replace(b"evt_1", b"evt_2"), KL_NOW, "does not match"),
    (_kl_headers(secret="other"), KL_BODY, KL_NOW, "does not match"),
    (_kl_headers(), KL_BODY, KL_NOW + 5 * 60_000 + 1000, "s old"),
    (_kl_headers(), KL_BODY, KL_NOW - 5 * 60_000 - 1000, "in the future"),
    (_kl_headers(webhook_id="01HY"), KL_BODY, KL_NOW, "Klaviyo-Webhook-Id does not match"),
    (_kl_headers(ts="yesterday"), KL_BODY, KL_NOW, "unreadable"),
    ({"klaviyo-timestamp": KL_TS, "klaviyo-webhook-id": "01HX"}, KL_BODY, KL_NOW,
     "missing klaviyo-signature"),
], ids=["tampered-body", "wrong-secret", "stale", "future", "webhook-id-mismatch", "bad-timestamp",
        "unsigned"])
def test_klaviyo_rejections(headers: dict[str, str], body: bytes, now: int, reason: str) -> None:
    with pytest.raises(kl.InvalidSignature, match=reason):
        kl.verify(headers, body, KL_SECRET, now)


@pytest.mark.parametrize("text", [
    "2024-06-28T12:00:00+00:00", "2024-06-28T12:00:00Z", "2024-06-28T14:00:00+02:00",
    "Fri, 28 Jun 2024 12:00:00 GMT", "1719576000", "1719576000000",
])
def test_klaviyo_timestamps_are_parsed_leniently(text: str) -> None:
    assert kl.parse_timestamp(text) == KL_NOW


def test_klaviyo_rfc1123_timestamp_is_hashed_as_sent() -> None:
    ts = "Fri, 28 Jun 2024 12:01:00 GMT"
    kl.verify(_kl_headers(ts=ts), KL_BODY, KL_SECRET, KL_NOW)
