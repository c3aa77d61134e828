"""Shared fixtures of the Klaviyo stand-in tests: a running sandbox, the SDK, spec validation.

No tests here; the ``test_sandbox_klaviyo_*`` modules import from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from klaviyo_api import KlaviyoAPI
from openapi_schema_validator import OAS30Validator

from connectors.sandbox.klaviyo import KlaviyoSettings, KlaviyoState, build_app
from connectors.sandbox.server import SandboxServer

SPECS = Path(__file__).parent / "specs" / "klaviyo"
SPEC_FILES = ("profiles", "events", "metrics", "lists")


@cache
def spec(name: str) -> dict[str, Any]:
    return json.loads((SPECS / f"{name}.json").read_text())  # type: ignore[no-any-return]


@cache
def operations() -> dict[str, tuple[str, dict[str, Any]]]:
    """operationId -> (spec file, operation object)."""
    out = {}
    for name in SPEC_FILES:
        for ops in spec(name)["paths"].values():
            for op in ops.values():
                if isinstance(op, dict) and "operationId" in op:
                    out[op["operationId"]] = (name, op)
    return out


def validate(operation: str, status: int, body: Any) -> None:
    """Assert ``body`` matches the spec's response schema of ``operation`` for ``status``."""
    name, op = operations()[operation]
    responses = op["responses"]
    resp = responses.get(str(status)) or responses[f"{str(status)[0]}XX"]
    doc = spec(name)
    if "$ref" in resp:
        resp = doc["components"]["responses"][resp["$ref"].split("/")[-1]]
    if "content" not in resp:
        assert body in (None, b"", ""), f"{operation} {status} must have no body"
        return
    schema = dict(resp["content"]["application/vnd.api+json"]["schema"])
    schema["components"] = doc["components"]
    OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER).validate(body)


class Sandbox:
    def __init__(self, state: KlaviyoState, settings: KlaviyoSettings, server: SandboxServer):
        self.state, self.settings, self.server = state, settings, server
        self.url = server.url
        self.app = server.app

    def sdk(self, key: str = "pk_sandbox") -> Any:
        return KlaviyoAPI(
            key, test_host=self.url, max_retries=1, options={"USE_DICTIONARY_FOR_RESPONSE_DATA": True}
        )


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    settings = KlaviyoSettings(rate_limits=False, bulk_import_delay_s=0.05, bulk_import_chunk=2)
    state = KlaviyoState(settings)
    with SandboxServer(build_app(state, settings)) as server:
        yield Sandbox(state, settings, server)
