"""Start both stand-ins in-process: one synthetic data set, two loopback servers, the commons mounted.

``start_sandbox(...)`` generates the data set, builds the HubSpot and Klaviyo apps with the
stand-ins' own ``build_app(state, settings)``, loads the data set into their states, mounts the
generic ``/_sandbox/`` control routes (:mod:`connectors.sandbox.control`) with fault injection
(:mod:`connectors.sandbox.faults`) and serves both on ``127.0.0.1`` (port 0 = ephemeral).

Webhooks: ``webhook_url`` is the base URL of the receiving service; HubSpot notifications go to
``{webhook_url}/webhooks/hubspot`` and Klaviyo's to ``{webhook_url}/webhooks/klaviyo`` (segsync
``serve``'s paths). A URL containing ``{provider}`` is used as a template instead.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.sandbox.control import ControlHooks, mount_control
from connectors.sandbox.dataset import Dataset, generate
from connectors.sandbox.faults import FaultInjector, FaultRule, parse_spec
from connectors.sandbox.server import App, Request, Response, SandboxServer

# Route names of the stand-ins' own live-activity handlers, which ``/_sandbox/live`` forwards to.
LIVE_ROUTES = ("sandbox.hubspot.activity", "_sandbox.klaviyo.activity")
HUBSPOT_TOKEN = "pat-sandbox"
KLAVIYO_KEY = "pk_sandbox"


@dataclass
class Service:
    """One running stand-in: its app, state, settings, server and fault injector."""

    app: App
    state: Any
    settings: Any
    server: SandboxServer
    faults: FaultInjector

    @property
    def url(self) -> str:
        return self.server.url


@dataclass
class Sandbox:
    """Both stand-ins, running. A context manager; :meth:`stop` ends both servers."""

    dataset: Dataset
    hubspot: Service
    klaviyo: Service
    hubspot_token: str = HUBSPOT_TOKEN
    klaviyo_key: str = KLAVIYO_KEY
    _stopped: bool = field(default=False, repr=False)

    @property
    def hubspot_url(self) -> str:
        return self.hubspot.url

    @property
    def klaviyo_url(self) -> str:
        return self.klaviyo.url

    def set_faults(self, faults: str | Sequence[FaultRule] | None, seed: int | None = None) -> None:
        """Replace the fault rules of both stand-ins (route globs pick the provider's routes)."""
        rules = _rules(faults)
        for service in (self.hubspot, self.klaviyo):
            service.faults.configure(rules, seed)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for service in (self.hubspot, self.klaviyo):
            service.server.stop()
            for closer in ("close", "stop"):
                fn = getattr(service.app, closer, None)
                if callable(fn):
                    fn()
                    break

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(
    contacts: int = 5000,
    seed: int = 0,
    hubspot_port: int = 0,
    klaviyo_port: int = 0,
    faults: str | Sequence[FaultRule] | None = None,
    webhook_url: str | None = None,
    rate_limits: bool = True,
    *,
    dataset: Dataset | None = None,
    now_ms: int | None = None,
    events_per_contact: float | None = None,
    fault_seed: int | None = None,
) -> Sandbox:
    """Generate (or take) a data set and serve both stand-ins on loopback; see the module doc."""
    rules = _rules(faults)
    if dataset is None:
        dataset = generate(contacts, seed=seed, now_ms=now_ms, events_per_contact=events_per_contact)
    fseed = seed if fault_seed is None else fault_seed
    hubspot = _start_hubspot(dataset, hubspot_port, rules, fseed, _hook_url(webhook_url, "hubspot"),
                             rate_limits)  # fmt: skip
    try:
        klaviyo = _start_klaviyo(dataset, klaviyo_port, rules, fseed, _hook_url(webhook_url, "klaviyo"),
                                 rate_limits)  # fmt: skip
    except BaseException:
        hubspot.server.stop()
        raise
    return Sandbox(dataset, hubspot, klaviyo)


def _rules(faults: str | Sequence[FaultRule] | None) -> list[FaultRule]:
    if faults is None:
        return []
    return parse_spec(faults) if isinstance(faults, str) else list(faults)


def _hook_url(base: str | None, provider: str) -> str | None:
    if base is None:
        return None
    if "{provider}" in base:
        return base.replace("{provider}", provider)
    return f"{base.rstrip('/')}/webhooks/{provider}"


def _build_app(package: str) -> Callable[..., App]:
    for module in (f"{package}.app", package):
        try:
            fn = getattr(importlib.import_module(module), "build_app", None)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        if fn is not None:
            return fn  # type: ignore[no-any-return]
    raise RuntimeError(f"{package} has no build_app(state, settings)")


def _serve(app: App, state: Any, settings: Any, port: int, rules: list[FaultRule], fseed: int,
           hooks: ControlHooks) -> Service:
    injector = mount_control(app, hooks)
    injector.configure(rules, fseed)
    server = SandboxServer(app, port=port).start()
    return Service(app, state, settings, server, injector)


def _start_hubspot(dataset: Dataset, port: int, rules: list[FaultRule], fseed: int,
                   webhook_url: str | None, rate_limits: bool) -> Service:
    from connectors.sandbox.hubspot.settings import HubSpotSettings
    from connectors.sandbox.hubspot.state import HubSpotState

    settings = HubSpotSettings(tokens={HUBSPOT_TOKEN})
    settings.rate_limit.enabled = rate_limits
    settings.webhooks.url = webhook_url
    state = HubSpotState()
    state.load_dataset(dataset)
    app = _build_app("connectors.sandbox.hubspot")(state, settings)

    def get_limits() -> dict[str, Any]:
        return dataclasses.asdict(settings.rate_limit)

    def set_limits(patch: dict[str, Any]) -> None:
        settings.update({"rate_limit": patch})

    def reset() -> None:
        state.reset()
        limiter = getattr(app, "limiter", None)
        if limiter is not None:
            limiter.reset()

    hooks = ControlHooks(reset=reset, get_rate_limits=get_limits, set_rate_limits=set_limits,
                         live=_live_handler(app))  # fmt: skip
    return _serve(app, state, settings, port, rules, fseed, hooks)


def _live_handler(app: App) -> Callable[[Request], Response] | None:
    """The stand-in's own live-activity route (``POST /_sandbox/<provider>/activity``), if any."""
    for route in app.routes:
        if route.method == "POST" and route.name in LIVE_ROUTES:
            return route.handler
    return None


def _start_klaviyo(dataset: Dataset, port: int, rules: list[FaultRule], fseed: int,
                   webhook_url: str | None, rate_limits: bool) -> Service:
    from connectors.sandbox.klaviyo.settings import KlaviyoSettings
    from connectors.sandbox.klaviyo.state import KlaviyoState

    settings = KlaviyoSettings(api_keys=frozenset({KLAVIYO_KEY}), rate_limits=rate_limits,
                               webhook_url=webhook_url, seed=dataset.seed)  # fmt: skip
    state = KlaviyoState(settings)
    state.load_dataset(dataset)
    app = _build_app("connectors.sandbox.klaviyo")(state, settings)

    def reset() -> None:
        state.reset()
        state.load_dataset(dataset)
        limiter = getattr(app, "limiter", None)
        if limiter is not None:
            limiter.reset()

    def get_limits() -> dict[str, Any]:
        return {"enabled": settings.rate_limits, "scale": settings.rate_scale}

    def set_limits(patch: dict[str, Any]) -> None:
        unknown = set(patch) - {"enabled", "scale"}
        if unknown:
            names = ", ".join(sorted(unknown))
            raise ValueError(f"unknown rate-limit setting(s) {names} (known: enabled, scale)")
        enabled, scale = patch.get("enabled", settings.rate_limits), patch.get("scale", settings.rate_scale)
        if not isinstance(enabled, bool):
            raise ValueError("enabled must be true or false")
        if isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0:
            raise ValueError("scale must be a positive number")
        rescaled = float(scale) != settings.rate_scale
        settings.rate_limits, settings.rate_scale = enabled, float(scale)
        limiter = getattr(app, "limiter", None)
        if limiter is not None:
            limiter.scale = float(scale)
            if rescaled:  # counts of windows of the old length mean nothing in the new ones
                limiter.reset()

    hooks = ControlHooks(reset=reset, get_rate_limits=get_limits, set_rate_limits=set_limits,
                         live=_live_handler(app))  # fmt: skip
    return _serve(app, state, settings, port, rules, fseed, hooks)
