"""``segsync segments`` beside the sizes (sync.stats): entries and exits since the last run,
open and click rates among the members who were sent an email, small-segment warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from mapping.config import load_project_text
from mapping.errors import ConfigError
from sync.cli import main
from sync.evaluate import evaluate
from sync.stats import segment_report
from sync.store import schema
from tests.eval_support import AS_OF, D, Ev, H, load

CONFIG = """
[attributes]
plan = "string"
[events.email_sent]
[events.opened_email]
[events.clicked_email]
[segments.pro]
rule = 'plan == "pro"'
[segments.free]
rule = 'plan == "free"'
[report]
min_segment_size = 3
window = "30d"
"""


def run_row(engine: Engine, as_of: int) -> None:
    with engine.begin() as conn:
        conn.execute(insert(schema.runs).values(kind="run", trigger="manual", as_of=as_of, started_at=as_of,
                                                finished_at=as_of, status="ok"))


def test_entries_exits_rates_and_small_segments(eval_engine: Engine) -> None:
    project = load_project_text(CONFIG, "stats.toml")
    people = {f"p{i}": {"plan": "pro"} for i in range(4)} | {"f0": {"plan": "free"}}
    events = [
        Ev("p0", "email_sent", 2 * D), Ev("p0", "opened_email", 2 * D), Ev("p0", "clicked_email", 2 * D),
        Ev("p1", "email_sent", 3 * D), Ev("p1", "opened_email", 3 * D),
        Ev("p1", "opened_email", 4 * D),  # opens twice: counts once
        Ev("p2", "email_sent", 5 * D),
        Ev("p3", "email_sent", 40 * D), Ev("p3", "opened_email", 40 * D),  # outside the window
        Ev("f0", "opened_email", 1 * D),  # an open without a send in the window: not a recipient
    ]
    ids = load(eval_engine, project, people, events)
    evaluate(eval_engine, project, AS_OF - H)  # the last run recorded these memberships
    run_row(eval_engine, AS_OF - H)
    with eval_engine.begin() as conn:  # since then: p3 moved to free, f0 to pro
        for email, plan in (("p3", "free"), ("f0", "pro")):
            conn.execute(schema.contacts.update().where(schema.contacts.c.id == ids[email])
                         .values(attributes={"plan": plan}))
    report = segment_report(eval_engine, project, evaluate(eval_engine, project, AS_OF, persist=False))
    by = {s.segment: s for s in report.segments}
    assert report.last_run_as_of_ms == AS_OF - H
    pro, free = by["pro"], by["free"]
    assert (pro.members, pro.entered, pro.exited) == (4, 1, 1)
    assert (free.members, free.entered, free.exited) == (1, 1, 1)
    # pro members now: p0, p1, p2 (sent in the window) and f0 (no send): 2 of 3 opened, 1 clicked
    assert (pro.recipients, pro.open_rate, pro.click_rate) == (3, round(2 / 3, 4), round(1 / 3, 4))
    assert (free.recipients, free.open_rate, free.click_rate) == (0, None, None)
    assert (pro.small, free.small) == (False, True)
    assert report.warnings == ["free: 1 members, fewer than the minimum of 3 ([report] min_segment_size)"]


def test_without_a_send_event_type_every_member_counts(eval_engine: Engine) -> None:
    project = load_project_text(CONFIG.replace("[events.email_sent]\n", ""), "stats.toml")
    load(eval_engine, project, {"a": {"plan": "pro"}, "b": {"plan": "pro"}},
         [Ev("a", "opened_email", D)])
    report = segment_report(eval_engine, project, evaluate(eval_engine, project, AS_OF, persist=False))
    pro = next(s for s in report.segments if s.segment == "pro")
    assert (pro.recipients, pro.open_rate, pro.click_rate) == (2, 0.5, 0.0)
    assert report.last_run_as_of_ms is None and pro.entered == 2  # no run yet: everything is new


def test_an_unknown_event_type_named_in_report_is_a_config_error(eval_engine: Engine) -> None:
    project = load_project_text(CONFIG + 'open_event = "email_open"\n', "stats.toml")
    with pytest.raises(ConfigError) as e:
        segment_report(eval_engine, project, evaluate(eval_engine, project, AS_OF, persist=False))
    assert "report.open_event" in str(e.value) and "'email_open' is not a declared event type" in str(e.value)


def test_segments_command_prints_and_exports_the_report(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[store]\nurl = "sqlite:///s.db"\n' + CONFIG)
    assert main(["--config", str(config), "segments", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["segments"] == {"pro": 0, "free": 0}
    assert out["report"]["segments"]["pro"]["small"] is True and len(out["report"]["warnings"]) == 2
    assert main(["--config", str(config), "segments"]) == 0
    text = capsys.readouterr().out
    assert "open rate" in text and "warning: pro: 0 members" in text
