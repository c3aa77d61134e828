"""Configuration models: TOML -> frozen pydantic models (``extra="forbid"``).

These models are the *shape* of a config file. Rule strings stay strings here; the loader
(``mapping.config``) parses and type-checks every rule after the shape validates, so that all
errors — shape and rules alike — are reported at once with their TOML location.

Secrets never appear in a config file: any secret field takes ``"env:NAME"`` and is resolved
from the environment at run time (:func:`mapping.models.resolve_secret`).
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mapping.destinations import AuditConfig, DestinationsConfig
from mapping.errors import ConfigError

NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
DURATION_RE = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*$"

Name = Annotated[str, Field(pattern=NAME_RE, description="an identifier: letters, digits, _")]
Duration = Annotated[
    str, Field(pattern=DURATION_RE, description='a duration: "15m", "24h", "7d", "2w", "30s"')
]
AttrType = Literal["string", "number", "bool", "date", "datetime", "list"]
PropType = Literal["string", "number", "bool", "datetime", "list"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(Model):
    url: str = Field(
        "sqlite:///segsync.db",
        description="SQLAlchemy URL. A relative SQLite path is relative to the config file. "
        'PostgreSQL: "postgresql+psycopg://user@host/db" (or "env:NAME").',
    )


class EventTypeConfig(Model):
    properties: dict[Name, PropType] = Field(
        default_factory=dict, description="typed JSON properties of this event type"
    )
    exclude: str | None = Field(
        None,
        description='a filter over the event (props, "value") that drops outliers everywhere, '
        'e.g. "value > 5000"',
    )
    aliases: dict[Literal["hubspot", "klaviyo"], list[str]] = Field(
        default_factory=dict,
        description="provider event names mapped to this type (Klaviyo metric names, "
        "HubSpot email event types)",
    )


class PointsRule(Model):
    event: Name = Field(description="event type that earns the points")
    points: float = Field(description="points per matching event")
    where: str | None = Field(None, description="optional event filter")


class ScoreConfig(Model):
    points: list[PointsRule] = Field(min_length=1)
    half_life: Duration | None = Field(
        None, description="points of an event t old are weighted 0.5 ** (t / half_life)"
    )
    window: Duration | None = Field(None, description="only events within this window count")
    cap: float | None = Field(None, description="the score never exceeds this")
    tiers: dict[Name, float] = Field(
        default_factory=dict,
        description='tier label -> lower bound, e.g. {Low = 0, Medium = 20, High = 50}; '
        "the highest bound <= score wins",
    )


class RfmConfig(Model):
    event: Name = Field(description="the order event type")
    monetary: str = Field(
        "value", description='"value" or the name of a NUMBER property holding the order amount'
    )
    window: Duration | None = Field(None, description="only orders within this window count")


class Flag(Model):
    when: str = Field(description="a BOOL rule expression")
    points: float


class SegmentConfig(Model):
    rule: str | dict[str, object] | None = Field(
        None,
        description="an expression, or a nested table {all = [...]} / {any = [...]} / "
        "{not = ...} whose leaves are expressions",
    )
    description: str = ""
    flags: list[Flag] = Field(
        default_factory=list,
        description="weighted flags; the segment's weight is the sum of the points of the "
        "flags that hold",
    )
    min_weight: float | None = Field(
        None, description="with flags: member only when the weight reaches this"
    )
    priority: int = Field(0, description="higher wins inside an exclusive group")
    exclude: str | None = Field(None, description="contacts matching this are never members")
    min_dwell: Duration | None = Field(
        None, description="once entered, a member stays at least this long"
    )
    cooldown: Duration | None = Field(
        None, description="after an exit, no re-entry before this has passed"
    )

    @model_validator(mode="after")
    def _rule_or_flags(self) -> SegmentConfig:
        # on the segment itself, so the problem is reported at segments.NAME
        if self.rule is None and not self.flags:
            raise ValueError("a segment needs a rule or flags")
        return self


class GroupConfig(Model):
    kind: Literal["exclusive", "lifecycle"]
    segments: list[Name] = Field(
        min_length=1,
        description="exclusive: the candidates (highest weight, then priority, wins); "
        "lifecycle: the stages in order, earliest first",
    )
    resolve_by: Literal["priority", "weight"] = "priority"
    field: Name | None = Field(
        None, description="output field holding the winner (default: the group's name)"
    )


class HubSpotSource(Model):
    enabled: bool = True
    token: str = Field("env:HUBSPOT_TOKEN", description='"env:NAME"')
    base_url: str = Field("https://api.hubapi.com", description="the sandbox URL in tests")
    properties: list[str] = Field(default_factory=list)
    email_events: bool = True
    unified_events: bool = False
    attributes: dict[Name, str] = Field(
        default_factory=dict,
        description='segsync attribute -> HubSpot contact property, e.g. lifecycle_stage = '
        '"lifecyclestage"; a declared attribute not listed reads the property of its own name',
    )


class KlaviyoSource(Model):
    enabled: bool = True
    api_key: str = Field("env:KLAVIYO_API_KEY", description='"env:NAME"')
    base_url: str = Field("https://a.klaviyo.com", description="the sandbox URL in tests")
    metrics: list[str] = Field(default_factory=list, description="metric names to pull")
    attributes: dict[Name, str] = Field(
        default_factory=dict,
        description='segsync attribute -> profile field: a standard or location field '
        '("first_name", "city") or a custom property ("properties.plan" or "plan"); a declared '
        "attribute not listed reads the field of its own name",
    )


class SourcesConfig(Model):
    hubspot: HubSpotSource | None = None
    klaviyo: KlaviyoSource | None = None


class IdentityConfig(Model):
    match: Literal["email", "external_id"] = Field(
        "email", description="which key merges contacts from different sources first"
    )


class ServiceConfig(Model):
    """``[service]``: the HTTP service of ``segsync serve`` (sync.service)."""

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8787, ge=0, le=65535, description="port to listen on (0: any free port)")
    public_url: str | None = Field(
        None, description="the base URL the providers call (scheme://host[:port]), when a "
        "proxy sits in front: HubSpot signs the full URL it called")
    hubspot_client_secret: str | None = Field(
        None, description='"env:NAME": the HubSpot app\'s client secret (POST /webhooks/hubspot)')
    hubspot_legacy_signatures: list[Literal["v1", "v2"]] = Field(
        default_factory=list, description="also accept these legacy signature versions (no "
        "timestamp, so no replay protection)")
    klaviyo_webhook_secret: str | None = Field(
        None, description='"env:NAME": the Klaviyo webhook secret_key (POST /webhooks/klaviyo)')
    events_api_key: str | None = Field(
        None, description='"env:NAME": the key POST /events requires (X-API-Key header)')
    max_body_bytes: int = Field(5_000_000, ge=1024, description="larger requests get 413")
    replay_window: Duration = Field("5m", description="older (signed) requests are refused")
    max_future_skew: Duration = Field("30s", description="requests dated further ahead are refused")
    worker_batch: int = Field(500, ge=1, description="inbox items applied per transaction")
    inbox_retention: Duration = Field(
        "7d", description="processed inbox items are kept this long (duplicates are recognised)")
    tick: Duration = Field(
        "60s", description="how often exact-time exits and entries are checked (window edges)")
    push_linger: Duration = Field(
        "200ms", description="a real-time change waits at most this long for others to batch with")
    push_batch: int = Field(100, ge=1, le=10_000, description="real-time pushes flush at this size")
    forget_remote: list[Literal["hubspot", "klaviyo"]] = Field(
        default_factory=list, description="on a privacy deletion or `segsync forget`, also "
        "request deletion in these providers (queued with the forget, retried until accepted)")

    @field_validator("hubspot_client_secret", "klaviyo_webhook_secret", "events_api_key")
    @classmethod
    def _env_only(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError('secrets must be given as "env:NAME" (read from the environment), '
                             "not inline")
        return value


class ScheduleConfig(Model):
    """``[schedule]``: when ``segsync serve`` runs the job (``sync.schedule``)."""

    every: Duration | None = Field(
        None, description='run at this interval, e.g. "15m" (the default when cron is not set)')
    cron: str | None = Field(
        None, description='or a 5-field cron expression, e.g. "*/15 * * * *" or "0 6 * * 1-5"')
    timezone: str = Field("UTC", description='the time zone of the cron expression, e.g. "Europe/Berlin"')
    run_at_start: bool = Field(True, description="run once as soon as the service starts")

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleConfig:
        if self.every is not None and self.cron is not None:
            raise ValueError("give either every or cron, not both")
        if self.every is not None and parse_duration(self.every) < 1000:
            raise ValueError(f"every = {self.every!r}: the interval must be at least 1s")
        if self.cron is not None:
            from croniter import croniter

            if len(self.cron.split()) != 5 or not croniter.is_valid(self.cron):
                raise ValueError(f"cron = {self.cron!r} is not a 5-field cron expression "
                                 '(minute hour day-of-month month day-of-week, e.g. "*/15 * * * *")')
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone = {self.timezone!r} is not a known time zone "
                             '(an IANA name such as "UTC" or "Europe/Berlin")') from None
        return self


class ReportConfig(Model):
    """``[report]``: what ``segsync segments`` shows beside the sizes (``sync.stats``)."""

    min_segment_size: int = Field(
        100, ge=0, description="segments with fewer members are flagged (too small to act on)")
    window: Duration = Field("30d", description="open and click rates count the events of this window")
    sent_event: Name = Field("email_sent", description="the event type of a sent (delivered) email")
    open_event: Name = Field("opened_email", description="the event type of an email open")
    click_event: Name = Field("clicked_email", description="the event type of an email click")


class Config(Model):
    """A whole segsync configuration file."""

    store: StoreConfig = Field(default_factory=lambda: StoreConfig())
    identity: IdentityConfig = Field(default_factory=lambda: IdentityConfig())
    attributes: dict[Name, AttrType] = Field(default_factory=dict)
    events: dict[Name, EventTypeConfig] = Field(default_factory=dict)
    traits: dict[Name, str] = Field(
        default_factory=dict, description="named reusable expressions"
    )
    scores: dict[Name, ScoreConfig] = Field(default_factory=dict)
    rfm: RfmConfig | None = None
    segments: dict[Name, SegmentConfig] = Field(default_factory=dict)
    groups: dict[Name, GroupConfig] = Field(default_factory=dict)
    fields: dict[Name, str] = Field(
        default_factory=dict, description="computed output values: name -> expression"
    )
    sources: SourcesConfig = Field(default_factory=lambda: SourcesConfig())
    destinations: DestinationsConfig = Field(
        default_factory=lambda: DestinationsConfig(),
        description="what each destination receives (mapping.destinations)",
    )
    audit: AuditConfig = Field(default_factory=lambda: AuditConfig())
    service: ServiceConfig = Field(
        default_factory=lambda: ServiceConfig(), description="the HTTP service (segsync serve)"
    )
    schedule: ScheduleConfig = Field(
        default_factory=lambda: ScheduleConfig(), description="when segsync serve runs the job"
    )
    report: ReportConfig = Field(
        default_factory=lambda: ReportConfig(), description="segsync segments: rates and warnings"
    )


_DUR = re.compile(DURATION_RE)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration(text: str) -> int:
    """``"24h"`` -> milliseconds. Raises ValueError with the reason on a malformed duration."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*", text)
    if not m:
        raise ValueError(
            f'malformed duration {text!r}: expected a number and a unit (ms, s, m, h, d, w), e.g. "24h"'
        )
    return int(float(m.group(1)) * _UNIT_MS[m.group(2)])


def resolve_secret(value: str, where: str) -> str:
    """``"env:NAME"`` -> the environment variable's value; anything else is refused."""
    if not value.startswith("env:"):
        raise ConfigError(f'{where}: secrets must be given as "env:NAME", not inline')
    name = value[4:]
    try:
        return os.environ[name]
    except KeyError:
        raise ConfigError(f"{where}: environment variable {name} is not set") from None
