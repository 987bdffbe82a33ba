"""A real PostgreSQL server for the tests: the distribution's `postgresql` package, one server
per test session (per xdist worker) in a temporary directory (in memory when /dev/shm has room),
on a unix socket only, and a fresh database per test, copied from a migrated template (CREATE
DATABASE ... TEMPLATE)."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOW_TO_RUN = "PostgreSQL tests skipped: no initdb found; run `apt-get install -y postgresql` to run them"
TEMPLATE = "mcp_audio_template"
RUN_AS = "postgres"  # the server refuses to run as root


def find_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: the distribution's /usr/lib/postgresql/N/bin, or PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket_dir = root / "socket"
        self._names = itertools.count()
        self._control: list[str] = []  # pg_ctl and its start arguments, once started

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """The server stopped (an outage: connections dropped) for the block, then started again."""
        pg_ctl, *start = self._control
        stop = [pg_ctl, *start[:2], "-m", "fast", "-w", "stop"]
        subprocess.run(_as_server_user(stop), check=True, capture_output=True, timeout=60)
        try:
            yield
        finally:
            subprocess.run(_as_server_user([pg_ctl, *start, "start"]), check=True, capture_output=True, timeout=60)

    def url(self, database: str) -> str:
        return f"postgresql://{RUN_AS}@/{database}?host={self.socket_dir}"

    def fresh_database(self) -> str:
        """A new database with the schema already migrated; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}')
        return self.url(name)


# Each test's database is a copy of the template (about 9 MB with its WAL; a session makes a few
# hundred): on a disk each copy took 120-150 ms and removing them all at the end seconds, in
# memory about 20 ms. /dev/shm is used when it has room to spare (a container's may be 64 MB).
MEMORY_FOLDER, MEMORY_NEEDED = Path("/dev/shm"), 4 * 2**30


def _memory_folder() -> str | None:
    try:
        return str(MEMORY_FOLDER) if shutil.disk_usage(MEMORY_FOLDER).free >= MEMORY_NEEDED else None
    except OSError:
        return None


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", RUN_AS, "--", *command]


@contextmanager
def pg_server(bin_dir: Path, extra: str = "") -> Iterator[PgServer]:
    """A PostgreSQL server of its own; `extra`: more `-c name=value` settings (a bench's)."""
    root = Path(tempfile.mkdtemp(prefix="mcp-audio-pg-", dir=_memory_folder()))
    server = PgServer(root)
    data = root / "data"
    server.socket_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, RUN_AS)
        shutil.chown(server.socket_dir, RUN_AS)
    log = root / "server.log"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = _as_server_user([str(bin_dir / args[0]), *args[1:]])
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)

    try:
        run("initdb", "-D", str(data), "-U", RUN_AS, "--auth=trust", "-E", "UTF8", "--no-sync")
        # Durability is not what tests check: no fsync keeps a session's many databases fast.
        options = (
            f"-k {server.socket_dir} -c listen_addresses='' -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=300 " + extra
        )
        run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30", "start")
        server._control = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30"]
        try:
            _make_template(server)
            yield server
        finally:
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    except subprocess.CalledProcessError as exc:
        text = log.read_text() if log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{text}") from exc
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _make_template(server: PgServer) -> None:
    import psycopg

    from mcp_audio.store.postgres import migrate

    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {TEMPLATE}")
    migrate(server.url(TEMPLATE))  # migrated once; each test's copy starts here
