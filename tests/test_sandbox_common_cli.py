"""``segsync sandbox`` as a real subprocess: it prints the URLs, serves, and stops on Ctrl-C."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import requests


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sync", "sandbox", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


@pytest.fixture
def running() -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    proc = _spawn("--contacts", "50", "--seed", "3", "--faults", "429=1#1@contacts.list", "--no-rate-limits",
                  "--json")  # fmt: skip
    try:
        yield proc, _lines(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_json_mode_prints_urls_and_serves(running: tuple[subprocess.Popen[str], queue.Queue[str]]) -> None:
    proc, lines = running
    info = json.loads(lines.get(timeout=60))
    assert info["contacts"] == 50 and info["seed"] == 3 and info["rate_limits"] is False
    hs, kl = info["hubspot"], info["klaviyo"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", hs["url"]) and hs["token"] == "pat-sandbox"
    assert kl["key"] == "pk_sandbox"
    auth = {"Authorization": f"Bearer {hs['token']}"}
    assert requests.get(f"{hs['url']}/crm/v3/objects/contacts", headers=auth, timeout=5).status_code == 429
    assert requests.get(f"{hs['url']}/crm/v3/objects/contacts", headers=auth, timeout=5).status_code == 200
    assert requests.get(f"{kl['url']}/_sandbox/counters", timeout=5).status_code == 200
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0  # Ctrl-C is the normal way to stop
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{hs['url']}/_sandbox/counters", timeout=2)


def test_text_mode_prints_urls_credentials_and_control_calls() -> None:
    proc = _spawn("--contacts", "30")
    lines = _lines(proc)
    try:
        text = ""
        while "Ctrl-C" not in text:
            text += lines.get(timeout=60)
        assert re.search(r"HubSpot\s+http://127\.0\.0\.1:\d+\s+access token: pat-sandbox", text)
        assert re.search(r"Klaviyo\s+http://127\.0\.0\.1:\d+\s+API key: pk_sandbox", text)
        assert "/_sandbox/live" in text and "/_sandbox/faults" in text and "rate limits on" in text
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "boom=1"], "--faults: fault rule 'boom=1': unknown kind 'boom'"),
        (["--faults", "429=2"], "probability must be between 0 and 1"),
        (["--webhook-url", "ftp://x"], "is not an http(s) URL"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sync", "sandbox", *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_busy_port_is_a_clear_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "sync", "sandbox", "--contacts", "10", "--hubspot-port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 2 and "cannot listen on the requested port" in proc.stderr
    assert "Traceback" not in proc.stderr
