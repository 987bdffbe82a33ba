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
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_audio.core.errors import ConfigError, InvalidArguments

if TYPE_CHECKING:
    from mcp_audio.config import ServerSettings
    from mcp_audio.store import JobStore
    from mcp_audio.store.postgres import PostgresJobStore

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
    applies on every replica, re-read at most every REREAD_S."""

    REREAD_S = 1.0

    def __init__(self, store: PostgresJobStore) -> None:
        self.path = Path("database:tokens")  # how messages name where the tokens are
        self._store = store
        self._entries = {}
        self._read_at: float | None = None

    def _refresh(self) -> None:
        if self._read_at is not None and time.monotonic() - self._read_at < self.REREAD_S:
            return
        self._entries = {row["name"]: TokenEntry(**row) for row in self._store.token_rows()}
        self._read_at = time.monotonic()

    def _write(self, entries: list[TokenEntry]) -> None:
        wanted = {entry.name: entry for entry in entries}
        stored = {row["name"] for row in self._store.token_rows()}
        for name, entry in wanted.items():
            if name not in stored:
                self._store.insert_token(asdict(entry))
        for name in stored - wanted.keys():
            self._store.delete_token(name)
        self._read_at = None


def open_tokens(settings: ServerSettings, store: JobStore | None = None) -> TokenFile:
    """The data dir's token file, or the database's token table when MCP_AUDIO_DATABASE_URL is set
    (through `store`, the server's open one, else a connection of its own for the process)."""
    if settings.database_url is None:
        return TokenFile(settings.tokens_dir)  # the real data dir's, under --sandbox too
    from mcp_audio.store.postgres import PostgresJobStore

    if not isinstance(store, PostgresJobStore):
        store = PostgresJobStore(settings.database_url.get_secret_value())
    return TokenTable(store)
