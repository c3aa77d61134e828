"""The engine commands through ``sync.cli.main``: import, evaluate, explain, segments, demo.

Exit codes, the JSON-lines contract of ``evaluate --json``, bad input reported without a
traceback, and a failed import leaving the store unchanged.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mapping.config import load_project
from sync.cli import main
from sync.cli.engine_cmds import find_contact
from sync.evaluate import evaluate
from sync.import_values import parse_instant
from sync.store import schema
from sync.store.db import open_project_store
from sync.store.migrations import CURRENT_VERSION
from tests.store_support import counts

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2025-03-01T00:00:00Z"

SMALL_CONFIG = """
[attributes]
country = "string"
ltv = "number"

[events.opened_email]
properties = { campaign = "string" }
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def small(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(SMALL_CONFIG, encoding="utf-8")
    return config


def _store_counts(config: Path) -> dict[str, int]:
    engine = open_project_store(load_project(config))
    try:
        return counts(engine)
    finally:
        engine.dispose()


def test_import_ok_exits_0(small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "c.csv"
    data.write_text("email,country,ltv\nA@x.io,US,3\nb@x.io,DE,\n", encoding="utf-8")
    code, out, err = run(capsys, "--config", str(small), "import", "contacts", str(data))
    assert (code, err) == (0, "")
    assert "2 rows: 2 new, 0 updated, 0 unchanged, 0 rejected" in out
    assert (tmp_path / "segsync.db").exists()  # relative to the config file
    code, out, _ = run(capsys, "--config", str(small), "import", "contacts", str(data), "--json")
    assert code == 0
    assert json.loads(out) == {"kind": "contacts", "file": str(data), "rows": 2, "inserted": 0,
                               "updated": 0, "unchanged": 2, "rejected": 0, "problems": []}


def test_rejected_rows_exit_2_and_good_rows_are_kept(small: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "e.jsonl"
    data.write_text(
        '{"email": "a@x.io", "type": "opened_email", "timestamp": "2025-01-01T00:00:00Z"}\n'
        '{"email": "a@x.io", "type": "opened", "timestamp": "2025-01-01T00:00:00Z"}\n'
        '{"email": "a@x.io", "type": "opened_email", "timestamp": "2025-01-01T00:00:00"}\n'
        "not json\n"
        '{"email": "[/]a@x.io", "type": "opened_email", "timestamp": "2025-01-01T00:00:00Z"}\n',
        encoding="utf-8",
    )
    code, out, err = run(capsys, "--config", str(small), "import", "events", str(data))
    assert code == 2
    assert "5 rows: 1 new, 0 already stored, 4 rejected" in out
    assert f"{data}:2: unknown event type 'opened'" in err
    assert f"{data}:3: timestamp: timestamp '2025-01-01T00:00:00' has no UTC offset" in err
    assert f"{data}:4: invalid JSON" in err
    assert f"{data}:5: invalid email '[/]a@x.io'" in err  # printed as is, not as markup
    assert "4 of 5 rows rejected, the others were stored" in err
    assert _store_counts(small)["events"] == 1


@pytest.mark.parametrize(
    ("kind", "name", "content", "message"),
    [
        ("events", "missing.csv", None, "cannot read the file"),
        ("events", "e.csv", "email,type\na@x.io,opened_email\n", "needs a column 'timestamp'"),
        ("contacts", "c.csv", "email,county\na@x.io,US\n", "did you mean 'country'?"),
        ("contacts", "c.xml", "<x/>", "cannot tell the format"),
    ],
)
def test_unusable_file_exits_2_and_changes_nothing(
    kind: str, name: str, content: str | None, message: str, small: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = tmp_path / "seed.csv"
    seed.write_text("email,country\nseed@x.io,US\n", encoding="utf-8")
    assert run(capsys, "--config", str(small), "import", "contacts", str(seed))[0] == 0
    before = _store_counts(small)
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "--config", str(small), "import", kind, str(path))
    assert code == 2 and out == ""
    assert message in err and err.startswith("error:")
    assert _store_counts(small) == before


def test_format_option(small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "contacts.txt"
    data.write_text('{"email": "a@x.io", "ltv": 2}\n', encoding="utf-8")
    code, out, _ = run(capsys, "--config", str(small), "import", "contacts", str(data),
                       "--format", "jsonl")
    assert code == 0 and "1 new" in out


def test_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--config", str(tmp_path / "nope.toml"), "segments")
    assert code == 2 and "no such configuration file" in err


# ------------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """config.example.toml with the examples/ data imported (the demo's setup)."""
    directory = tmp_path_factory.mktemp("sample")
    config = directory / "config.toml"
    shutil.copyfile(ROOT / "config.example.toml", config)
    for kind, name in (("contacts", "contacts.csv"), ("events", "events.jsonl")):
        assert main(["--config", str(config), "import", kind, str(ROOT / "examples" / name)]) == 0
    return config


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_evaluate_json_lines(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--config", str(sample), "evaluate", "--as-of", AS_OF, "--json")
    assert (code, err) == (0, "")
    members = _lines(out)
    assert members and all(set(m) == {"contact", "segments", "fields"} for m in members)
    assert all(m["segments"] and m["segments"] == sorted(m["segments"]) for m in members)
    keys = [m["contact"] for m in members]
    assert len(set(keys)) == len(keys)
    assert "C00040" in keys  # a contact without an email is keyed by its external id
    assert "customer040@example.com" not in keys
    # the same as the engine's own answer, contact by contact
    project = load_project(sample)
    engine = open_project_store(project)
    result = evaluate(engine, project, parse_instant(AS_OF), persist=False)
    engine.dispose()
    want = {r.key: [sorted(r.segments), r.fields] for r in result.results if r.segments}
    assert {m["contact"]: [m["segments"], m["fields"]] for m in members} == json.loads(
        json.dumps(want))

    code, out, _ = run(capsys, "--config", str(sample), "evaluate", "--as-of", AS_OF, "--all",
                       "--json", "--dry-run")
    everyone = _lines(out)
    assert code == 0 and len(everyone) == 200
    assert [m for m in everyone if m["segments"]] == members


def test_segments_sizes_match_evaluate(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--config", str(sample), "evaluate", "--as-of", AS_OF, "--json",
                       "--dry-run")
    tally = Counter(s for m in _lines(out) for s in m["segments"])
    # the same instant written with another offset
    code, out, _ = run(capsys, "--config", str(sample), "segments", "--as-of",
                       "2025-03-01T01:00:00+01:00", "--json")
    assert code == 0
    sizes = json.loads(out)
    assert sizes["as_of"] == AS_OF
    assert sizes["segments"] == {name: tally.get(name, 0) for name in load_project(sample).segments}
    code, out, _ = run(capsys, "--config", str(sample), "segments", "--as-of", AS_OF)
    assert code == 0 and "engagement_spike" in out and f"segments as of {AS_OF}" in out


@pytest.mark.parametrize(
    ("key", "want"),
    [("customer005@example.com", "customer005@example.com"),
     (" Customer005@Example.com ", "customer005@example.com"),
     ("C00005", "customer005@example.com"),
     ("C00040", None)],  # no email: found by external id
)
def test_explain_finds_the_contact_by_email_or_external_id(key: str, want: str | None,
                                                           sample: Path) -> None:
    project = load_project(sample)
    engine = open_project_store(project)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(schema.contacts.c.email, schema.contacts.c.external_id)
                               .where(schema.contacts.c.id == find_contact(engine, key))).one()
    finally:
        engine.dispose()
    assert row.email == want and (want is not None or row.external_id == key)


def test_explain(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = " Customer005@Example.com "
    code, out, _ = run(capsys, "--config", str(sample), "explain", key, "--as-of", AS_OF, "--json")
    assert code == 0
    explanation = json.loads(out)
    assert explanation["contact"] == "customer005@example.com"
    spike = [s for s in explanation["segments"] if s["segment"] == "engagement_spike"]
    assert spike and spike[0]["member"] is True  # four opens in the sample's last day
    code, out, _ = run(capsys, "--config", str(sample), "explain", key, "--as-of", AS_OF)
    assert code == 0 and "engagement_spike" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "nobody@x.io", "--as-of", AS_OF], "no contact with the email or external id"),
        (["segments", "--as-of", "2025-03-01T00:00:00"], "--as-of: timestamp"),
        (["evaluate", "--as-of", "tomorrow", "--json"], "is not an ISO-8601 timestamp"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str, sample: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--config", str(sample), *args)
    assert code == 2 and out == "" and message in err


def test_a_store_newer_than_the_code_exits_1(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = open_project_store(load_project(small))
    with engine.begin() as conn:
        conn.execute(schema.schema_version.insert().values(version=CURRENT_VERSION + 1, applied_at=0))
    engine.dispose()
    code, out, err = run(capsys, "--config", str(small), "segments")
    assert code == 1 and out == ""
    assert f"has schema version {CURRENT_VERSION + 1}" in err and "upgrade segsync" in err
