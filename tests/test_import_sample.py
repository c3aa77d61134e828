"""The sample data in examples/ is what examples/make_sample.py writes, and it imports cleanly
into the store of config.example.toml."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mapping.config import load_project
from sync.importer import import_contacts, import_events
from sync.store.db import open_store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_sample_files_are_the_generators_output(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("make_sample", EXAMPLES / "make_sample.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    capsys.readouterr()
    for name in ("contacts.csv", "events.jsonl"):
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes(), name


def test_sample_imports_without_rejections(tmp_path: Path) -> None:
    project = load_project(ROOT / "config.example.toml")
    engine = open_store("sqlite:///sample.db", tmp_path)
    contacts = import_contacts(engine, project, EXAMPLES / "contacts.csv")
    events = import_events(engine, project, EXAMPLES / "events.jsonl")
    engine.dispose()
    assert (contacts.rows, contacts.inserted, contacts.rejected) == (200, 200, 0)
    assert 3000 <= events.rows == events.inserted and events.rejected == 0
