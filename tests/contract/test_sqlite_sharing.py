"""One data dir's SQLite file opened by several stores of one process (`serve --http` keeps its job
store, /healthz's and the webhooks' own) and read by other processes (`mcp-audio jobs`, `doctor`, a
second server) at the same time: every write stays visible to them and the WAL stays in place.
Closing any descriptor of the file in the process that has it open would drop every POSIX lock
SQLite holds on it; the next reader elsewhere would take itself for the last user, checkpoint and
delete the WAL the server still writes into: its later writes unseen, and lost with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_audio.store.sqlite import SqliteJobStore

pytestmark = pytest.mark.anyio

READ = "import json, sqlite3, sys; db = sqlite3.connect(sys.argv[1]); print(json.dumps([r[0] for r in db.execute('SELECT replica FROM health ORDER BY replica')])); db.close()"


def read_elsewhere(path: Path) -> list[str]:
    """What another process sees (it opens, reads and closes the file, as `mcp-audio jobs` does)."""
    done = subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True, text=True, check=True)
    return list(json.loads(done.stdout))


async def test_writes_of_a_second_store_in_one_process_stay_visible_to_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    jobs = SqliteJobStore(path)
    await jobs.open()
    health = SqliteJobStore(path)  # opened later, while the first is open, as /healthz's is
    await health.open()
    try:
        await health.check_writable("first")
        assert read_elsewhere(path) == ["first"]
        await health.check_writable("second")
        await jobs.check_writable("third")
        assert read_elsewhere(path) == ["first", "second", "third"]
        assert Path(f"{path}-wal").exists()  # still the WAL this process writes into
    finally:
        await health.close()
        await jobs.close()
    assert read_elsewhere(path) == ["first", "second", "third"]  # and on disk once both closed


async def test_a_new_database_file_is_still_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "jobs.sqlite3"
    store = SqliteJobStore(path)
    await store.open()
    try:
        await store.check_writable("one")
        assert path.stat().st_mode & 0o777 == 0o600
        assert Path(f"{path}-wal").stat().st_mode & 0o077 == 0
    finally:
        await store.close()
