"""Output files: saved under the output folder with a name a person can find, written to a
temporary file and renamed (a crash never leaves a half file under the final name), marked
with Content Credentials (files/marking.py) when the job says what made them, with size,
SHA-256 and audio properties recorded."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from mcp_audio.core.errors import McpAudioError
from mcp_audio.core.media import extension_for, sniff_content_type
from mcp_audio.core.results import OutputFile
from mcp_audio.files.fetch import FetchPolicy, FetchRefused, refused_text
from mcp_audio.private import private_dir, private_file

if TYPE_CHECKING:
    import httpx  # imported when the first file is saved: it costs start-up time

    from mcp_audio.files.marking import Marker, Origin

log = logging.getLogger("mcp_audio.outputs")


def output_name(tool: str, job_id: str, index: int, content_type: str | None, source_name: str | None) -> str:
    """`{YYYYmmdd-HHMMSS}-{tool}-{short job id}[-n].{ext}`: sortable, unique, says what made it."""
    ext = Path(source_name or "").suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,8}", ext):
        ext = extension_for(content_type)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = f"-{index + 1}" if index else ""
    return f"{stamp}-{tool}-{job_id[:8]}{suffix}{ext}"


DOWNLOAD_ATTEMPTS = 3


def _worth_retrying(exc: Exception) -> bool:
    """A transfer that broke, or a server error; not a 4xx, a refusal or a local disk problem."""
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


class DownloadRefused(Exception):
    """An output file that is not saved: too large, not what it claims to be, or from a host we do not fetch from."""


def _check_head(head: bytes, declared: str | None) -> None:
    """A file declared as audio or video must start like one: an HTML error page is not a WAV."""
    if declared and declared.startswith(("audio/", "video/")) and sniff_content_type(head) is None:
        raise DownloadRefused(
            f"the file is declared {declared} but its bytes are not audio or video (it starts {head[:16]!r})"
        )


# Chunks are gathered to this size before a worker thread writes and hashes them: a thread hop
# per network chunk (often 4-64 KiB) would cost more than the write it spares the loop.
WRITE_BATCH = 1 << 20


class _PartFile:
    """The hidden temporary file a download goes to, written and hashed on worker threads.
    Only `finish` puts it under the final name (after fsync); `discard` removes it."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.temporary = target.with_name(f".{target.name}.part")
        self.digest = hashlib.sha256()
        self._handle: BinaryIO | None = None

    def open(self) -> None:
        private_dir(self.target.parent)
        self._handle = private_file(self.temporary)

    def write(self, data: bytes) -> None:
        assert self._handle is not None
        self._handle.write(data)
        self.digest.update(data)

    def finish(self, last: bytes) -> None:
        """Write the last batch, sync to disk, and only then take the final name."""
        self.write(last)
        assert self._handle is not None
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self.temporary, self.target)

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self.temporary.unlink(missing_ok=True)


async def write_atomically(
    target: Path, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None, declared: str | None = None
) -> tuple[int, str]:
    """Stream chunks to `target` via a hidden temporary file; returns (size, sha256).

    The writes, the hashing, the fsync and the rename run on worker threads, a batch of
    WRITE_BATCH bytes at a time, so a large file never holds the event loop. Refuses
    (DownloadRefused) a body over `max_bytes`, or one whose first bytes do not fit the
    `declared` audio/video type; nothing is left under either name then, nor when the
    download is cancelled or breaks (a thread's write finishes before the file is removed)."""
    import anyio.to_thread

    part, size = _PartFile(target), 0
    batch: list[bytes] = []
    batched = 0
    try:
        await anyio.to_thread.run_sync(part.open)
        async for chunk in chunks:
            if size == 0 and chunk:
                _check_head(chunk[:64], declared)
            if max_bytes is not None and size + len(chunk) > max_bytes:
                raise DownloadRefused(f"the file is over {max_bytes / 2**20:g} MB (MCP_AUDIO_MAX_DOWNLOAD_MB)")
            batch.append(chunk)
            batched += len(chunk)
            size += len(chunk)
            if batched >= WRITE_BATCH:
                data, batch, batched = b"".join(batch), [], 0
                await anyio.to_thread.run_sync(part.write, data)
        await anyio.to_thread.run_sync(part.finish, b"".join(batch))
    except BaseException:
        with anyio.CancelScope(shield=True):  # a cancelled download still removes its part file
            await anyio.to_thread.run_sync(part.discard)
        raise
    return size, part.digest.hexdigest()


def audio_properties(path: Path) -> dict[str, Any]:
    """Duration, sample rate and channels read from the file itself (mutagen), where it can tell."""
    try:
        import mutagen  # imported on first saved file: not needed to start the server

        info = getattr(mutagen.File(path), "info", None)
    except Exception as exc:  # a file mutagen cannot parse is still a valid output
        log.info("could not read audio properties of %s: %s", path.name, exc)
        return {}
    if info is None:
        return {}
    props = {
        "duration_s": round(float(info.length), 3) if getattr(info, "length", None) else None,
        "sample_rate": getattr(info, "sample_rate", None),
        "channels": getattr(info, "channels", None),
    }
    return {key: value for key, value in props.items() if value}


class OutputSaver:
    """Downloads a job's output files into the output folder."""

    def __init__(
        self,
        output_dir: Path,
        http: httpx.AsyncClient | None = None,
        *,
        max_bytes: int | None = None,
        policy: FetchPolicy | None = None,
        marker: Marker | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.marker = marker  # None: files are saved as they come (MCP_AUDIO_PROVENANCE=off)
        self.max_bytes = max_bytes
        self.policy = policy or FetchPolicy()
        self._owns_http = http is None
        self._http = http

    async def aclose(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.aclose()

    def _client(self) -> httpx.AsyncClient:
        import httpx

        from mcp_audio.files.guarded import guarded_client

        if self._http is None:  # output URLs are data from the upstream: the inputs' rule applies (fetch.py)
            self._http = guarded_client(self.policy, httpx.Timeout(60.0, connect=10.0))
        return self._http

    def remove_leftovers(self, idle_s: float = 600.0) -> int:
        """Delete `.part` files no download has written to for `idle_s` (a killed process's
        leftovers; another live process's download keeps touching its own). Returns how many."""
        removed = 0
        for part in self.output_dir.glob(".*.part") if self.output_dir.is_dir() else ():
            try:
                if time.time() - part.stat().st_mtime > idle_s:
                    part.unlink()
                    removed += 1
            except OSError as exc:  # gone already, or not ours to remove
                log.info("could not remove %s: %s", part.name, exc)
        return removed

    def remove_partial(self, tool: str, job_id: str) -> int:
        """Delete the `.part` files of one job's downloads: called when this process takes the job
        over, so whoever wrote them has stopped (or lost the job). Returns how many."""
        removed = 0
        pattern = f".*-{tool}-{job_id[:8]}*.part"  # the hidden names of output_name's files
        for part in self.output_dir.glob(pattern) if self.output_dir.is_dir() else ():
            try:
                part.unlink()
                removed += 1
            except OSError as exc:
                log.info("could not remove %s: %s", part.name, exc)
        return removed

    async def save_all(
        self, tool: str, job_id: str, files: list[OutputFile], origin: Origin | None = None
    ) -> list[OutputFile]:
        """Each output file with its local copy (or why there is none), each followed by its
        credentials' sidecar file when it has one. `origin`: what made them (None: not marked)."""
        saved: list[OutputFile] = []
        for index, item in enumerate(files):
            saved += [item] if item.saved else await self.save(tool, job_id, index, item, origin)
        return saved

    async def save(
        self, tool: str, job_id: str, index: int, item: OutputFile, origin: Origin | None = None
    ) -> list[OutputFile]:
        """Download one output (a broken transfer or a 5xx is tried again: the URL stays valid);
        [the file, its sidecar if any], or [the file with the reason it has no local copy]."""
        import anyio
        import anyio.to_thread
        import httpx

        name = output_name(tool, job_id, index, item.content_type, item.file_name)
        target = self.output_dir / name
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                async with self._client().stream("GET", item.url) as response:
                    response.raise_for_status()
                    size, sha256 = await write_atomically(
                        target, response.aiter_bytes(), max_bytes=self.max_bytes, declared=item.content_type
                    )
                return await anyio.to_thread.run_sync(self._finish, target, job_id, item, (size, sha256), origin)
            except DownloadRefused as exc:
                return [item.model_copy(update={"download_error": str(exc)})]
            except FetchRefused:  # named by the URL given, whichever hop was refused
                return [item.model_copy(update={"download_error": refused_text(item.url)})]
            except (httpx.HTTPError, OSError) as exc:
                if attempt < DOWNLOAD_ATTEMPTS and _worth_retrying(exc):
                    log.info("download of %s broke (%s); trying again", name, type(exc).__name__)
                    await anyio.sleep(0.5 * attempt)
                    continue
                # The upstream URL still works; the agent learns the copy failed and why.
                # An OSError's text names this machine's paths: its cause alone is said.
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)[:200]
                return [item.model_copy(update={"download_error": f"{type(exc).__name__}: {reason}"})]
        raise AssertionError("unreachable")

    def save_bytes(
        self, tool: str, job_id: str, index: int, data: bytes | Path, content_type: str, origin: Origin | None = None
    ) -> list[OutputFile]:
        """Store bytes an upstream returned directly (no URL), synchronously (it blocks: call it
        in a worker thread) and atomically. A Path is a finished file, moved (or copied, across
        file systems) without reading it whole. [the file, its credentials' sidecar if any]."""
        target = self.output_dir / output_name(tool, job_id, index, content_type, None)
        temporary = target.with_name(f".{target.name}.part")
        try:
            private_dir(target.parent)
            if isinstance(data, Path):
                shutil.move(data, temporary)
                os.chmod(temporary, 0o600)  # a render's file, made under the process's umask
            else:
                with private_file(temporary) as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as exc:
            raise McpAudioError(unwritable(exc)) from exc
        finally:
            temporary.unlink(missing_ok=True)
        return self._finish(target, job_id, OutputFile(url=target.as_uri(), content_type=content_type), None, origin)

    def _finish(
        self, target: Path, job_id: str, item: OutputFile, measured: tuple[int, str] | None, origin: Origin | None
    ) -> list[OutputFile]:
        """A file just written (blocking): its credentials written when `origin` says what made
        it, then described; its sidecar `.c2pa` (formats that cannot embed) follows it."""
        from mcp_audio.files.marking import C2PA_TYPE, is_media  # c2pa is loaded with the first marked file

        credentials = None
        if self.marker is not None and origin is not None and is_media(target, item.content_type):
            credentials = self.marker.mark(target, origin)
            if credentials.error is None:
                measured = None  # the bytes changed
        size, digest = measured or _measure(target)
        files = [item.model_copy(update=local_details(target, job_id, size, digest) | {"credentials": credentials})]
        if credentials is not None and credentials.sidecar is not None:
            sidecar = target.with_name(credentials.sidecar)
            details = local_details(sidecar, job_id, *_measure(sidecar))
            files.append(OutputFile(url=sidecar.resolve().as_uri(), content_type=C2PA_TYPE, **details))
        return files


def unwritable(exc: OSError) -> str:
    """Why a file could not be saved in the output folder, without its path."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "The output folder's disk is full (MCP_AUDIO_OUTPUT_DIR): the result could not be saved."
    return f"The output folder (MCP_AUDIO_OUTPUT_DIR) cannot be written: {exc.strerror or type(exc).__name__}."


def _measure(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file, read in 1 MiB pieces."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def local_details(path: Path, job_id: str, size: int, sha256: str) -> dict[str, Any]:
    return {
        "file_name": path.name,
        "path": str(path.resolve()),
        "file_uri": path.resolve().as_uri(),
        "resource": f"files://{job_id}/{path.name}",
        "file_size": size,
        "sha256": sha256,
        **audio_properties(path),
    }
