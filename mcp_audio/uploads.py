"""Recordings a remote caller sends to the server (`POST /uploads` in HTTP mode), usable as a
file input by the reference the upload answered (`upload://ID`), by that caller only.

Over HTTP the server reads no local path of the caller's choosing; this is how a caller's own
file gets in without an https URL or a data: URI. Each principal has its own folder (named by
a hash, so no name reaches the file system), and uploads are removed after KEEP_S.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mcp_audio.errors import InvalidArguments
from mcp_audio.inputs import sniff_content_type

SCHEME = "upload://"
KEEP_S = 24 * 3600.0
_ID = re.compile(r"[0-9a-f]{32}")


class TooLarge(Exception):
    pass


class NotMedia(Exception):
    pass


class Uploads:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def folder(self, principal: str) -> Path:
        return self.root / hashlib.sha256(principal.encode()).hexdigest()[:32]

    async def receive(self, principal: str, chunks: AsyncIterator[bytes]) -> dict[str, Any]:
        """Store a body as `principal`'s upload; raises TooLarge or NotMedia (nothing is kept)."""
        folder = self.folder(principal)
        folder.mkdir(parents=True, exist_ok=True)
        self.remove_expired(principal)
        upload_id = uuid.uuid4().hex
        partial = folder / f".{upload_id}.part"
        digest, size, head = hashlib.sha256(), 0, b""
        try:
            with partial.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise TooLarge
                    if len(head) < 64:
                        head += chunk[: 64 - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
            content_type = sniff_content_type(head)
            if content_type is None:
                raise NotMedia
            os.replace(partial, folder / upload_id)
        finally:
            partial.unlink(missing_ok=True)
        return {
            "file": SCHEME + upload_id,
            "bytes": size,
            "content_type": content_type,
            "sha256": digest.hexdigest(),
            "expires_in_s": int(KEEP_S),
        }

    def resolve(self, principal: str, field: str, reference: str) -> Path:
        """The file of one of `principal`'s uploads; another's, or an expired one, is unknown."""
        upload_id = reference.removeprefix(SCHEME)
        path = self.folder(principal) / upload_id
        if not _ID.fullmatch(upload_id) or not path.is_file() or _expired(path):
            raise InvalidArguments(
                f"`{field}`: no upload {reference[:80]!r} (uploads are kept {KEEP_S / 3600:g} h); "
                "POST the file to /uploads again"
            )
        return path

    def remove_expired(self, principal: str) -> None:
        for path in self.folder(principal).glob("*"):
            if _expired(path):
                path.unlink(missing_ok=True)


def _expired(path: Path) -> bool:
    try:
        return path.stat().st_mtime < time.time() - KEEP_S
    except FileNotFoundError:
        return True
