"""The store's tables (SQLAlchemy 2 Core), the same on SQLite and PostgreSQL.

Conventions: instants are BIGINT epoch milliseconds UTC; emails are stored normalised
(trimmed, lower-case); contact attributes are one JSON object per contact whose values are
already typed (numbers as numbers, dates/datetimes as epoch ms, lists as arrays of strings).

The current shape is created by the versioned migrations in ``sync.store.migrations``; this
module is the shape those migrations produce, used to build queries.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import postgresql

metadata = MetaData()

# JSON documents that rules read key by key: binary JSONB on PostgreSQL (each ``->`` on ``json``
# parses the whole text again), JSON text elsewhere.
JsonDoc = JSON().with_variant(postgresql.JSONB(), "postgresql")

# BIGINT that is still an alias of ROWID on SQLite (auto-increment, fast lookups).
BigId = BigInteger().with_variant(Integer(), "sqlite")
# SMALLINT that is still a ROWID alias on SQLite (only "INTEGER PRIMARY KEY" auto-numbers there).
SmallId = SmallInteger().with_variant(Integer(), "sqlite")

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", BigInteger, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=True, unique=True),
    Column("external_id", String(255), nullable=True, unique=True),
    Column("attributes", JsonDoc, nullable=False, default=dict),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

identities = Table(
    "identities",
    metadata,
    Column("provider", String(32), primary_key=True),
    Column("provider_id", String(255), primary_key=True),
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(320), nullable=True),
    Column("archived", Boolean, nullable=False, default=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_identities_contact", "contact_id"),
    Index("ix_identities_email", "email"),  # migration 2
)

event_types = Table(
    "event_types",
    metadata,
    Column("id", SmallId, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("contact_id", BigId, nullable=False),
    Column("type_id", SmallId, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("value", Float, nullable=True),
    Column("properties", JsonDoc, nullable=True),
    Column("source", String(32), nullable=False),
    # provider event id, or "sha256:<hex>" of the canonical content when there is none
    Column("source_event_id", String(255), nullable=False),
    UniqueConstraint("source", "source_event_id", name="uq_events_source_id"),
    # the covering index every per-contact aggregate walks
    Index("ix_events_contact_type_ts", "contact_id", "type_id", "ts", "value"),
    # window-edge scans for exact-time exits: which contacts had an event of type T in (a, b]
    Index("ix_events_type_ts", "type_id", "ts", "contact_id"),
    # migration 5: whole-population trait passes, one type in contact order (sync.evaluate)
    Index("ix_events_type_contact_ts", "type_id", "contact_id", "ts", "value"),
)

memberships = Table(
    "memberships",
    metadata,
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("segment", String(128), primary_key=True),
    Column("entered_at", BigInteger, primary_key=True),
    Column("exited_at", BigInteger, nullable=True),  # NULL while a member
    Column("rule_hash", String(64), nullable=False),
    Index("ix_memberships_segment_open", "segment", "exited_at"),
    Index("ix_memberships_open_contact", "contact_id", "segment",
          sqlite_where=text("exited_at IS NULL"), postgresql_where=text("exited_at IS NULL")),
)

group_state = Table(
    "group_state",
    metadata,
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("group_name", String(128), primary_key=True),
    Column("value", String(128), nullable=True),
    Column("since", BigInteger, nullable=False),
)

computed_values = Table(
    "computed_values",
    metadata,
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("value", JSON, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)

rank_cutoffs = Table(
    "rank_cutoffs",
    metadata,
    Column("rank_key", String(64), primary_key=True),  # hash of the ranked expression
    Column("k", Integer, primary_key=True),  # 0..n
    Column("cutoff", Float, nullable=True),
    Column("population", BigInteger, nullable=False),
    Column("computed_at", BigInteger, nullable=False),
)

desired_values = Table(
    "desired_values",
    metadata,
    Column("destination", String(32), primary_key=True),  # "hubspot" | "klaviyo"
    Column("record_id", String(255), primary_key=True),  # provider record id
    Column("target", String(255), primary_key=True),  # "field:<name>" or "list:<name>"
    Column("contact_id", BigId, nullable=False),
    Column("value", JSON, nullable=True),
    Column("reason", Text, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)

acked_values = Table(
    "acked_values",
    metadata,
    Column("destination", String(32), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("target", String(255), primary_key=True),
    Column("value", JSON, nullable=True),
    Column("acked_at", BigInteger, nullable=False),
    Column("request_id", String(128), nullable=True),
)

cursors = Table(
    "cursors",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("stream", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # evaluate | pull | run | import | ...
    Column("trigger", String(32), nullable=False, default="manual"),
    Column("as_of", BigInteger, nullable=True),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),  # running | ok | partial | error
    Column("summary", JSON, nullable=True),
)

# migration 3: the durable outbox of planned changes and the audit log (sync.outbox, sync.audit)
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("destination", String(32), nullable=False),
    Column("record_id", String(255), nullable=False),
    Column("target", String(255), nullable=False),  # "field:<name>" | "list:<name>" | "event:..."
    Column("op", String(16), nullable=False),
    Column("value", JSON, nullable=True),
    Column("idempotency_key", String(64), nullable=False),
    Column("contact_id", BigInteger, nullable=True),
    Column("contact_key", String(320), nullable=True),
    Column("old_value", JSON, nullable=True),
    Column("reason", Text, nullable=True),
    Column("segments", Text, nullable=True),  # ",a,b," (for audit filters)
    Column("run_id", BigInteger, nullable=True),
    Column("trigger", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # pending | inflight | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("claim_token", String(64), nullable=True),
    Column("lease_until", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("destination", "record_id", "target", name="uq_outbox_target"),
    Index("ix_outbox_claim", "destination", "status", "next_attempt_at"),
    Index("ix_outbox_token", "claim_token"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("run_id", BigInteger, nullable=True),
    Column("trigger", String(32), nullable=False),
    Column("contact_id", BigInteger, nullable=True),
    Column("contact_key", String(320), nullable=True),
    Column("destination", String(32), nullable=False),
    Column("record_id", String(255), nullable=False),
    Column("target", String(255), nullable=False),
    Column("op", String(16), nullable=False),
    Column("old_value", JSON, nullable=True),
    Column("new_value", JSON, nullable=True),
    Column("reason", Text, nullable=True),
    Column("segments", Text, nullable=True),
    Column("status", String(16), nullable=False),  # applied | failed | dead | skipped
    Column("attempts", Integer, nullable=False),
    Column("request_id", String(128), nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_audit_at", "at"),
    Index("ix_audit_contact", "contact_key", "at"),
)

# migration 4: the real-time inbox and privacy suppressions (sync.service)
inbox = Table(
    "inbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source", String(16), nullable=False),  # hubspot | klaviyo | api
    Column("dedupe_key", String(64), nullable=False),  # sha256 hex of the delivery's identity
    Column("kind", String(64), nullable=False),  # subscriptionType / topic / event type
    Column("contact_key", String(320), nullable=True),  # "hubspot:<id>", "klaviyo:<id>", ...
    Column("payload", JSON, nullable=False),  # the one event as received
    Column("received_at", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # pending | applied | done
    Column("outcome", String(32), nullable=True),  # what applying it did (applied, skipped, ...)
    Column("contact_id", BigInteger, nullable=True),  # the contact it changed, once applied
    Column("processed_at", BigInteger, nullable=True),
    UniqueConstraint("source", "dedupe_key", name="uq_inbox_dedupe"),
    Index("ix_inbox_status", "status", "id"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("kind", String(16), primary_key=True),  # email | external_id | hubspot | klaviyo
    Column("key_hash", String(64), primary_key=True),  # sha256 hex of the normalised key
    Column("reason", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# migration 6: privacy-deletion requests to send to the providers (sync.remote_delete). The
# person's id or email (`id_value`) is erased once the request is settled; the hash stays.
remote_deletions = Table(
    "remote_deletions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("provider", String(32), nullable=False),  # hubspot | klaviyo
    Column("id_kind", String(8), nullable=False),  # id | email
    Column("id_value", String(320), nullable=True),  # NULL once done or rejected
    Column("key_hash", String(64), nullable=False),  # sync.service.forget.key_hash(kind, value)
    Column("contact_key", String(64), nullable=True),  # the hidden contact key of the audit log
    Column("reason", String(64), nullable=False),
    Column("trigger", String(32), nullable=False),  # manual | webhook
    Column("status", String(16), nullable=False),  # pending | inflight | done | rejected
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("claim_token", String(64), nullable=True),
    Column("lease_until", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("request_id", String(128), nullable=True),
    Column("requested_at", BigInteger, nullable=False),
    Column("done_at", BigInteger, nullable=True),
    UniqueConstraint("provider", "key_hash", name="uq_remote_deletions_key"),
    Index("ix_remote_deletions_due", "status", "next_attempt_at"),
    Index("ix_remote_deletions_token", "claim_token"),
)
