"""``segsync sandbox``: run the local HubSpot and Klaviyo stand-ins until Ctrl-C."""

from __future__ import annotations

import json
import threading
from typing import Annotated, Any

import typer
from rich.console import Console

from connectors.sandbox.faults import FaultSpecError, parse_spec
from mapping.errors import InputError


def _lines(info: dict[str, Any]) -> list[str]:
    hs, kl = info["hubspot"], info["klaviyo"]
    return [
        f"segsync sandbox: {info['contacts']:,} contacts, {info['activities']:,} activities "
        f"(seed {info['seed']}); rate limits {'on' if info['rate_limits'] else 'off'}",
        f"  HubSpot  {hs['url']}  access token: {hs['token']}",
        f"  Klaviyo  {kl['url']}  API key: {kl['key']}",
        f"  faults   {info['faults'] or 'none'}",
        f"  webhooks {info['webhook_url'] or 'off'}",
        "",
        "Control (both servers, no auth):",
        f"  curl {hs['url']}/_sandbox/log?limit=20           request log",
        f"  curl {hs['url']}/_sandbox/counters               requests per route and status",
        f"  curl -X PUT {hs['url']}/_sandbox/faults -d '{{\"spec\": \"429=0.1@contacts.*\"}}'",
        f"  curl -X PUT {kl['url']}/_sandbox/rate-limits -d '{{\"enabled\": false}}'",
        f"  curl -X POST {hs['url']}/_sandbox/live -d '{{\"events\": 20, \"changes\": 5}}'   live activity",
        f"  curl -X POST {kl['url']}/_sandbox/reset          back to the generated data",
        "",
        "Press Ctrl-C to stop.",
    ]


def register(app: typer.Typer) -> None:
    """Add ``sandbox`` to ``app``."""

    @app.command("sandbox")
    def sandbox(
        contacts: Annotated[int, typer.Option(min=1, help="synthetic contacts to generate")] = 5000,
        seed: Annotated[int, typer.Option(help="seed of the data set and of fault injection")] = 0,
        hubspot_port: Annotated[int, typer.Option(min=0, max=65535, help="0 = any free port")] = 0,
        klaviyo_port: Annotated[int, typer.Option(min=0, max=65535, help="0 = any free port")] = 0,
        faults: Annotated[
            str | None,
            typer.Option(help='fault spec, e.g. "429=0.1,reset_after=0.02@contacts.*" (docs/sandbox.md)'),
        ] = None,
        webhook_url: Annotated[
            str | None,
            typer.Option(help="base URL receiving webhooks: {URL}/webhooks/hubspot and /webhooks/klaviyo"),
        ] = None,
        no_rate_limits: Annotated[
            bool, typer.Option("--no-rate-limits", help="turn rate limiting off")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print the URLs as one JSON line")] = False,
    ) -> None:
        """Start local stand-ins of the HubSpot and Klaviyo APIs and keep them running."""
        if faults:
            try:
                parse_spec(faults)
            except FaultSpecError as e:
                raise InputError(f"--faults: {e}") from None
        if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
            raise InputError(f"--webhook-url: {webhook_url!r} is not an http(s) URL")
        from connectors.sandbox.launcher import start_sandbox

        console = Console(stderr=True)
        with console.status(f"generating {contacts:,} contacts and starting the stand-ins"):
            try:
                sb = start_sandbox(contacts, seed, hubspot_port, klaviyo_port, faults, webhook_url,
                                   rate_limits=not no_rate_limits)  # fmt: skip
            except OSError as e:
                raise InputError(f"cannot listen on the requested port: {e.strerror or e}") from None
        info = {
            "contacts": len(sb.dataset.people), "activities": len(sb.dataset.activities),
            "seed": seed, "rate_limits": not no_rate_limits, "faults": faults, "webhook_url": webhook_url,
            "hubspot": {"url": sb.hubspot_url, "token": sb.hubspot_token},
            "klaviyo": {"url": sb.klaviyo_url, "key": sb.klaviyo_key},
        }  # fmt: skip
        try:
            if as_json:
                print(json.dumps(info), flush=True)
            else:
                print("\n".join(_lines(info)), flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            console.print("stopping the sandbox")
        finally:
            sb.stop()
