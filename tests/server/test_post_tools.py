"""The finishing tools (audio_join, audio_mix, audio_master, audio_trim, transcript_subtitles,
audio_info) through a real MCP client: local, keyless, chained by files:// and jobs://
references. Tests make their own audio with numpy and the `wave` module and measure results
independently (with the engine tests' readers): PyAV decodes, pyloudnorm measures BS.1770 loudness, scipy oversamples true
peaks, `srt` and `webvtt-py` parse subtitles."""

from __future__ import annotations

import base64
import hashlib
import inspect
import io
import re
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import srt
import webvtt
from mcp import Client

from mcp_audio.config import ServerSettings, Settings
from mcp_audio.post import ops
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import CATALOG, body_of, completed, server, text_of
from tests.unit.test_post_engine import decode, true_peak_db
from tests.unit.test_post_engine import lufs as loudness

pytestmark = pytest.mark.anyio
RATE = 48000
POST_TOOLS = {
    "audio_join", "audio_mix", "audio_master", "audio_trim", "transcript_subtitles", "audio_info", "audio_provenance"
}  # fmt: skip


# --- audio made here, measured here -----------------------------------------------------------


def wav_bytes(signal: np.ndarray, rate: int = RATE) -> bytes:
    """A (channels, n) or (n,) float signal as 16-bit PCM WAV, written with the standard library."""
    data = np.atleast_2d(signal)
    pcm = (np.clip(data, -1, 1) * 32767).astype("<i2").T.copy()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(data.shape[0])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def write_wav(path: Path, signal: np.ndarray, rate: int = RATE) -> Path:
    path.write_bytes(wav_bytes(signal, rate))
    return path


def tone(seconds: float, freq: float = 440.0, amplitude: float = 0.3, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def noise(seconds: float, amplitude: float = 0.05, seed: int = 1) -> np.ndarray:
    return amplitude * np.random.default_rng(seed).standard_normal((2, int(seconds * RATE)))


def level_at(data: np.ndarray, rate: int, freq: float, start: float, end: float) -> float:
    """Amplitude of the `freq` component in [start, end) seconds, by projection."""
    a, b = int(start * rate), int(end * rate)
    t = np.arange(a, b) / rate
    x = data[0, a:b]
    return float(2 * np.hypot(np.mean(x * np.sin(2 * np.pi * freq * t)), np.mean(x * np.cos(2 * np.pi * freq * t))))


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def post_settings(tmp_path: Path, rec_dir: Path) -> ServerSettings:
    """No key at all: the finishing tools need none."""
    return Settings(
        data_dir=tmp_path / "data", output_dir=tmp_path / "out", allowed_dirs=str(rec_dir), wait_s=60, download="always"
    )


@pytest.fixture
async def post(post_settings: ServerSettings) -> Any:
    async with Client(server(post_settings)) as connected:
        yield connected


async def refused(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, text_of(result)
    return text_of(result)


def only_file(body: dict[str, Any]) -> dict[str, Any]:
    """The one audio output (a format that cannot embed Content Credentials has a `.c2pa` beside it)."""
    [item] = [f for f in body["files"] if f["content_type"] != "application/c2pa"]
    path = Path(item["path"])
    assert path.is_file() and item["file_size"] == path.stat().st_size
    assert item["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert item["resource"] == f"files://{body['job_id']}/{path.name}"
    return dict(item)


# --- the tools as the agent sees them -------------------------------------------------------


async def test_post_tools_are_listed_local_free_and_keyless(post: Client) -> None:
    tools = {tool.name: tool for tool in (await post.list_tools()).tools}
    assert set(tools) >= POST_TOOLS
    for name in POST_TOOLS:
        tool = tools[name]
        assert tool.annotations is not None and tool.annotations.open_world_hint is False, name
    urls = tools["audio_join"].input_schema["properties"]["audio_urls"]
    assert urls.get("type", "array") == "array" and "items" in urls  # a list (its type implied by `items`)
    assert CATALOG.capabilities["audio_master"].spec.price is not None
    assert CATALOG.capabilities["audio_master"].spec.price.usd == 0


def test_manifest_defaults_are_the_engines() -> None:
    """The body holds only given arguments, so the engine's defaults must be the schema's."""
    engine = {"join": ops.join, "mix": ops.mix, "master": ops.master, "trim": ops.trim}
    checked = 0
    for name in ("audio_join", "audio_mix", "audio_master", "audio_trim"):
        capability = CATALOG.capabilities[name]
        parameters = inspect.signature(engine[capability.spec.endpoint or ""]).parameters
        for spec in capability.spec.inputs:
            if spec.default is not None and spec.name in parameters:
                assert parameters[spec.name].default == spec.default, (name, spec.name)
                checked += 1
    assert checked >= 10


async def test_toolset_post_alone(post_settings: ServerSettings) -> None:
    only = post_settings.model_copy(update={"toolsets": "post"})
    async with Client(server(only)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert names == POST_TOOLS | {"get_job", "cancel_job", "list_jobs", "find_audio_tools"}


# --- join, trim, info -------------------------------------------------------------------------


async def test_join_in_order_with_gaps_then_trim_a_saved_output_by_reference(post: Client, rec_dir: Path) -> None:
    parts = [
        write_wav(rec_dir / f"part{i}.wav", tone(s, f)) for i, (s, f) in enumerate([(1.0, 300), (1.5, 600), (0.5, 900)])
    ]
    body = await completed(post, "audio_join", {"audio_urls": [str(p) for p in parts], "gap_s": 0.25, "format": "wav"})
    item = only_file(body)
    data, rate = decode(Path(item["path"]))
    assert data.shape[1] == int(3.0 * RATE + 2 * 0.25 * RATE)
    assert item["path"].endswith(".wav") and item["content_type"] == "audio/wav"
    assert body["output"]["duration_s"] == pytest.approx(3.5, abs=1e-3)
    # Order: 300 Hz first, 600 Hz in the middle, 900 Hz last.
    assert level_at(data, rate, 300, 0.2, 0.8) > 0.25 > level_at(data, rate, 600, 0.2, 0.8)
    assert level_at(data, rate, 600, 1.5, 2.5) > 0.25
    assert level_at(data, rate, 900, 3.05, 3.4) > 0.25

    trimmed = await completed(post, "audio_trim", {"audio_url": item["resource"], "start_s": 1.25, "end_s": 2.75})
    cut, _ = decode(Path(only_file(trimmed)["path"]))
    assert cut.shape[1] == int(1.5 * RATE)
    assert level_at(cut, rate, 600, 0.2, 1.3) > 0.25
    jobs = body_of(await post.call_tool("list_jobs", {}))["jobs"]
    assert [job["tool"] for job in jobs[:2]] == ["audio_trim", "audio_join"]


async def test_join_crossfade_shortens_by_the_fades(post: Client, rec_dir: Path) -> None:
    a, b = write_wav(rec_dir / "a.wav", tone(2.0)), write_wav(rec_dir / "b.wav", tone(2.0, 660))
    body = await completed(post, "audio_join", {"audio_urls": [str(a), str(b)], "crossfade_s": 0.5, "format": "flac"})
    data, _ = decode(Path(only_file(body)["path"]))
    assert data.shape[1] == int(3.5 * RATE)


async def test_info_reports_what_the_file_measures(post: Client, rec_dir: Path) -> None:
    signal = np.concatenate([tone(1.0, amplitude=0.1), tone(1.0, amplitude=0.8)])
    path = write_wav(rec_dir / "steps.wav", signal)
    body = await completed(post, "audio_info", {"audio_url": str(path), "peaks": 60})
    out = body["output"]
    assert body["files"] == []
    assert out["duration_s"] == pytest.approx(2.0, abs=1e-3)
    assert (out["sample_rate"], out["channels"], out["format"]) == (RATE, 1, "wav")
    data, rate = decode(path)
    assert out["loudness_lufs"] == pytest.approx(loudness(data, rate), abs=0.3)
    assert out["true_peak_db"] == pytest.approx(true_peak_db(data), abs=0.3)
    peaks = out["peaks"]
    assert len(peaks) == 60 and all(0 <= p <= 1 for p in peaks)
    assert max(peaks[:29]) == pytest.approx(0.1, abs=0.01) and min(peaks[31:]) == pytest.approx(0.8, abs=0.01)
    # Clients that show only text see the measurements too (not the waveform).
    text = text_of(await post.call_tool("get_job", {"job_id": body["job_id"]}))
    assert f"loudness_lufs {out['loudness_lufs']:g}" in text and "duration_s 2" in text and "peaks" not in text


# --- mix ------------------------------------------------------------------------------------


async def test_mix_fits_the_bed_to_the_voice_and_ducks_it(post: Client, rec_dir: Path) -> None:
    # Voice: a 1 kHz tone for 2 s, silent 2 s, again 2 s, silent 2 s. Music: 3 s of 220 Hz, looped.
    on, off = tone(2.0, 1000, 0.3), np.zeros(2 * RATE)
    voice = write_wav(rec_dir / "voice.wav", np.concatenate([on, off, on, off]))
    music = write_wav(rec_dir / "music.wav", tone(3.0, 220, 0.5))
    args = {"voice_url": str(voice), "music_url": str(music), "format": "wav", "fade_in_s": 1, "fade_out_s": 2}
    body = await completed(post, "audio_mix", args | {"duck_db": 12, "music_gain_db": -6})
    data, rate = decode(Path(only_file(body)["path"]))
    assert data.shape[1] == int((1 + 8 + 2) * RATE)
    under_voice = level_at(data, rate, 220, 1 + 0.6, 1 + 1.8)
    in_pause = level_at(data, rate, 220, 1 + 2.8, 1 + 3.9)
    assert in_pause == pytest.approx(0.5 * 10 ** (-6 / 20), rel=0.12)
    assert 20 * np.log10(in_pause / under_voice) == pytest.approx(12, abs=3)
    assert level_at(data, rate, 1000, 1.2, 2.8) == pytest.approx(0.3, rel=0.05)  # the voice unchanged
    assert level_at(data, rate, 220, 0.0, 0.2) < in_pause / 2  # fading in
    assert level_at(data, rate, 220, 10.8, 11.0) < in_pause / 3  # fading out


# --- master ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "codec", "suffix"),
    [
        ("mp3", None, ".mp3"),
        ("wav", None, ".wav"),
        ("flac", None, ".flac"),
        ("ogg", None, ".ogg"),
        ("m4a", None, ".m4a"),
        ("m4a", "alac", ".m4a"),
    ],
)
async def test_master_hits_loudness_and_true_peak_on_the_encoded_file(
    post: Client, rec_dir: Path, fmt: str, codec: str | None, suffix: str
) -> None:
    source = write_wav(rec_dir / "quiet.wav", noise(6.0, 0.02) + tone(6.0, 300, 0.02))
    args: dict[str, Any] = {"audio_url": str(source), "format": fmt, "loudness_lufs": -16, "true_peak_db": -1}
    if codec:
        args["codec"] = codec
    body = await completed(post, "audio_master", args)
    item = only_file(body)
    assert item["path"].endswith(suffix)
    data, rate = decode(Path(item["path"]))
    assert loudness(data, rate) == pytest.approx(-16, abs=0.5)
    assert true_peak_db(data) < -1 + 0.1
    assert data.shape[1] / rate == pytest.approx(6.0, abs=0.005)  # gapless: the duration kept
    assert body["output"]["on_target"] is True


async def test_master_trims_silence_to_at_most_0_6_s(post: Client, rec_dir: Path) -> None:
    signal = np.concatenate([np.zeros(3 * RATE), tone(2.0, 500, 0.2), np.zeros(4 * RATE)])
    body = await completed(
        post, "audio_master", {"audio_url": str(write_wav(rec_dir / "padded.wav", signal)), "trim_silence": True}
    )
    data, rate = decode(Path(only_file(body)["path"]))
    assert 2.0 <= data.shape[1] / rate <= 2.0 + 2 * 0.6


async def test_a_data_uri_input_sends_nothing_upstream(settings: ServerSettings, fake_fal: FakeFal) -> None:
    """Even with fal configured, a local tool's file input is not uploaded anywhere."""
    uri = "data:audio/wav;base64," + base64.b64encode(wav_bytes(tone(1.0))).decode()
    async with Client(server(settings.model_copy(update={"download": "always"}))) as client:
        body = await completed(client, "audio_info", {"audio_url": uri})
        mastered = await completed(client, "audio_master", {"audio_url": uri, "format": "mp3"})
    assert body["output"]["duration_s"] == pytest.approx(1.0, abs=1e-3)
    assert only_file(mastered)["path"].endswith(".mp3")
    assert fake_fal.requests == []


# --- chains with remote jobs and subtitles ---------------------------------------------------


@pytest.mark.parametrize("download", ["always", "never"])
async def test_a_fal_tts_output_masters_by_jobs_reference(
    settings: ServerSettings, rec_dir: Path, download: str, fake_fal: FakeFal
) -> None:
    chained = settings.model_copy(update={"download": download, "allowed_dirs": str(rec_dir)})
    async with Client(server(chained)) as client:
        speech = await completed(client, "qwen3_tts", {"text": "Hello there."})
        body = await completed(client, "audio_master", {"audio_url": f"jobs://{speech['job_id']}", "format": "wav"})
        item = only_file(body)
        data, rate = decode(Path(item["path"]))
        assert loudness(data, rate) == pytest.approx(-16, abs=0.5)
        [served] = [stored for stored, _ in fake_fal.files.values()]  # the speech job's one output
        with wave.open(io.BytesIO(served)) as source:
            assert data.shape[1] == source.getnframes()  # the fake's speech, its length kept
        info = await completed(client, "audio_info", {"audio_url": f"jobs://{body['job_id']}"})
        assert info["output"]["loudness_lufs"] == pytest.approx(-16, abs=0.5)


WORDS = [
    {"text": "Welcome", "start": 0.10, "end": 0.55, "type": "word", "speaker_id": "speaker_0"},
    {"text": " ", "start": 0.55, "end": 0.60, "type": "spacing", "speaker_id": "speaker_0"},
    {"text": "to", "start": 0.60, "end": 0.72, "type": "word", "speaker_id": "speaker_0"},
    {"text": "the", "start": 0.74, "end": 0.85, "type": "word", "speaker_id": "speaker_0"},
    {"text": "show.", "start": 0.86, "end": 1.30, "type": "word", "speaker_id": "speaker_0"},
    {"text": "Thanks", "start": 1.50, "end": 1.90, "type": "word", "speaker_id": "speaker_1"},
    {"text": "for", "start": 1.92, "end": 2.05, "type": "word", "speaker_id": "speaker_1"},
    {"text": "having", "start": 2.07, "end": 2.40, "type": "word", "speaker_id": "speaker_1"},
    {"text": "me.", "start": 2.42, "end": 2.80, "type": "word", "speaker_id": "speaker_1"},
]


async def test_subtitles_from_word_timings_with_speakers(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.script(
        "fal-ai/elevenlabs/speech-to-text/scribe-v2",
        output={"text": "Welcome to the show. Thanks for having me.", "language_code": "eng", "words": WORDS},
    )
    stt = await completed(client, "elevenlabs_transcribe", {"audio_url": "https://example.com/a.mp3"})
    body = await completed(client, "transcript_subtitles", {"job_id": stt["job_id"], "format": "vtt", "max_chars": 42})
    item = only_file(body)
    assert item["path"].endswith(".vtt")
    captions = webvtt.read(item["path"]).captions
    # Each cue from its first word's start to its last word's end; a new cue where the speaker changes.
    assert [(c.start, c.end) for c in captions] == [("00:00:00.100", "00:00:01.300"), ("00:00:01.500", "00:00:02.800")]
    assert [" ".join(c.text.split()) for c in captions] == ["Welcome to the show.", "Thanks for having me."]
    assert captions[0].voice == "speaker_0" and captions[1].voice == "speaker_1"
    assert body["output"]["speakers"] == ["speaker_0", "speaker_1"]
    assert all(len(line) <= 42 for c in captions for line in c.text.splitlines())


async def test_subtitles_from_segment_timings_as_srt(client: Client, fake_fal: FakeFal) -> None:
    segments = [
        {"timestamp": [0.0, 2.5], "text": "The first sentence of the episode."},
        {"timestamp": [2.5, 6.25], "text": "A second, somewhat longer sentence that needs two lines."},
    ]
    fake_fal.script("fal-ai/whisper", output={"text": "...", "chunks": segments})
    stt = await completed(client, "whisper_transcribe", {"audio_url": "https://example.com/a.mp3"})
    body = await completed(client, "transcript_subtitles", {"job_id": f"jobs://{stt['job_id']}"})
    cues = list(srt.parse(body["output"]["subtitles"]))
    assert [(c.start.total_seconds(), c.end.total_seconds()) for c in cues] == [(0.0, 2.5), (2.5, 6.25)]
    assert " ".join(cues[1].content.split()) == segments[1]["text"]
    assert all(len(line) <= 42 for c in cues for line in c.content.splitlines())
    assert Path(only_file(body)["path"]).read_text("utf-8") == body["output"]["subtitles"]
    assert "1\n00:00:00,000 --> 00:00:02,500" in text_of(await client.call_tool("get_job", {"job_id": body["job_id"]}))


async def test_subtitles_for_our_own_speech_come_from_the_text_sent(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    text = "Welcome to the show. Today we talk about sound, and about how it travels! Stay with us."
    async with Client(server(settings.model_copy(update={"download": "always"}))) as client:
        speech = await completed(client, "qwen3_tts", {"text": text})
        seconds = only_file(speech)["duration_s"]
        body = await completed(client, "transcript_subtitles", {"job_id": speech["job_id"]})
        cues = list(srt.parse(body["output"]["subtitles"]))
        assert " ".join(" ".join(c.content.split()) for c in cues) == text  # the text we sent
        assert cues[0].start.total_seconds() == 0
        assert cues[-1].end.total_seconds() == pytest.approx(seconds, abs=0.002)  # across the measured audio
        first = next(c for c in cues if c.content.endswith("show."))
        sentences = len(text) - 2  # the three sentences' characters, without the two spaces between them
        assert first.end.total_seconds() == pytest.approx(seconds * 20 / sentences, abs=0.01)  # by sentence length
        submits = [r for r in fake_fal.requests if r.kind == "submit"]
        assert len(submits) == 1  # the speech only: no transcription was bought
    async with Client(server(settings)) as client:  # download=never: no audio here to measure
        speech = await completed(client, "qwen3_tts", {"text": text})
        message = await refused(client, "transcript_subtitles", {"job_id": speech["job_id"]})
        assert "`job_id`:" in message and "not saved" in message


# --- bad input ------------------------------------------------------------------------------


async def test_bad_file_inputs_name_the_field(post: Client, rec_dir: Path, post_settings: ServerSettings) -> None:
    (rec_dir / "notes.txt").write_text("not audio at all " * 10)
    (rec_dir / "empty.wav").write_bytes(b"")
    good = write_wav(rec_dir / "good.wav", tone(1.0))
    outside = write_wav(post_settings.data_dir.parent / "outside.wav", tone(1.0))
    assert "`audio_url`: '" in (
        message := await refused(post, "audio_master", {"audio_url": str(rec_dir / "notes.txt")})
    )
    assert "not a recognised audio" in message
    assert "`audio_url`:" in (message := await refused(post, "audio_info", {"audio_url": str(rec_dir / "empty.wav")}))
    assert "empty" in message
    assert "outside the folders" in await refused(post, "audio_info", {"audio_url": str(outside)})
    message = await refused(post, "audio_join", {"audio_urls": [str(good), str(rec_dir / "missing.wav")]})
    assert "`audio_urls[1]`: no file at" in message
    assert "`audio_urls`:" in await refused(post, "audio_join", {"audio_urls": []})
    assert "`music_url`: required" in await refused(post, "audio_mix", {"voice_url": str(good)})
    message = await refused(post, "audio_info", {"audio_url": "jobs://nope"})
    assert "`audio_url`: no job with id 'nope'" in message
    info = await completed(post, "audio_info", {"audio_url": str(good)})
    message = await refused(post, "audio_master", {"audio_url": f"jobs://{info['job_id']}"})
    assert f"`audio_url`: job {info['job_id']} (audio_info) has no audio output" in message
    message = await refused(post, "audio_master", {"audio_url": f"files://{info['job_id']}/x.wav"})
    assert "has no output file 'x.wav'" in message
    message = await refused(post, "transcript_subtitles", {"job_id": info["job_id"]})
    assert "`job_id`:" in message and "no segment or word timings" in message
    # Bytes that claim to be audio but do not decode fail the job, naming the field.
    (rec_dir / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    result = await post.call_tool("audio_trim", {"audio_url": str(rec_dir / "broken.wav"), "end_s": 1})
    assert result.is_error and "`audio_url`: broken.wav" in text_of(result)
    assert body_of(result)["status"] == "failed"


async def test_a_reference_to_an_unfinished_job_says_to_wait(
    settings: ServerSettings, fake_fal: FakeFal, rec_dir: Path
) -> None:
    fake_fal.script("fal-ai/qwen-3-tts/text-to-speech/1.7b", queue_s=30)
    impatient = settings.model_copy(update={"wait_s": 0.2, "allowed_dirs": str(rec_dir)})
    async with Client(server(impatient)) as client:
        started = body_of(await client.call_tool("qwen3_tts", {"text": "Later."}))
        assert started["status"] in ("queued", "running")
        message = await refused(client, "audio_master", {"audio_url": f"jobs://{started['job_id']}"})
        assert f"`audio_url`: job {started['job_id']} (qwen3_tts) is still" in message and "get_job" in message
        await client.call_tool("cancel_job", {"job_id": started["job_id"]})


async def test_produce_episode_prompt_walks_the_whole_chain(
    settings: ServerSettings, fake_fal: FakeFal, rec_dir: Path
) -> None:
    """The prompt names each step's tool as tools/list shows it (a family tool with its `model`),
    in order; an agent doing what it says gets a mastered episode with subtitles."""
    chained = settings.model_copy(update={"download": "always", "allowed_dirs": str(rec_dir)})
    segments = [{"timestamp": [0.0, 0.8], "text": "Tide pools hold small worlds."}]
    fake_fal.script("fal-ai/whisper", output={"text": segments[0]["text"], "chunks": segments})
    async with Client(server(chained)) as client:
        assert "produce_episode" in {prompt.name for prompt in (await client.list_prompts()).prompts}
        result = await client.get_prompt("produce_episode", {"topic": "Tide pools", "minutes": "4"})
        text = result.messages[0].content.text  # type: ignore[union-attr]
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        # "call speak with model 'qwen3'": the family calls the prompt names, in its order.
        (speak, voice), (music, bed), (transcribe, stt) = re.findall(r"(\w+) with model '([^']+)'", text)
        steps = [
            f"{speak} with model '{voice}'",
            "audio_join",
            f"{music} with model '{bed}'",
            "audio_mix",
            "audio_master",
            f"{transcribe} with model '{stt}'",
            "transcript_subtitles",
        ]
        positions = [text.index(step) for step in steps]
        assert positions == sorted(positions) and "Tide pools" in text and "jobs://" in text
        # The preferred tool of each step (prompts.py), reached as tools/list offers it.
        for tool, choice, member in [
            (speak, voice, "qwen3_tts"),
            (music, bed, "lyria2_music"),
            (transcribe, stt, "whisper_transcribe"),
        ]:
            assert tool in listed and choice in listed[tool].input_schema["properties"]["model"]["enum"]
            assert member not in listed and member not in text
            routed, _ = CATALOG.resolve(tool, {"model": choice})
            assert routed is not None and routed.name == member
        # The walk, step by step, as the prompt says.
        parts = [
            await completed(client, speak, {"model": voice, "text": line})
            for line in ("Tide pools hold small worlds.", "Come and look.")
        ]
        joined = await completed(
            client, "audio_join", {"audio_urls": [f"jobs://{part['job_id']}" for part in parts], "gap_s": 0.4}
        )
        scored = await completed(client, music, {"model": bed, "prompt": "calm instrumental bed, no vocals"})
        mixed = await completed(
            client,
            "audio_mix",
            {"voice_url": f"jobs://{joined['job_id']}", "music_url": f"jobs://{scored['job_id']}"},
        )
        master = await completed(
            client, "audio_master", {"audio_url": f"jobs://{mixed['job_id']}", "loudness_lufs": -16, "format": "mp3"}
        )
        heard = await completed(
            client, transcribe, {"model": stt, "audio_url": f"jobs://{master['job_id']}", "chunk_level": "segment"}
        )
        subtitles = await completed(client, "transcript_subtitles", {"job_id": heard["job_id"], "format": "srt"})
    assert only_file(master)["path"].endswith(".mp3")
    assert [cue.content for cue in srt.parse(subtitles["output"]["subtitles"])] == [segments[0]["text"]]
    # Each family call ran its member on fal: two parts of speech, one bed, one transcription.
    submitted = [r.path.strip("/") for r in fake_fal.requests_of("submit")]
    assert sorted(submitted) == sorted(
        ["fal-ai/qwen-3-tts/text-to-speech/1.7b"] * 2 + ["fal-ai/lyria2", "fal-ai/whisper"]
    ), submitted


async def test_a_remote_tool_takes_a_reference_to_a_local_output(
    settings: ServerSettings, fake_fal: FakeFal, rec_dir: Path
) -> None:
    """The chain goes on past the finishing tools: whisper_transcribe gets the master by reference."""
    chained = settings.model_copy(update={"download": "always", "allowed_dirs": str(rec_dir)})
    source = write_wav(rec_dir / "episode.wav", noise(2.0))
    async with Client(server(chained)) as client:
        mastered = await completed(client, "audio_master", {"audio_url": str(source), "format": "flac"})
        item = only_file(mastered)
        await completed(client, "whisper_transcribe", {"audio_url": item["resource"]})
    [upload] = [r for r in fake_fal.requests if r.kind == "upload"]
    assert upload.body == Path(item["path"]).read_bytes()
    assert upload.headers["content-type"] == "audio/flac"


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder, made this test's own so what is left in it can be seen."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


async def test_temporary_inputs_are_removed_after_the_call(post: Client, rec_dir: Path, scratch: Path) -> None:
    write_wav(rec_dir / "x.wav", tone(1.0))
    uri = "data:audio/wav;base64," + base64.b64encode((rec_dir / "x.wav").read_bytes()).decode()
    await completed(post, "audio_join", {"audio_urls": [uri, str(rec_dir / "x.wav"), uri], "format": "mp3"})
    message = await refused(post, "audio_join", {"audio_urls": [uri, "data:audio/wav;base64,AAAA"]})
    assert "`audio_urls[1]`:" in message
    assert list(scratch.iterdir()) == []


async def test_a_cancelled_job_saves_nothing(post_settings: ServerSettings, rec_dir: Path, scratch: Path) -> None:
    source = write_wav(rec_dir / "long.wav", noise(90.0))
    async with Client(server(post_settings.model_copy(update={"wait_s": 0.3}))) as client:
        started = body_of(await client.call_tool("audio_master", {"audio_url": str(source), "format": "mp3"}))
        assert started["status"] == "running", started
        cancelled = body_of(await client.call_tool("cancel_job", {"job_id": started["job_id"]}))
        assert cancelled["status"] == "cancelled"
        for _ in range(600):  # the render finishes in its thread, then its work folder goes
            if not list(scratch.iterdir()):
                break
            await anyio.sleep(0.1)
        assert list(scratch.iterdir()) == []
        assert not post_settings.output_dir.exists() or list(post_settings.output_dir.iterdir()) == []
        done = body_of(await client.call_tool("get_job", {"job_id": started["job_id"]}))
        assert done["status"] == "cancelled"


async def test_a_url_input_is_downloaded_once_for_the_call(settings: ServerSettings, fake_fal: FakeFal) -> None:
    url = fake_fal.put_file("bed.wav", wav_bytes(tone(1.5)), "audio/wav")
    async with Client(server(settings.model_copy(update={"download": "always"}))) as client:
        body = await completed(client, "audio_trim", {"audio_url": url, "start_s": 0.5})
        missing = await refused(client, "audio_info", {"audio_url": url + "-gone"})
    data, _ = decode(Path(only_file(body)["path"]))
    assert data.shape[1] == RATE
    assert "`audio_url`: downloading" in missing and "failed (HTTP 404)" in missing
    assert [r.kind for r in fake_fal.requests] == ["file", "file"]  # two downloads; no upload, no submit


# --- long renders: progress, and a cancel that stops the work -------------------------------


async def test_a_long_render_reports_each_pass_as_it_goes(post: Client, rec_dir: Path) -> None:
    # 30 s take about a CPU-second to master in four passes: dozens of progress reads.
    source = write_wav(rec_dir / "long.wav", noise(30.0, 0.02) + tone(30.0, 300, 0.02))
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    result = await post.call_tool(
        "audio_master", {"audio_url": str(source), "format": "flac"}, progress_callback=on_progress
    )
    assert not result.is_error, text_of(result)
    steps = [re.fullmatch(r"Running: master: pass (\d), (\d+)% of 30 s", m) for m in seen]
    passes = [(int(s[1]), int(s[2])) for s in steps if s]
    assert len(passes) >= 3, seen  # the test server reads progress every 0.02 s
    assert passes == sorted(passes), passes  # pass by pass, each in rising tenths
    assert {p for p, _ in passes} <= {1, 2, 3, 4}


async def test_cancel_job_stops_a_local_render_at_once_and_saves_nothing(
    post_settings: ServerSettings, rec_dir: Path
) -> None:
    # Ten minutes mastered to MP3 take over ten seconds here; a cancel must not wait for that.
    source = rec_dir / "ten-minutes.wav"
    with wave.open(str(source), "wb") as out:  # written a minute at a time: memory stays small
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(44100)
        for _ in range(10):
            out.writeframes((tone(60.0, 300, 0.1, rate=44100) * 32767).astype("<i2").tobytes())
    async with Client(server(post_settings.model_copy(update={"wait_s": 0}))) as client:
        handle = body_of(await client.call_tool("audio_master", {"audio_url": str(source), "format": "mp3"}))
        job_id = handle["job_id"]
        with anyio.fail_after(30):
            while not any("master: pass" in line for line in handle.get("logs", [])):
                await anyio.sleep(0.05)
                handle = body_of(await client.call_tool("get_job", {"job_id": job_id}))
        cancelled = body_of(await client.call_tool("cancel_job", {"job_id": job_id}))
        assert cancelled["status"] == "cancelled"
        after = body_of(await client.call_tool("get_job", {"job_id": job_id}))
        stopping = time.monotonic()
    # Leaving the client stops the server, which waits for its worker threads: the render
    # stopped at its next block, so that is quick (without the stop it took the whole render).
    assert time.monotonic() - stopping < 3.0
    assert after["status"] == "cancelled" and not after.get("files")
    assert not list(post_settings.output_dir.rglob("*.mp3"))
