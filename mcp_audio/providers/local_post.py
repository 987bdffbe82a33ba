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
from pathlib import Path
from typing import Any

import anyio.to_thread

from mcp_audio.core.errors import McpAudioError
from mcp_audio.core.upstreams import LOCAL
from mcp_audio.post.progress import RenderProgress, RenderStopped, running
from mcp_audio.providers.base import FileSink, LocalFile, Pacing, Report, Update, UpstreamRequest

log = logging.getLogger("mcp_audio.post")

CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "m4a": "audio/mp4",
}
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


class LocalPostProvider:
    upstream = LOCAL
    max_upload_bytes = 1024 * 2**20  # a data: URI or download is held in memory once, then written

    def __init__(
        self, api_key: str | None = None, pacing: Pacing | None = None, c2pa_trust_anchors: Path | None = None
    ) -> None:
        del api_key  # nothing to authenticate
        self._poll_s = (pacing or Pacing()).poll_initial_s  # how often a render's progress is read
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
        await report(Update(state="running", logs=[f"{request.endpoint}: processing locally"]))
        work = Path(tempfile.mkdtemp(prefix="mcp-audio-post-"))
        progress = RenderProgress()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._report_progress, request.endpoint, progress, report)
                outcome = await anyio.to_thread.run_sync(_run_tracked, request, work, progress, self._trust_anchors)
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
            for item in _local_files(request):
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
    request: UpstreamRequest, work: Path, progress: RenderProgress, anchors: Path | None
) -> Outcome | Exception:
    """`_run`, its error returned rather than raised: raised inside the task group, it would
    reach the runner wrapped in an ExceptionGroup instead of as the PostError it is."""
    with running(progress):
        try:
            if request.endpoint == "provenance":
                return _provenance(local=request.local["file"], anchors=anchors), None
            return _run(request, work)
        except Exception as exc:
            return exc


def _local_files(request: UpstreamRequest) -> list[LocalFile]:
    found: list[LocalFile] = []
    for value in request.local.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, LocalFile):
                found.append(item)
    return found


# An output file to save: the output field, the file (or its bytes), its content type.
Made = tuple[str, bytes | Path, str]
Outcome = tuple[dict[str, Any], Made | None]  # the output fields, and the file to save


def _run(request: UpstreamRequest, work: Path) -> Outcome:
    """One call, in a worker thread: the output fields, and the file to save (written in `work`)."""
    body, local = request.body, request.local
    if request.endpoint == "subtitles":
        return _subtitles(body, local["job_id"])
    from mcp_audio.post import ops

    if request.endpoint == "info":
        source = _probed(local["file"])
        return ops.info(source.path, peaks=body.get("peaks", 100)), None
    output = work / "output"
    if request.endpoint == "join":
        inputs = [_probed(item) for item in local["files"]]
        rendered = ops.join(
            [item.path for item in inputs],
            output,
            format=_format(body, inputs[0]),
            **_given(body, "gap_s", "crossfade_s"),
        )
    elif request.endpoint == "mix":
        voice, music = _probed(local["voice"]), _probed(local["music"])
        rendered = ops.mix(
            voice.path,
            music.path,
            output,
            format=_format(body, voice),
            **_given(body, "music_gain_db", "duck_db", "fade_in_s", "fade_out_s"),
        )
    elif request.endpoint == "master":
        source = _probed(local["file"])
        rendered = ops.master(
            source.path,
            output,
            format=_format(body, source),
            codec=CODECS[body["codec"]] if "codec" in body else None,
            **_given(body, "loudness_lufs", "true_peak_db", "sample_rate", "trim_silence"),
        )
    elif request.endpoint == "trim":
        source = _probed(local["file"])
        rendered = ops.trim(
            source.path, output, format=_format(body, source), **_given(body, "start_s", "end_s", "fade_s")
        )
    else:
        raise McpAudioError(f"unknown local endpoint {request.endpoint!r}")
    fields = {key: getattr(rendered, key) for key in _RENDERED_FIELDS}
    if request.endpoint == "master":
        fields |= {key: getattr(rendered, key) for key in _MASTER_FIELDS}
    return fields, ("audio", rendered.path, CONTENT_TYPES[rendered.format])


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


def _probed(item: LocalFile) -> _Source:
    """Read an input's header first, so an unreadable input fails naming its field."""
    from mcp_audio.post.engine import probe
    from mcp_audio.post.errors import PostError

    try:
        info = probe(item.path)
    except PostError as exc:
        shown = item.source if item.source.startswith(("files://", "jobs://")) else item.path.name
        problem = str(exc).split(": ", 1)[-1]
        raise PostError(f"`{item.field}`: {shown}: {problem}") from exc
    return _Source(item.path, info.format)


def _format(body: dict[str, Any], source: _Source) -> str:
    """The format asked for, else the (first) input's when it is one the engine writes, else wav."""
    if "format" in body:
        return str(body["format"])
    return source.format if source.format in CONTENT_TYPES else "wav"


def _subtitles(body: dict[str, Any], transcript: dict[str, Any]) -> tuple[dict[str, Any], Made]:
    from mcp_audio.post.errors import PostError
    from mcp_audio.post.subtitles import cues_from_transcript, to_srt, to_vtt

    kind = body.get("format", "srt")
    try:
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
