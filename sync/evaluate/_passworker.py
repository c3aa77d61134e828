"""One worker process of :mod:`sync.evaluate.parallel` (run as a script: stdlib only, so it
starts in a few tens of milliseconds and imports nothing of the parent's).

    python _passworker.py DB SCRATCH CACHE_KIB

Opens DB, attaches SCRATCH as ``w`` (journal off), opens a read transaction (its snapshot) and
prints ``{"ready": <data_version>}``. Then reads one JSON object per stdin line:
``{"job": NAME, "sqls": [...]}`` runs the statements and prints ``{"done": NAME, "seconds": S}`` or
``{"error": NAME, "message": TEXT}``; ``{"exit": true}`` (or end of input) commits and ends.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time


def _say(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    db, scratch, cache_kib = argv[0], argv[1], int(argv[2])
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    con.execute(f"PRAGMA cache_size = -{cache_kib}")
    con.execute("ATTACH DATABASE ? AS w", (scratch,))
    con.execute("PRAGMA w.journal_mode = OFF")
    con.execute("PRAGMA w.synchronous = OFF")
    con.execute("BEGIN")
    con.execute("SELECT 1 FROM main.sqlite_master LIMIT 1").fetchall()
    _say({"ready": int(con.execute("PRAGMA main.data_version").fetchone()[0])})
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("exit"):
            break
        name = msg["job"]
        t0 = time.perf_counter()
        try:
            for sql in msg["sqls"]:
                con.execute(sql)
        except sqlite3.Error as e:
            _say({"error": name, "message": str(e)})
            continue
        _say({"done": name, "seconds": round(time.perf_counter() - t0, 3)})
    con.execute("COMMIT")
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
