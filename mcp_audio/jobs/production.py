"""Productions: a whole episode or audiobook as one durable job, and redo_part.

The production is a job row (tool `produce_audio`, its plan in the body) whose driver is this
module; each speech part (and a generated music bed) is a child job run by the JobRunner like
any call, so it gets submit-once, leases and resume. A child's id is recorded on the
production's row *before* its row is written, so after a kill -9 the next start finds every
part: a finished one is reused, a submitted one is followed, one whose row was never written
is started (nothing was sent), and one the runner marks `unknown` (its submit was cut off)
stops the production with what to do. The whole plan is approved and charged once; parts are
`prepaid`. Finishing (post/production.py) runs in a worker thread, then the files are saved
like every output.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from mcp_audio.catalog import Catalog, PreparedCall
from mcp_audio.core.errors import InvalidArguments, McpAudioError
from mcp_audio.core.media import FORMAT_TYPES
from mcp_audio.core.pricing import Confirm, NotConfirmed
from mcp_audio.core.results import JobResult, OutputFile
from mcp_audio.core.upstreams import UPSTREAMS
from mcp_audio.core.voices import SavedVoice
from mcp_audio.files.fetch import FetchPolicy
from mcp_audio.files.outputs import OutputSaver, write_atomically
from mcp_audio.jobs.pipeline import CallPipeline, fixed_roots
from mcp_audio.jobs.production_plan import (
    DEFAULT_CONCURRENCY,
    PART_CONCURRENCY,
    PRODUCE_TOOL,
    Plan,
    PlanItem,
    make_plan,
    part_arguments,
    quote,
)
from mcp_audio.jobs.provenance import edit_origin
from mcp_audio.jobs.runner import JobRunner
from mcp_audio.store import LOCAL_PRINCIPAL, LOG_TAIL, Job, JobStore

if TYPE_CHECKING:  # the audio engine (numpy, PyAV) is imported when a production first renders
    import httpx

    from mcp_audio.files.marking import Origin
    from mcp_audio.post.production import Assembled, ChapterAudio, Piece

__all__ = ["Productions"]

log = logging.getLogger("mcp_audio.productions")


ORPHAN_GRACE_S = 3600.0
"""A production folder with no job row is removed only once this old (its row may be on its way)."""


def _link_or_copy(source: Path, target: Path) -> None:
    """`target` as a hard link to `source` (no copy of the bytes), or a copy across file systems;
    it appears only when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class _Stop(McpAudioError):
    """A part did not finish: the production stops once the parts in flight are done."""


class Productions:
    """Starts productions and redos, and runs (or resumes) them as the runner's driver."""

    def __init__(
        self,
        store: JobStore,
        runner: JobRunner,
        pipeline: CallPipeline,
        catalog: Catalog,
        saver: OutputSaver | None,
        work_root: Path,
        keep_s: float = 7 * 24 * 3600.0,
    ) -> None:
        self._store = store
        self._runner = runner
        self._pipeline = pipeline
        self._catalog = catalog
        self._saver = saver
        self._work_root = work_root
        self._keep_s = keep_s
        self._slots: dict[str, anyio.Semaphore] = {}
        self._render = anyio.Semaphore(2)  # chapters rendered side by side, at most two (encoding is CPU-bound)
        self._http: httpx.AsyncClient | None = None
        runner.add_driver(PRODUCE_TOOL, self)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def sweep(self) -> int:
        """Remove the working folders (downloaded parts, music bed) of productions that finished
        more than `keep_s` ago, and of productions whose row is gone; an unfinished one (it may be
        resumed) and a folder made in the last hour (its row may be being written) are kept.
        Returns how many were removed. The saved outputs are not touched."""
        if not self._work_root.is_dir():
            return 0
        removed, now = 0, time.time()
        for folder in sorted(self._work_root.iterdir()):
            try:
                if not folder.is_dir():
                    continue
                job = await self._store.get_job(folder.name)
                if job is None and now - folder.stat().st_mtime < ORPHAN_GRACE_S:
                    continue
                if job is not None and (not job.finished or now - (job.finished_at or now) < self._keep_s):
                    continue
                await anyio.to_thread.run_sync(shutil.rmtree, folder)
                removed += 1
            except OSError as exc:
                log.warning("production folder %s not removed: %s", folder.name, exc.strerror or exc)
        if removed:
            log.info("removed %d finished production folder(s) past their keep time", removed)
        return removed

    # --- starting -------------------------------------------------------------------------

    async def plan(self, arguments: Mapping[str, Any], principal: str = LOCAL_PRINCIPAL) -> Plan:
        """The checked plan (InvalidArguments naming the field or line); nothing is sent."""
        voices = await self._pipeline.saved_voices(principal)  # every speaker's checked against these
        return make_plan(arguments, self._catalog, lambda cap, args: self._pipeline.prepare(cap, args, voices))

    def label(self, plan: Plan) -> str:
        return quote(plan, {name: cap.provider for name, cap in self._catalog.capabilities.items()})

    async def start(
        self,
        arguments: Mapping[str, Any],
        roots: list[Path],
        principal: str = LOCAL_PRINCIPAL,
        confirm: Confirm | None = None,
    ) -> Job:
        """Plan, check keys and the music bed, ask about the whole cost once, charge it to the
        caller's cap at once, write the production's row and start it. Nothing is sent before."""
        plan = await self.plan(arguments, principal)
        return await self._launch(plan, {"parts": {}}, roots, principal, confirm, plan.cost_usd)

    async def redo(
        self,
        job_id: str,
        part: int,
        *,
        text: str | None = None,
        voice: Any = None,
        roots: list[Path],
        principal: str = LOCAL_PRINCIPAL,
        confirm: Confirm | None = None,
    ) -> Job:
        """A new production from a finished one: part `part` (1-based) rendered again as a new
        take (with new `text` or `voice` if given), every other part reused, reassembled and
        checked again. The old production and its takes are kept."""
        old = await self._store.get_job(job_id, principal)
        if old is None or old.tool != PRODUCE_TOOL:
            raise InvalidArguments(f"`job_id`: no production with id '{job_id[:64]}' (list_jobs shows recent jobs).")
        if not old.finished:
            raise InvalidArguments(
                f"`job_id`: production {job_id} is still {old.state}; wait for it with get_job first."
            )
        plan = Plan.model_validate(old.body["plan"])
        parts = plan.parts
        if not 1 <= part <= len(parts):
            raise InvalidArguments(f"`part`: production {job_id} has parts 1 to {len(parts)}.")
        item = parts[part - 1]
        self._redo_item(plan, item, text, voice, await self._pipeline.saved_voices(principal))
        handle = {
            "parts": dict(old.handle.get("parts", {})),
            "redo": {str(part - 1): len(old.handle.get("parts", {}).get(str(part - 1), []))},
        }
        if old.handle.get("music"):
            handle["music"] = old.handle["music"]
        music = self._work_root / old.id / "music"
        found = next(iter(sorted(music.parent.glob("music.*"))), None) if music.parent.is_dir() else None
        return await self._launch(plan, handle, roots, principal, confirm, item.cost_usd, music=found, redo_of=old.id)

    def _redo_item(
        self, plan: Plan, item: PlanItem, text: str | None, voice: Any, voices: Sequence[SavedVoice]
    ) -> None:
        from mcp_audio.core.script import Part, make_lexicon

        part = item.as_part()
        speech = dict(plan.voices[part.speaker])
        if isinstance(voice, str):
            speech["voice"] = voice
        elif isinstance(voice, Mapping):
            speech = dict(voice)
        elif voice is not None:
            raise InvalidArguments(
                '`voice`: a voice name of the part\'s tool, or {"tool": <speech tool>, "voice": ...}.'
            )
        tool = speech.get("tool")
        capability, voice_args = self._catalog.resolve(tool, {k: v for k, v in speech.items() if k != "tool"})
        if capability is None or capability.spec.kind != "tts" or "text" not in capability.inputs:
            raise InvalidArguments(f"`voice.tool`: {str(tool)[:60]!r} is not a speech tool of this server.")
        if text is not None:
            words = " ".join(text.split())
            if not words:
                raise InvalidArguments("`text`: must not be empty.")
            spoken = make_lexicon(plan.lexicon).apply(words)
            part = Part(**{**item.part, "text": words, "spoken": spoken}) if item.part else part
        arguments = part_arguments(capability, voice_args, part)
        try:
            call = self._pipeline.prepare(capability, arguments, voices)
        except InvalidArguments as exc:
            raise InvalidArguments(f"part {part.index + 1} ({capability.name}): {exc}") from exc
        item.part = {**(item.part or {}), "text": part.text, "spoken": part.spoken}
        item.tool, item.arguments = capability.name, arguments
        item.cost_usd = call.estimated_cost_usd

    async def _launch(
        self,
        plan: Plan,
        handle: dict[str, Any],
        roots: list[Path],
        principal: str,
        confirm: Confirm | None,
        cost: float | None,
        *,
        music: Path | None = None,
        redo_of: str | None = None,
    ) -> Job:
        tools = {str(item.tool) for item in plan.parts} | ({plan.music_tool} if plan.music_tool else set())
        for tool in sorted(tools):  # a missing key fails before anything else
            capability = self._catalog.get(tool)
            assert capability is not None
            self._runner.providers.get(capability.provider).check_configured()
        job_id = uuid.uuid4().hex
        staged = await self._stage_music(plan, roots, principal) if plan.music_file and music is None else None
        try:
            label = self.label(plan) if redo_of is None else f"redo_part of production {redo_of}"
            if confirm is not None and cost is not None and not await confirm(label, cost):
                raise NotConfirmed(label, cost)
            # The whole at once: SpendLimitExceeded before anything is sent.
            await self._runner.charge(label, cost, principal, "local")
            work = self._work_root / job_id
            work.mkdir(parents=True, exist_ok=True)
            if staged is not None or music is not None:
                source = staged or music
                assert source is not None
                shutil.copyfile(source, work / f"music{source.suffix}")
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        body: dict[str, Any] = {"plan": plan.model_dump(mode="json")}
        if redo_of is not None:
            body["redo_of"] = redo_of
        handle["progress"] = {"parts": len(plan.parts), "done": 0, "phase": "speech"}
        job = await self._store.create_job(
            job_id=job_id,
            tool=PRODUCE_TOOL,
            provider="local",
            endpoint="production",
            body=body,
            options={"roots": [str(r) for r in roots]},
            estimated_cost_usd=cost,
            owner=self._runner.owner,
            principal=principal,
        )
        job = await self._store.record_handle(job.id, handle)
        self._runner.drive(job)
        return job

    async def _stage_music(self, plan: Plan, roots: list[Path], principal: str) -> Path:
        """The caller's music bed, read and checked as audio like any file input, copied aside."""
        mixer = self._catalog.get("audio_mix")
        assert mixer is not None and plan.music_file is not None
        call = PreparedCall(endpoint="mix", body={"music": plan.music_file}, options={})
        try:
            request = await self._pipeline.resolve(mixer, call, roots, principal)
        except InvalidArguments as exc:
            raise InvalidArguments(str(exc).replace("`music_url`", "`music`")) from exc
        local = request.local["music"]
        handle, name = tempfile.mkstemp(prefix="mcp-audio-bed-", suffix=local.path.suffix or ".audio")
        os.close(handle)
        shutil.copyfile(local.path, name)
        if local.temporary:
            local.path.unlink(missing_ok=True)
        return Path(name)

    # --- running (the runner's driver) --------------------------------------------------------

    async def cancel(self, job: Job) -> None:
        """Cancel the parts still running (finished takes stay)."""
        for takes in job.handle.get("parts", {}).values():
            child = await self._store.get_job(takes[-1]) if takes else None
            if child is not None and not child.finished:
                try:
                    await self._runner.cancel(child.id)
                except McpAudioError as exc:
                    log.warning("production %s: part job %s not cancelled: %s", job.id, child.id, exc)

    async def run(self, job_id: str) -> None:
        try:
            await self._run(job_id)
        finally:  # chapters are rendered again on a resume or a redo: only the parts and bed are kept
            shutil.rmtree(self._work_root / job_id / "render", ignore_errors=True)
        await self.sweep()

    async def _run(self, job_id: str) -> None:
        job = await self._require(job_id)
        plan = Plan.model_validate(job.body["plan"])
        state: dict[str, Any] = dict(job.handle)
        state.setdefault("parts", {})
        await self._store.mark_running(job_id)
        work = self._work_root / job_id
        shutil.rmtree(work / "render", ignore_errors=True)  # a resumed production renders its chapters again
        (work / "parts").mkdir(parents=True, exist_ok=True)
        files: dict[int, Path] = {}
        stops: list[str] = []
        music: list[Path] = sorted(work.glob("music.*"))
        rendered: dict[int, ChapterAudio] = {}
        waiting = Counter(item.chapter for item in plan.parts)

        async def part_done(chapter: int) -> None:
            # An audiobook's chapter is conformed as soon as its parts are in, while later ones are spoken.
            waiting[chapter] -= 1
            if waiting[chapter] == 0 and plan.delivery == "audiobook" and not stops:
                async with self._render:
                    if not stops:
                        rendered[chapter] = await anyio.to_thread.run_sync(self._chapter, plan, files, work, chapter)

        async with anyio.create_task_group() as tg:
            if plan.music_tool and not music:
                tg.start_soon(self._music, job, plan, state, music, stops)
            for item in plan.parts:
                tg.start_soon(self._part, job, plan, item, state, files, stops, part_done)
        if stops:
            more = f" (and {len(stops) - 3} more)" if len(stops) > 3 else ""
            raise _Stop(" ".join(stops[:3]) + more)
        await self._progress(job_id, state, "assembling", f"All {len(files)} parts done; assembling and mastering")
        assembled = await anyio.to_thread.run_sync(
            self._assemble, plan, files, work, music[0] if music else None, rendered
        )
        # What the credentials name: the whole, every part (and the bed); a chapter file, its own parts.
        ingredients = [files[index] for index in sorted(files)] + music[:1]
        chapters = [
            [files[item.as_part().index] for item in plan.parts if item.chapter == ci] + music[:1]
            for ci in range(len(plan.chapters))
        ]
        result = await self._result(job, plan, assembled, state, ingredients, chapters)
        await self._store.complete(job_id, result, owner=self._runner.owner)

    async def _part(
        self,
        job: Job,
        plan: Plan,
        item: PlanItem,
        state: dict[str, Any],
        files: dict[int, Path],
        stops: list[str],
        done: Callable[[int], Awaitable[None]],
    ) -> None:
        part = item.as_part()
        key = str(part.index)
        capability = self._catalog.get(str(item.tool))
        where = f"Part {part.index + 1} (chapter {part.chapter + 1}, {part.speaker}, script line {part.line})"
        if capability is None:
            stops.append(f"{where}: its tool {item.tool} no longer exists here.")
            return
        takes: list[str] = state["parts"].setdefault(key, [])
        if not takes or len(takes) <= state.get("redo", {}).get(key, -1):
            takes.append(uuid.uuid4().hex)  # recorded before its row exists: a restart finds it
            await self._store.record_handle(job.id, state)
        child_id = takes[-1]
        try:
            async with self._slot(capability.provider):
                child = await self._store.get_job(child_id)
                if child is None:
                    if stops:
                        return  # stopping: start nothing new
                    roots = fixed_roots([Path(r) for r in job.options.get("roots", [])])
                    request = await self._pipeline.request(capability, dict(item.arguments or {}), roots, job.principal)
                    # Charged with the whole production: the part's own estimate is not charged again.
                    await self._runner.start(
                        capability, request, job.principal, job_id=child_id, prepaid=True, cost=None
                    )
                child = await self._finished(child_id)
            if child.state != "completed" or child.result is None:
                stops.append(self._stop_message(job.id, where, part.index + 1, child))
                return
            files[part.index] = await self._local_copy(child, job)
        except McpAudioError as exc:
            stops.append(
                f'{where} could not be made: {exc} Call redo_part(job_id="{job.id}", part={part.index + 1}) '
                "after fixing it to finish the production; the other parts are kept."
            )
            return
        state.setdefault("progress", {})["done"] = len(files)
        await self._progress(job.id, state, "speech", f"Part {part.index + 1}/{len(plan.parts)} done ({part.speaker})")
        await done(part.chapter)

    async def _music(self, job: Job, plan: Plan, state: dict[str, Any], found: list[Path], stops: list[str]) -> None:
        capability = self._catalog.get(str(plan.music_tool))
        assert capability is not None
        if "music" not in state:
            state["music"] = uuid.uuid4().hex
            await self._store.record_handle(job.id, state)
        child_id = state["music"]
        try:
            async with self._slot(capability.provider):
                if await self._store.get_job(child_id) is None:
                    roots = fixed_roots([Path(r) for r in job.options.get("roots", [])])
                    request = await self._pipeline.request(
                        capability, dict(plan.music_arguments or {}), roots, job.principal
                    )
                    await self._runner.start(
                        capability, request, job.principal, job_id=child_id, prepaid=True, cost=None
                    )
                child = await self._finished(child_id)
            if child.state != "completed" or child.result is None:
                stops.append(f"The music bed ({capability.name}, job {child_id}) {child.state}: {child.error}")
                return
            path = await self._local_copy(child, job)
            target = self._work_root / job.id / f"music{path.suffix}"
            shutil.copyfile(path, target)
            found.append(target)
        except McpAudioError as exc:
            stops.append(f"The music bed ({capability.name}) could not be made: {exc}")

    def _stop_message(self, production: str, where: str, number: int, child: Job) -> str:
        redo = f'redo_part(job_id="{production}", part={number})'
        if child.state == "unknown":
            upstream = UPSTREAMS[child.provider]
            return (
                f"{where} has an unknown outcome (job {child.id}): {child.error} It is not sent again. Check "
                f"{upstream.where_to_check}; then call {redo} to render it again and finish the production "
                "(the other parts are kept)."
            )
        return (
            f"{where} {child.state} (job {child.id}): {child.error} Call {redo} (with new text or voice if "
            "needed) to render it again and finish the production; the other parts are kept."
        )

    def _slot(self, provider: str) -> anyio.Semaphore:
        if provider not in self._slots:
            self._slots[provider] = anyio.Semaphore(PART_CONCURRENCY.get(provider, DEFAULT_CONCURRENCY))
        return self._slots[provider]

    async def _finished(self, job_id: str) -> Job:
        while not (job := await self._runner.wait(job_id, 3600)).finished:
            pass
        return job

    async def _progress(self, job_id: str, state: dict[str, Any], phase: str, line: str) -> None:
        state.setdefault("progress", {})["phase"] = phase
        await self._store.record_handle(job_id, state)
        job = await self._store.get_job(job_id)
        logs = (job.logs if job is not None else []) + [line]
        await self._store.record_progress(job_id, "running", None, logs[-LOG_TAIL:])
        await self._runner.notify(job_id, line)

    async def _local_copy(self, child: Job, production: Job) -> Path:
        """A finished child's audio on this machine: its saved copy, or downloaded once into the
        production's folder (a restart finds it there; a redo finds the old production's copy
        while that is kept, MCP_AUDIO_PRODUCTION_KEEP_S, and links it into its own)."""
        assert child.result is not None
        audio = [f for f in child.result.files if (f.content_type or "audio/").startswith("audio/")]
        if not audio:
            raise McpAudioError(f"job {child.id} finished without an audio file")
        item = audio[0]
        if item.path is not None and Path(item.path).is_file():
            return Path(item.path)
        suffix = Path(item.file_name or "").suffix or ".audio"
        target = self._work_root / production.id / "parts" / f"{child.id}{suffix}"
        if target.is_file():
            return target
        redo_of = production.body.get("redo_of")
        earlier = self._work_root / str(redo_of) / "parts" / target.name if redo_of else None
        if earlier is not None and earlier.is_file():
            try:
                await anyio.to_thread.run_sync(_link_or_copy, earlier, target)
                return target
            except OSError as exc:  # removed meanwhile, or a full disk: fetched again below
                log.info("part %s not taken from production %s: %s", child.id, redo_of, exc.strerror or exc)
        await self._download(item, target)
        return target

    async def _download(self, item: OutputFile, target: Path) -> None:
        import httpx

        from mcp_audio.files.guarded import guarded_client  # httpx: loaded at the first fetch

        policy = self._saver.policy if self._saver is not None else FetchPolicy()
        limit = self._saver.max_bytes if self._saver is not None else None
        try:
            if self._http is None:  # only the hosts the fetch policy allows (the upstreams' own, public ones)
                self._http = guarded_client(policy, httpx.Timeout(60.0, connect=10.0))
            async with self._http.stream("GET", item.url) as response:
                response.raise_for_status()
                await write_atomically(target, response.aiter_bytes(), max_bytes=limit, declared=item.content_type)
        except Exception as exc:  # a refused or broken download: the part's job still has its URL
            raise McpAudioError(f"its audio could not be fetched ({type(exc).__name__}: {str(exc)[:160]})") from exc

    # --- finishing ------------------------------------------------------------------------------

    @staticmethod
    def _pieces(plan: Plan, files: dict[int, Path], chapter: int | None = None) -> list[Piece]:
        from mcp_audio.post.production import Piece

        return [
            Piece(item.chapter, item.as_part(), files[item.as_part().index])
            if item.part is not None
            else Piece(item.chapter, seconds=item.pause_s or 0.0)
            for item in plan.items
            if chapter is None or item.chapter == chapter
        ]

    def _chapter(self, plan: Plan, files: dict[int, Path], work: Path, chapter: int) -> ChapterAudio:
        title = plan.chapters[chapter] or ("Opening" if chapter == 0 else f"Chapter {chapter + 1}")
        from mcp_audio.post.production import audiobook_chapter

        pieces = self._pieces(plan, files, chapter)
        return audiobook_chapter(pieces, chapter, title, work / "render", plan.format)

    def _assemble(
        self, plan: Plan, files: dict[int, Path], work: Path, music: Path | None, rendered: dict[int, ChapterAudio]
    ) -> Assembled:
        from mcp_audio.post.production import assemble

        return assemble(
            self._pieces(plan, files),
            plan.chapters,
            work / "render",
            delivery=plan.delivery,
            format=plan.format,
            music=music,
            title=plan.title,
            rendered=rendered,
            defer_report=True,  # measured while the other files are saved
        )

    async def _result(
        self,
        job: Job,
        plan: Plan,
        done: Assembled,
        state: dict[str, Any],
        ingredients: list[Path],
        by_chapter: list[list[Path]],
    ) -> JobResult:
        saver = self._saver
        if saver is None:
            raise McpAudioError("this server has no output folder to save the production in")

        # (index, file, type, what made it): the index orders the result (and names the file).
        def save(items: list[tuple[int, Path, str, Origin | None]]) -> dict[int, list[OutputFile]]:
            return {i: saver.save_bytes(PRODUCE_TOOL, job.id, i, path, kind, origin) for i, path, kind, origin in items}

        texts: list[tuple[int, Path, str, Origin | None]] = [
            (1, done.subtitles["srt"], "application/x-subrip", None),
            (2, done.subtitles["vtt"], "text/vtt", None),
        ]
        if done.chapters_json is not None:
            texts.append((3, done.chapters_json, "application/json+chapters", None))
        chapter_type = FORMAT_TYPES["m4a" if plan.format == "m4b" else plan.format]
        chapter_files: list[tuple[int, Path, str, Origin | None]] = []
        for ci, path in enumerate(done.chapter_files):
            parts = by_chapter[ci] if ci < len(by_chapter) and by_chapter[ci] else ingredients
            chapter_files.append((len(texts) + ci + 1, path, chapter_type, edit_origin(parts, "production")))
        whole: list[tuple[int, Path, str, Origin | None]] = [
            (0, done.audio, FORMAT_TYPES[plan.format], edit_origin(ingredients, "production"))
        ]
        # The whole file is measured (one decoding pass) while the text files are saved; it is saved
        # itself once measured (signing rewrites it), and before the chapter files: signing holds
        # about twice the signed file in memory, so the largest goes while the least else is held.
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, done.measure)
            saved = await anyio.to_thread.run_sync(save, texts)
        saved |= await anyio.to_thread.run_sync(save, whole)
        saved |= await anyio.to_thread.run_sync(save, chapter_files)
        files = [saved[i][0] for i in sorted(saved)]
        sidecars = [extra for i in sorted(saved) for extra in saved[i][1:]]
        short = {"file_uri": None, "sha256": None, "sample_rate": None, "channels": None}
        for i in range(1, len(files)):  # listed short: the main file's entry has the full details
            marked = files[i].credentials  # the same as the main file's, unless signing failed
            files[i] = files[i].model_copy(update=short | {"credentials": marked if marked and marked.error else None})
        chapters = [
            {"title": mark.title, "start_s": round(mark.start_s, 3), "end_s": round(mark.end_s, 3)}
            for mark, _ in zip(done.marks, done.chapter_files, strict=False)
        ]
        report = done.measure()
        failed = [r for r in report.rules if not r.passed]
        # Passed rules say what was measured; failed ones also the target and why.
        rules = [
            {k: v for k, v in vars(r).items() if v is not None and (k != "target" or not r.passed)}
            for r in report.rules
        ]
        takes = {k: len(v) for k, v in state.get("parts", {}).items() if len(v) > 1}
        summary = (
            f"{PRODUCE_TOOL} finished (job {job.id}): {files[0].path or files[0].url}, {done.duration_s / 60:.1f} min, "
            f"{len(plan.parts)} parts, {len(chapters) or 'no'} chapters. Delivery {report.delivery}: "
            + (
                "every rule passed."
                if not failed
                else f"{len(failed)} of {len(report.rules)} rules failed: "
                + "; ".join(f"{r.rule}{f' ({r.chapter})' if r.chapter else ''}: {r.reason}" for r in failed[:4])
            )
            + " Redo a part with redo_part(job_id, part)."
        )
        output: dict[str, Any] = {
            "title": plan.title,
            "duration_s": done.duration_s,
            "parts": len(plan.parts),
            "chapters": chapters,
            "delivery": {"delivery": report.delivery, "passed": report.passed, "rules": rules},
        }
        if takes:
            output["takes"] = takes
        if job.body.get("redo_of"):
            output["redo_of"] = job.body["redo_of"]
        return JobResult(files=files + sidecars, output=output | {"summary": summary})

    async def part_jobs(self, job: Job) -> list[dict[str, Any]]:
        """Each part's current take as get_job shows it (UIs: `_meta`)."""
        out = []
        for key, takes in sorted(job.handle.get("parts", {}).items(), key=lambda kv: int(kv[0])):
            child = await self._store.get_job(takes[-1]) if takes else None
            entry: dict[str, Any] = {"part": int(key) + 1, "job_id": takes[-1] if takes else None, "takes": len(takes)}
            entry["status"] = child.state if child else "not started"
            if child is not None and child.result is not None and child.result.files:
                entry["file"] = child.result.files[0].entry()
            out.append(entry)
        return out

    async def _require(self, job_id: str) -> Job:
        job = await self._store.get_job(job_id)
        if job is None:
            raise McpAudioError(f"production {job_id} is gone from the store")
        return job
