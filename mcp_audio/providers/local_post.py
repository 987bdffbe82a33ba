"""The finishing tools, run in this process: join, mix, master, trim, info and subtitles, and
provenance (a file's C2PA Content Credentials read back: post/credentials.py).

A one-shot provider whose "upstream" is the audio engine of `mcp_audio.post`: nothing is sent
anywhere. File inputs arrive as local paths (`UpstreamRequest.local`, resolved by the input
resolver: files inside the allowed folders, earlier outputs, downloads written to temporary
files); the engine runs in a worker thread, writes to a temporary file, and the job's FileSink
moves it into the output folder. The engine (PyAV, numpy) is imported on the first call.

The request body holds only the arguments the caller gave, so the engine's defaults (the same
as the manifest's, which a test checks) apply to the rest.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from mcp_audio.core.errors import McpAudioError
from mcp_audio.core.media import FORMAT_TYPES
from mcp_audio.core.upstreams import LOCAL
from mcp_audio.post.progress import RenderProgress, RenderStopped, running
from mcp_audio.providers.base import FileSink, LocalFile, Pacing, Report, Update, UpstreamRequest

log = logging.getLogger("mcp_audio.post")

SUBTITLE_TYPES = {"srt": "application/x-subrip", "vtt": "text/vtt"}
# The manifest's codec names -> FFmpeg's encoder names.
CODECS = {
    "aac": "aac",
    "alac": "alac",
    "opus": "libopus",
    "mp3": "libmp3lame",
    "flac": "flac",
    "pcm_s16le": "pcm_s16le",
    "pcm_s24le": "pcm_s24le",
}
# What a rendered file reports besides the file itself (its path is the saved copy's).
_RENDERED_FIELDS = ("duration_s", "sample_rate", "channels", "format", "codec")
_MASTER_FIELDS = ("loudness_lufs", "true_peak_db", "gain_db", "passes", "on_target")


class RenderSlots:
    """Fair shares of local rendering: at most `per_caller` renders of one caller and `total` in
    all run at once; the others wait (holding no thread) in the order they came. Renders run on
    threads of their own limiter, never on anyio's default one, which the rest of the server
    (store calls, file saves, `/healthz`) needs to stay free."""

    def __init__(self, per_caller: int, total: int) -> None:
        self.per_caller, self.total = per_caller, total
        self._callers: dict[str, anyio.CapacityLimiter] = {}
        self._all: anyio.CapacityLimiter | None = None  # made in the event loop, on first use

    @property
    def threads(self) -> anyio.CapacityLimiter:
        if self._all is None:
            self._all = anyio.CapacityLimiter(self.total)
        return self._all

    @asynccontextmanager
    async def slot(self, principal: str) -> AsyncIterator[None]:
        """Hold one of `principal`'s slots while the block runs (its thread takes one of `threads`)."""
        mine = self._callers.setdefault(principal, anyio.CapacityLimiter(self.per_caller))
        try:
            async with mine:
                yield
        finally:
            if mine.borrowed_tokens == 0 and mine.statistics().tasks_waiting == 0:
                self._callers.pop(principal, None)  # no state kept for callers with nothing running

    def busy(self, principal: str) -> bool:
        """Whether a render of `principal`'s would wait now."""
        mine = self._callers.get(principal)
        return (mine is not None and mine.available_tokens == 0) or self.threads.available_tokens == 0


class LocalPostProvider:
    upstream = LOCAL
    max_upload_bytes = 1024 * 2**20  # a data: URI or download is held in memory once, then written
    settings_fields = ("max_audio_s", "max_renders_per_caller", "max_renders", "c2pa_trust_anchors")

    def __init__(
        self,
        api_key: str | None = None,
        pacing: Pacing | None = None,
        max_audio_s: float = 4 * 3600.0,
        max_renders_per_caller: int = 2,
        max_renders: int = 4,
        c2pa_trust_anchors: Path | None = None,
    ) -> None:
        del api_key  # nothing to authenticate
        self._poll_s = (pacing or Pacing()).poll_initial_s  # how often a render's progress is read
        self.max_audio_s = max_audio_s
        self.slots = RenderSlots(max_renders_per_caller, max_renders)
        self._trust_anchors = c2pa_trust_anchors  # MCP_AUDIO_C2PA_TRUST_ANCHORS: PEM roots, read at each call

    def check_configured(self) -> None:
        """Needs no key; the engine's libraries come with the package."""

    async def health(self) -> str:
        try:
            import av
            import numpy
        except ImportError as exc:  # a broken install: say which library is missing
            raise McpAudioError(f"the audio engine cannot load: {exc}") from exc
        return f"runs in this process, no key needed (PyAV {av.__version__}, numpy {numpy.__version__})"

    async def aclose(self) -> None:
        return None

    async def run(self, request: UpstreamRequest, report: Report, files: FileSink) -> dict[str, Any]:
        if self.slots.busy(request.principal):
            await report(Update(state="queued", logs=[f"{request.endpoint}: waiting for a free render slot"]))
        async with self.slots.slot(request.principal):
            return await self._render(request, report, files)

    async def _render(self, request: UpstreamRequest, report: Report, files: FileSink) -> dict[str, Any]:
        await report(Update(state="running", logs=[f"{request.endpoint}: processing locally"]))
        work = Path(tempfile.mkdtemp(prefix="mcp-audio-post-"))
        progress = RenderProgress()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._report_progress, request.endpoint, progress, report)
                outcome = await anyio.to_thread.run_sync(
                    _run_tracked,
                    request,
                    work,
                    progress,
                    self.max_audio_s,
                    self._trust_anchors,
                    limiter=self.slots.threads,
                )
                tg.cancel_scope.cancel()
            if isinstance(outcome, RenderStopped):  # stopped by a cancel, which leaving the group raised
                raise McpAudioError("the render was stopped before it finished")
            if isinstance(outcome, Exception):
                raise outcome
            output, made = outcome
            if made is not None:  # saved only once the render is done and the job was not cancelled
                key, data, content_type = made
                output[key] = await anyio.to_thread.run_sync(files, data, content_type)
            return output
        finally:
            shutil.rmtree(work, ignore_errors=True)
            for item in request.local_files():
                if item.temporary:
                    item.path.unlink(missing_ok=True)

    async def _report_progress(self, endpoint: str, progress: RenderProgress, report: Report) -> None:
        """A log line at each tenth of each pass; when cancelled (the job, or the server stops),
        stops the render at its next block, since the worker thread cannot be cancelled."""
        shown = None
        try:
            while True:
                await anyio.sleep(self._poll_s)
                if (now := progress.describe()) not in (None, shown):
                    shown = now
                    try:
                        await report(Update(state="running", logs=[f"{endpoint}: {now}"]))
                    except Exception as exc:  # a progress line is not worth the render
                        log.warning("progress of %s not recorded (%s: %s)", endpoint, type(exc).__name__, exc)
        finally:
            progress.stop()


def _run_tracked(
    request: UpstreamRequest, work: Path, progress: RenderProgress, max_audio_s: float, anchors: Path | None
) -> Outcome | Exception:
    """`_run`, its error returned rather than raised: raised inside the task group, it would
    reach the runner wrapped in an ExceptionGroup instead of as the PostError it is."""
    from mcp_audio.post.errors import PostError

    with running(progress):
        try:
            if request.endpoint == "provenance":
                return _provenance(local=request.local["file"], anchors=anchors), None
            return _run(request, work, max_audio_s)
        except PostError as exc:
            return _naming_field(exc, request.local_files())
        except RenderStopped as exc:
            return exc
        except Exception as exc:  # FFmpeg or numpy on input we did not foresee: say what failed
            log.warning("%s failed in the audio engine", request.endpoint, exc_info=True)
            detail = str(exc).splitlines()[0][:200] if str(exc) else ""
            failed = McpAudioError(
                f"{request.endpoint}: the audio engine could not process the input(s) "
                f"({type(exc).__name__}{': ' + detail if detail else ''}); check that each is a valid audio file"
            )
            failed.__cause__ = exc
            return failed


def _naming_field(exc: Exception, inputs: list[LocalFile]) -> Exception:
    """The engine names a file by its name, here often a temporary one: the input field it came
    from (and the caller's reference) says which one it is."""
    from mcp_audio.post.errors import PostError

    text = str(exc)
    for item in inputs:
        prefix = f"{item.path.name}: "
        if text.startswith(prefix):
            shown = item.source if item.source.startswith(("files://", "jobs://")) else item.path.name
            named = PostError(f"`{item.field}`: {shown}: {text.removeprefix(prefix)}")
            named.__cause__ = exc
            return named
    return exc


# An output file to save: the output field, the file (or its bytes), its content type.
Made = tuple[str, bytes | Path, str]
Outcome = tuple[dict[str, Any], Made | None]  # the output fields, and the file to save


def _run(request: UpstreamRequest, work: Path, max_audio_s: float) -> Outcome:
    """One call, in a worker thread: the output fields, and the file to save (written in `work`).
    Every decode stops once its decoded audio passes `max_audio_s` (MCP_AUDIO_MAX_AUDIO_S)."""
    body, local = request.body, request.local
    if request.endpoint == "subtitles":
        return _subtitles(body, local["job_id"])
    from mcp_audio.post import ops

    if request.endpoint == "info":
        source = _probed(local["file"], max_audio_s)
        return ops.info(source.path, peaks=body.get("peaks", 100), max_duration_s=max_audio_s), None
    output = work / "output"
    if request.endpoint == "join":
        inputs = [_probed(item, max_audio_s) for item in local["files"]]
        rendered = ops.join(
            [item.path for item in inputs],
            output,
            format=_format(body, inputs[0]),
            **_given(body, "gap_s", "crossfade_s"),
            max_duration_s=max_audio_s,
        )
    elif request.endpoint == "mix":
        voice, music = _probed(local["voice"], max_audio_s), _probed(local["music"], max_audio_s)
        rendered = ops.mix(
            voice.path,
            music.path,
            output,
            format=_format(body, voice),
            **_given(body, "music_gain_db", "duck_db", "fade_in_s", "fade_out_s"),
            max_duration_s=max_audio_s,
        )
    elif request.endpoint == "master":
        source = _probed(local["file"], max_audio_s)
        rendered = ops.master(
            source.path,
            output,
            format=_format(body, source),
            codec=CODECS[body["codec"]] if "codec" in body else None,
            **_given(body, "loudness_lufs", "true_peak_db", "sample_rate", "trim_silence"),
            max_duration_s=max_audio_s,
        )
    elif request.endpoint == "trim":
        source = _probed(local["file"], max_audio_s)
        rendered = ops.trim(
            source.path,
            output,
            format=_format(body, source),
            **_given(body, "start_s", "end_s", "fade_s"),
            max_duration_s=max_audio_s,
        )
    else:
        raise McpAudioError(f"unknown local endpoint {request.endpoint!r}")
    fields = {key: getattr(rendered, key) for key in _RENDERED_FIELDS}
    if request.endpoint == "master":
        fields |= {key: getattr(rendered, key) for key in _MASTER_FIELDS}
    return fields, ("audio", rendered.path, FORMAT_TYPES[rendered.format])


def _provenance(local: LocalFile, anchors: Path | None) -> dict[str, Any]:
    """What a file's Content Credentials say, validated offline (trusted only against `anchors`)."""
    from mcp_audio.post.credentials import read_provenance

    try:
        roots = anchors.read_bytes() if anchors is not None else None
    except OSError as exc:  # the operator's file: say which setting, not the server's path
        raise McpAudioError(f"MCP_AUDIO_C2PA_TRUST_ANCHORS cannot be read ({exc.strerror or exc})") from exc
    report = read_provenance(local.path, trust_anchors=roots).as_dict()
    if report["sidecar"] is not None:  # its name: the path may be a temporary copy's
        report["sidecar"] = Path(report["sidecar"]).name
    return report


def _given(body: dict[str, Any], *names: str) -> dict[str, Any]:
    """The engine arguments the caller gave (the engine's defaults are the manifest's)."""
    return {name: body[name] for name in names if name in body}


class _Source:
    """An input with its probed format."""

    def __init__(self, path: Path, format: str) -> None:
        self.path, self.format = path, format


def _probed(item: LocalFile, max_audio_s: float | None) -> _Source:
    """Read an input's header first, so an unreadable input fails early (naming its field: `_naming_field`)."""
    from mcp_audio.post.engine import probe

    info = probe(item.path, max_duration_s=max_audio_s)
    return _Source(item.path, info.format)


def _format(body: dict[str, Any], source: _Source) -> str:
    """The format asked for, else the (first) input's when it is one the engine writes, else wav."""
    if "format" in body:
        return str(body["format"])
    from mcp_audio.post.engine import FORMATS

    return source.format if source.format in FORMATS else "wav"


def _spoken_duration(audio: dict[str, Any]) -> float:
    """The measured length of a speech job's saved audio."""
    from mcp_audio.post.engine import probe
    from mcp_audio.post.errors import PostError

    path = Path(audio["path"]) if audio.get("path") else None
    if path is None or not path.is_file():
        raise PostError(
            "`job_id`: the speech's audio was not saved here (MCP_AUDIO_DOWNLOAD), so its length cannot be "
            "measured; make the speech with its output saved, or transcribe it"
        )
    seconds = probe(path).duration_s or audio.get("duration_s")
    if not seconds:
        raise PostError(f"`job_id`: the length of {path.name} cannot be measured")
    return float(seconds)


def _subtitles(body: dict[str, Any], transcript: dict[str, Any]) -> tuple[dict[str, Any], Made]:
    from mcp_audio.post.errors import PostError
    from mcp_audio.post.subtitles import cues_from_text, cues_from_transcript, to_srt, to_vtt

    kind = body.get("format", "srt")
    try:
        if "spoken_text" in transcript:  # a speech job of ours: its text, timed across its audio
            cues = cues_from_text(
                transcript["spoken_text"], _spoken_duration(transcript["spoken_audio"]), body.get("max_chars", 42)
            )
        else:
            cues = cues_from_transcript(transcript, body.get("max_chars", 42))
    except ValueError as exc:
        raise PostError(f"`job_id`: the transcript's timings cannot be used: {exc}") from exc
    if not cues:
        raise PostError("`job_id`: the transcript has no text to subtitle")
    text = to_srt(cues) if kind == "srt" else to_vtt(cues)
    fields = {
        "subtitles": text,
        "format": kind,
        "cues": len(cues),
        "speakers": sorted({cue.speaker for cue in cues if cue.speaker}),
    }
    return fields, ("file", text.encode("utf-8"), SUBTITLE_TYPES[kind])
