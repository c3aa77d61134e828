"""``segsync validate`` and load_project's file errors: a summary and exit 0, or every problem
on stderr and exit 2 — never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from mapping.config import load_project
from mapping.errors import ConfigError
from sync.cli import main
from tests.test_config_load import BASE

GOOD = BASE + """
[traits]
orders = 'count("placed_order")'
[segments.loyal]
rule = "orders >= 3"
[segments.spike]
rule = 'count("opened", within="24h") >= 3'
[fields]
days = "days_since(signup_date)"
"""


def run(tmp_path: Path, text: str | bytes | None, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    path = tmp_path / "config.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text, encoding="utf-8")
    code = main(["--config", str(path), "validate"])
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_ok_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(tmp_path, GOOD, capsys)
    assert (code, err) == (0, "")
    assert out.startswith("ok: 2 segments, 2 event types, 3 attributes, 1 trait, 1 field (")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(None, "config.toml: no such configuration file", id="missing file"),
        pytest.param("[segments\n", "config.toml:1:10: invalid TOML:", id="TOML syntax"),
        pytest.param(b"\xff\xfe[x]", "config.toml: not UTF-8 text", id="not UTF-8"),
        pytest.param(GOOD + "[segments.bad]\nflags = [{ when = 'agee > 1', points = 1 }]\n",
                     "config.toml:21:20 segments.bad.flags[0].when: unknown attribute or trait 'agee' "
                     "(did you mean 'age'?)", id="rule problem"),
        pytest.param(GOOD + "[sources.hubspot.attributes]\nsignup_dat = \"createdate\"\n",
                     "config.toml:21:1 sources.hubspot.attributes.signup_dat: 'signup_dat' is not a "
                     "declared attribute (did you mean 'signup_date'?)", id="source attribute map"),
    ],
)
def test_validate_reports_problems_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | bytes | None, expected: str
) -> None:
    code, out, err = run(tmp_path, text, capsys)
    assert code == 2 and out == ""
    assert "Traceback" not in err
    lines = err.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert expected in lines[0].replace(str(tmp_path) + "/", ""), lines


def test_validate_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = GOOD + (
        "[segments.x]\nrule = 'segment(\"y\")'\n[segments.y]\nrule = 'segment(\"x\")'\nprioirty = 1\n"
    )
    code, _, err = run(tmp_path, text, capsys)
    assert code == 2
    assert [line.split(" ", 2)[2] for line in err.strip().split("\n")] == [
        "segments.x.rule: reference cycle: segment 'x' -> segment 'y' -> segment 'x'",
        "segments.y.prioirty: unknown key 'prioirty' (did you mean 'priority'?)",
    ]


def test_load_project_of_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_project(tmp_path)


def test_load_project_keeps_the_file_location(tmp_path: Path) -> None:
    path = tmp_path / "segsync.toml"
    path.write_text(GOOD, encoding="utf-8")
    project = load_project(path)
    assert project.path == path.resolve() and project.base_dir == tmp_path.resolve()


def test_problems_are_printed_verbatim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "[events.opened]\n[segments.a]\nrule = 'count(\"[red]x[/red]\") > 1'\n"
    code, _, err = run(tmp_path, text, capsys)
    assert code == 2
    assert "unknown event type '[red]x[/red]'" in err
