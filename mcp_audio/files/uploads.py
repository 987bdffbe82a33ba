"""Recordings a remote caller sends to the server (`POST /uploads` in HTTP mode), usable as a
file input by the reference the upload answered (`upload://ID`), by that caller only.

Over HTTP the server reads no local path of the caller's choosing; this is how a caller's own
file gets in without an https URL or a data: URI. Each principal has its own folder (named by
a hash, so no name reaches the file system) and a quota (count and bytes); uploads are removed
after `keep_s` by a sweep on a timer (`sweep_forever`, started with the HTTP server). With an
output bucket (MCP_AUDIO_OUTPUT_URL=s3://...) each upload is also put in the bucket under
`{prefix}/uploads/`, so that a replica which did not receive it fetches it from there.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from mcp_audio.core.errors import InvalidArguments, McpAudioError
from mcp_audio.core.media import sniff_content_type
from mcp_audio.private import private_dir, private_file

if TYPE_CHECKING:
    from mcp_audio.config import ServerSettings
    from mcp_audio.files.s3 import Bucket

log = logging.getLogger("mcp_audio.uploads")

SCHEME = "upload://"
KEEP_S = 24 * 3600.0
_ID = re.compile(r"[0-9a-f]{32}")


class TooLarge(Exception):
    pass


class NotMedia(Exception):
    pass


class NoRoom(Exception):
    """The caller's quota is used up, or the disk is full: the message says which (no path in it)."""


class Uploads:
    def __init__(
        self,
        root: Path,
        max_bytes: int,
        bucket: Bucket | None = None,
        *,
        keep_s: float = KEEP_S,
        quota_files: int = 50,
        quota_bytes: int = 500 * 2**20,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.bucket = bucket
        self.keep_s = keep_s
        self.quota_files = quota_files
        self.quota_bytes = quota_bytes

    def folder(self, principal: str) -> Path:
        return self.root / self._owner(principal)

    @staticmethod
    def _owner(principal: str) -> str:
        return hashlib.sha256(principal.encode()).hexdigest()[:32]

    def _key(self, principal: str, upload_id: str) -> str:
        assert self.bucket is not None
        return self.bucket.key_for(f"uploads/{self._owner(principal)}/{upload_id}")

    async def receive(self, principal: str, chunks: AsyncIterator[bytes]) -> dict[str, Any]:
        """Store a body as `principal`'s upload; raises TooLarge or NotMedia (nothing is kept)."""
        folder = self.folder(principal)
        try:
            private_dir(folder)
        except OSError as exc:
            raise _no_room(exc) from exc
        self.remove_expired(principal)
        count, used = self.usage(principal)  # uploads in progress (.part) count too
        if count >= self.quota_files:
            raise NoRoom(
                f"you keep {count} uploads, the most one caller may (MCP_AUDIO_UPLOAD_QUOTA_FILES); each is removed "
                f"{self.keep_s / 3600:g} h after its upload"
            )
        upload_id = uuid.uuid4().hex
        partial = folder / f".{upload_id}.part"
        digest, size, head = hashlib.sha256(), 0, b""
        try:
            with private_file(partial) as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise TooLarge
                    if used + size > self.quota_bytes:
                        raise NoRoom(
                            f"your uploads would pass {self.quota_bytes / 2**20:g} MB, the most one caller may keep "
                            f"(MCP_AUDIO_UPLOAD_QUOTA_MB); each is removed {self.keep_s / 3600:g} h after its upload"
                        )
                    if len(head) < 64:
                        head += chunk[: 64 - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
            content_type = sniff_content_type(head)
            if content_type is None:
                raise NotMedia
            if self.bucket is not None:  # for the other replicas
                key = self._key(principal, upload_id)
                try:
                    await anyio.to_thread.run_sync(self.bucket.put, partial, key, content_type)
                except Exception as exc:  # boto3's errors: the bucket is unreachable or refuses us
                    raise _bucket_failure("store the upload in", self.bucket, exc) from exc
            os.replace(partial, folder / upload_id)
        except OSError as exc:
            raise _no_room(exc) from exc
        finally:
            partial.unlink(missing_ok=True)
        return {
            "file": SCHEME + upload_id,
            "bytes": size,
            "content_type": content_type,
            "sha256": digest.hexdigest(),
            "expires_in_s": int(self.keep_s),
        }

    async def resolve(self, principal: str, field: str, reference: str) -> Path:
        """The file of one of `principal`'s uploads; another's, or an expired one, is unknown.
        One another replica received is fetched from the bucket, once."""
        upload_id = reference.removeprefix(SCHEME)
        path = self.folder(principal) / upload_id
        if _ID.fullmatch(upload_id):
            if path.is_file() and not _expired(path, self.keep_s):
                return path
            if self.bucket is not None and await anyio.to_thread.run_sync(self._fetch, principal, upload_id, path):
                return path
        raise InvalidArguments(
            f"`{field}`: no upload {reference[:80]!r} (uploads are kept {self.keep_s / 3600:g} h); "
            "POST the file to /uploads again"
        )

    def _fetch(self, principal: str, upload_id: str, path: Path) -> bool:
        """Copy an upload from the bucket; False if it is not there or has expired."""
        assert self.bucket is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{upload_id}.{uuid.uuid4().hex[:8]}.part")
        try:
            uploaded_at = self.bucket.fetch(
                self._key(principal, upload_id), partial, uploaded_after=time.time() - self.keep_s
            )
            if uploaded_at is None:  # not there, or expired
                return False
            os.utime(partial, (uploaded_at, uploaded_at))  # it expires when the upload does
            os.replace(partial, path)
            return True
        except Exception as exc:  # boto3's errors: the bucket is unreachable or refuses us
            raise _bucket_failure("read the upload from", self.bucket, exc) from exc
        finally:
            partial.unlink(missing_ok=True)

    def remove_expired(self, principal: str) -> None:
        self._remove_expired_in(self.folder(principal))

    def _remove_expired_in(self, folder: Path) -> int:
        removed = 0
        for path in folder.glob("*"):
            # An upload in progress (.part) is touched by each write: one idle past keep_s is a leftover.
            if _expired(path, self.keep_s):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def usage(self, principal: str) -> tuple[int, int]:
        """(files, bytes) `principal` keeps, uploads in progress included."""
        count = size = 0
        for path in self.folder(principal).glob("*"):
            try:
                size += path.stat().st_size
                count += 1
            except FileNotFoundError:
                continue
        return count, size

    def sweep(self) -> int:
        """Remove every caller's expired uploads; how many were removed."""
        removed = 0
        for folder in self.root.glob("*") if self.root.is_dir() else ():
            if folder.is_dir():
                removed += self._remove_expired_in(folder)
        return removed

    async def sweep_forever(self) -> None:
        """The sweep, every few minutes (sooner for a short `keep_s`), for as long as the server runs."""
        every = min(300.0, max(0.5, self.keep_s / 4))
        while True:
            try:
                if removed := await anyio.to_thread.run_sync(self.sweep):
                    log.info("removed %d expired upload(s)", removed)
            except OSError as exc:  # the next round tries again
                log.warning("could not sweep expired uploads: %s", exc.strerror or exc)
            await anyio.sleep(every)


def _bucket_failure(action: str, bucket: Bucket, exc: Exception) -> McpAudioError:
    from mcp_audio.files.s3 import failure_code

    return McpAudioError(
        f"could not {action} the bucket {bucket.name} (MCP_AUDIO_OUTPUT_URL): {failure_code(exc)}; try again later"
    )


def _no_room(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoRoom("the server's disk is full; try again later")
    return exc


def _expired(path: Path, keep_s: float) -> bool:
    try:
        return path.stat().st_mtime < time.time() - keep_s
    except FileNotFoundError:
        return True


def open_uploads(settings: ServerSettings) -> Uploads:
    """The uploads of this server: in the data dir, and in the output bucket if there is one."""
    from mcp_audio.files.s3 import bucket_of

    return Uploads(
        settings.uploads_dir,
        int(settings.max_upload_mb * 2**20),
        bucket_of(settings),
        keep_s=settings.upload_keep_s,
        quota_files=settings.upload_quota_files,
        quota_bytes=int(settings.upload_quota_mb * 2**20),
    )
