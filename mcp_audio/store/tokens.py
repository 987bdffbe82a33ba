"""Bearer tokens for HTTP mode: `mcp-audio tokens add|list|revoke`, stored hashed in the data dir
(or, with MCP_AUDIO_DATABASE_URL, in the PostgreSQL database every replica shares).

A token is 32 random bytes, so a plain SHA-256 of it is as hard to reverse as the token is to
guess; no slow hash is needed. The file is rewritten whole (write, then rename) and a running
server re-reads it whenever it changes, so a revoke applies to the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_audio.core.errors import ConfigError, InvalidArguments
from mcp_audio.private import private_dir

if TYPE_CHECKING:
    import psycopg

    from mcp_audio.config import ServerSettings

PREFIX = "mcpa_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
FILE_NAME = "tokens.json"


@dataclass(frozen=True)
class TokenEntry:
    name: str
    sha256: str
    created_at: float
    max_spend_usd: float | None = None

    @property
    def principal(self) -> str:
        return token_principal(self.name)

    def summary(self) -> dict[str, Any]:
        """What `tokens list` shows: never the hash."""
        return {
            "name": self.name,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at)),
            "max_spend_usd": self.max_spend_usd,
        }


def token_principal(name: str) -> str:
    """The principal a token acts as; namespaced so a token name never equals an OAuth `sub`."""
    return f"token:{name}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenFile:
    """The tokens of one data dir. Lookups re-read the file when its size or mtime changed."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self._seen: tuple[int, int, int] | None = None
        self._entries: dict[str, TokenEntry] = {}

    def close(self) -> None:
        """Nothing to close for a file (the table keeps a connection)."""

    # --- reading ------------------------------------------------------------------------

    def entries(self) -> list[TokenEntry]:
        self._refresh()
        return sorted(self._entries.values(), key=lambda entry: entry.name)

    def any(self) -> bool:
        return bool(self.entries())

    def lookup(self, token: str) -> TokenEntry | None:
        """The entry `token` belongs to, or None (unknown, revoked, or not one of ours)."""
        if not token.startswith(PREFIX):
            return None
        digest = _digest(token)
        self._refresh()
        for entry in self._entries.values():
            if hmac.compare_digest(entry.sha256, digest):
                return entry
        return None

    def cap_of(self, principal: str) -> float | None:
        """A token principal's spend cap (None: no cap of its own)."""
        name = principal.removeprefix("token:")
        entry = self.get(name) if name != principal else None
        return entry.max_spend_usd if entry else None

    def get(self, name: str) -> TokenEntry | None:
        self._refresh()
        return self._entries.get(name)

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._entries = None, {}
            return
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # each write is a new inode
        if seen == self._seen:
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            entries = [TokenEntry(**item) for item in raw["tokens"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Failing closed: an unreadable file must not turn authentication off.
            raise ConfigError(f"the token file {self.path} is not valid ({exc}); fix or delete it") from exc
        self._seen, self._entries = seen, {entry.name: entry for entry in entries}

    # --- writing (the CLI) --------------------------------------------------------------

    def add(self, name: str, max_spend_usd: float | None = None) -> str:
        """Create a token for `name`; returns it (the only time it exists outside the caller)."""
        if not NAME_PATTERN.fullmatch(name):
            raise InvalidArguments(
                f"token name {name[:80]!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if max_spend_usd is not None and not max_spend_usd >= 0:
            raise InvalidArguments(f"--max-spend-usd must be 0 or more, not {max_spend_usd}")
        if self.get(name) is not None:
            raise InvalidArguments(f"a token named {name!r} exists; `mcp-audio tokens revoke {name}` first")
        token = PREFIX + secrets.token_urlsafe(32)
        entry = TokenEntry(name=name, sha256=_digest(token), created_at=time.time(), max_spend_usd=max_spend_usd)
        self._write([*self.entries(), entry])
        return token

    def revoke(self, name: str) -> None:
        kept = [entry for entry in self.entries() if entry.name != name]
        if len(kept) == len(self._entries):
            known = ", ".join(entry.name for entry in kept) or "none"
            raise InvalidArguments(f"no token named {name[:80]!r}; tokens: {known}")
        self._write(kept)

    def _write(self, entries: list[TokenEntry]) -> None:
        private_dir(self.path.parent)
        temporary = self.path.with_name(f".{FILE_NAME}.{os.getpid()}")
        text = json.dumps({"tokens": [asdict(entry) for entry in entries]}, indent=1)
        # Owner-only from the start: the hashes are not secrets, but who may call is.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, self.path)
        self._seen = None


class TokenTable(TokenFile):
    """The tokens in the shared PostgreSQL database: a token added or revoked on one replica
    applies on every replica, re-read at most every REREAD_S. Blocking, on a connection of its
    own: the HTTP face looks tokens up on a worker thread (deploy/auth.py), the CLI directly."""

    REREAD_S = 1.0

    def __init__(self, url: str) -> None:
        self.path = Path("database:tokens")  # how messages name where the tokens are
        self._url = url
        self._db: psycopg.Connection[dict[str, Any]] | None = None
        self._db_lock = threading.Lock()
        self._entries = {}
        self._read_at: float | None = None

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        with self._db_lock:
            for attempt in (1, 2):
                if self._db is None or self._db.closed:
                    if self._db is None:  # the first connection: the schema may not be there yet
                        from mcp_audio.store.postgres import migrate

                        migrate(self._url)
                    self._db = psycopg.connect(self._url, autocommit=True, row_factory=dict_row, connect_timeout=10)
                try:
                    cursor = self._db.execute(sql, args)
                    return list(cursor.fetchall()) if cursor.description is not None else []
                except psycopg.OperationalError:
                    if attempt == 2 or not self._db.broken:  # a lost connection: once, on a new one
                        raise
                    self._db = None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _refresh(self) -> None:
        if self._read_at is not None and time.monotonic() - self._read_at < self.REREAD_S:
            return
        rows = self._query("SELECT name, sha256, created_at, max_spend_usd FROM tokens ORDER BY name")
        self._entries = {row["name"]: TokenEntry(**row) for row in rows}
        self._read_at = time.monotonic()

    def _write(self, entries: list[TokenEntry]) -> None:
        wanted = {entry.name: entry for entry in entries}
        stored = {row["name"] for row in self._query("SELECT name FROM tokens")}
        for name, entry in wanted.items():
            if name not in stored:
                self._query(
                    "INSERT INTO tokens (name, sha256, created_at, max_spend_usd) VALUES (%s, %s, %s, %s)",
                    (entry.name, entry.sha256, entry.created_at, entry.max_spend_usd),
                )
        for name in stored - wanted.keys():
            self._query("DELETE FROM tokens WHERE name = %s", (name,))
        self._read_at = None


def open_tokens(settings: ServerSettings) -> TokenFile:
    """The data dir's token file, or the database's token table when MCP_AUDIO_DATABASE_URL is set
    (with a connection of its own, made on first use)."""
    if settings.database_url is None:
        return TokenFile(settings.tokens_dir)  # the real data dir's, under --sandbox too
    return TokenTable(settings.database_url.get_secret_value())
