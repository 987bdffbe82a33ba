"""produce_audio and redo_part through a real MCP client against the loopback fal fake.

The results are measured without our engine: chapters read back with mutagen, subtitles parsed
with `srt` and `webvtt-py`, loudness with pyloudnorm, true peak by scipy's 4x oversampling,
RMS and peaks with numpy on samples decoded by PyAV directly. Durations are measured, never
assumed (the fakes' audio length may or may not follow the text)."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from mcp import Client

from mcp_audio.config import ServerSettings
from mcp_audio.core.pricing import dollars
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import body_of, server, text_of

pytestmark = pytest.mark.anyio

KOKORO = "fal-ai/kokoro/american-english"

BOOK = """# The River
The river ran past the mill. It was SQL that kept the books.

Nobody asked where the water went. [pause 1s] It went on.

# The Mill
The mill turned all day. Its wheel was old.

It creaked at night, and the miller slept anyway.

# The Sea
At last the river met the sea. Everything was quiet.
"""


def submits(fake: FakeFal, endpoint: str = KOKORO) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in fake.requests_of("submit") if r.path.strip("/").startswith(endpoint)]


def decode(path: Path) -> tuple[np.ndarray, int]:
    """All samples (channels, n) as float, decoded by PyAV directly."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks = [frame.to_ndarray().astype(np.float64) for frame in container.decode(stream)]
    data = np.concatenate(chunks, axis=1)
    if data.dtype.kind == "i":
        data = data / 32768.0
    return data, rate


def mp3_bitrates(data: bytes) -> set[int]:
    """The bit rate (kb/s) of every MPEG-1 Layer III frame, walking the frame headers."""
    kbps = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
    syncsafe = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
    at = 10 + syncsafe if data[:3] == b"ID3" else 0
    found = set()
    while at + 4 <= len(data) and data[at] == 0xFF and data[at + 1] & 0xE0 == 0xE0:
        rate = kbps[data[at + 2] >> 4]
        sample_rate = (44100, 48000, 32000)[(data[at + 2] >> 2) & 3]
        found.add(rate)
        at += 144 * rate * 1000 // sample_rate + ((data[at + 2] >> 1) & 1)
    assert at >= len(data) - 128, "frames stop before the end of the file"
    return found


def files_by_type(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in body["files"]:
        out.setdefault(item["content_type"], []).append(item)
    return out


@pytest.fixture
async def client(settings: ServerSettings) -> Any:
    settings = settings.model_copy(update={"wait_s": 60})
    async with Client(server(settings), mode="auto") as connected:
        yield connected


async def produce(client: Client, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("produce_audio", arguments)
    body = body_of(result)
    assert body["status"] == "completed", text_of(result)
    return body


async def test_an_audiobook_of_three_chapters(client: Client, fake_fal: FakeFal) -> None:
    body = await produce(
        client, script=BOOK, delivery="audiobook", format="mp3", lexicon={"SQL": "sequel"}, title="Water"
    )
    sent = submits(fake_fal)
    output = body["output"]
    assert len(sent) == output["parts"] == 6  # one request per paragraph here, none twice
    assert any("sequel" in s["prompt"] for s in sent) and not any("SQL" in s["prompt"] for s in sent)
    kinds = files_by_type(body)
    [final] = [f for f in kinds["audio/mpeg"] if f["file_name"].endswith(".mp3")][:1]
    path = Path(final["path"])

    # chapters: embedded (mutagen), in the JSON file, in the result, in agreement
    import mutagen
    import mutagen.id3

    tags = mutagen.id3.ID3(path)
    chaps = sorted(tags.getall("CHAP"), key=lambda c: c.start_time)
    assert [c.sub_frames["TIT2"].text[0] for c in chaps] == ["The River", "The Mill", "The Sea"]
    assert [m["title"] for m in output["chapters"]] == ["The River", "The Mill", "The Sea"]
    for chap, mark in zip(chaps, output["chapters"], strict=True):
        assert (
            abs(chap.start_time / 1000 - mark["start_s"]) < 0.002 and abs(chap.end_time / 1000 - mark["end_s"]) < 0.002
        )
    [chapters_json] = kinds["application/json+chapters"]
    doc = json.loads(Path(chapters_json["path"]).read_text())
    assert doc["version"] == "1.2.0" and [c["title"] for c in doc["chapters"]] == ["The River", "The Mill", "The Sea"]
    assert len(kinds["audio/mpeg"]) == 4  # the book and one file per chapter
    for mark, item in zip(output["chapters"], kinds["audio/mpeg"][1:], strict=True):  # one file per chapter
        chapter = await client.read_resource(item["resource"])  # through files://
        data = base64.b64decode(chapter.contents[0].blob)
        assert mp3_bitrates(data) == {192}
        length = mutagen.File(io.BytesIO(data)).info.length
        assert abs(length - (mark["end_s"] - mark["start_s"])) < 0.1

    # subtitles: the script's words (no lexicon), at most one sentence a cue, in time order
    import srt
    import webvtt

    [srt_file] = kinds["application/x-subrip"]
    cues = list(srt.parse(Path(srt_file["path"]).read_text()))
    text = " ".join(c.content.replace("\n", " ") for c in cues)
    assert "SQL" in text and "sequel" not in text and "[pause" not in text
    assert all(len(re.findall(r"[.!?](?:\s|$)", c.content)) <= 1 for c in cues)
    assert [c.start for c in cues] == sorted(c.start for c in cues)
    [vtt_file] = kinds["text/vtt"]
    vtt = list(webvtt.read(vtt_file["path"]))
    assert len(vtt) == len(cues)

    # the delivery report against our own measurement of the encoded file
    samples, rate = decode(path)
    assert rate == 44100
    report = output["delivery"]
    assert report["delivery"] == "audiobook"
    for mark in output["chapters"]:
        piece = samples[:, round(mark["start_s"] * rate) : round(mark["end_s"] * rate)]
        rms = 10 * math.log10(float(np.mean(piece**2)))
        peak = 20 * math.log10(float(np.max(np.abs(piece))))
        got = {r["rule"]: r for r in report["rules"] if r.get("chapter") == mark["title"]}
        assert abs(got["rms"]["measured"] - rms) < 0.3, (got["rms"], rms)
        assert abs(got["peak"]["measured"] - peak) < 0.3, (got["peak"], peak)
        assert got["rms"]["passed"] == (-23 <= rms <= -18) and got["peak"]["passed"] == (peak <= -3)
    # the book is its chapter files' frames: each chapter file's samples are found in it, just
    # after its chapter mark (by its encoder delay at most), and the chapter's first cue starts
    # where that chapter's first word is in the book
    firsts = {}
    for cue in cues:
        at = cue.start.total_seconds()
        [mark] = [m for m in output["chapters"] if m["start_s"] <= at < m["end_s"]]
        firsts.setdefault(mark["title"], at)
    for mark, item in zip(output["chapters"], kinds["audio/mpeg"][1:], strict=True):
        alone, _ = decode(Path(item["path"]))
        word = int(np.flatnonzero(np.abs(alone[0]) > 1e-3)[0])  # its first word, in the chapter file
        probe = alone[0, word : word + 2048]
        lo = round(mark["start_s"] * rate) + word - rate // 5
        windows = np.lib.stride_tricks.sliding_window_view(samples[0, lo : lo + 2 * rate // 5 + 2048], 2048)
        found = lo + int(np.argmin(np.max(np.abs(windows - probe), axis=1))) - word  # the file's sample 0 in the book
        assert np.max(np.abs(samples[0, found + word : found + word + 2048] - probe)) < 1e-4
        assert 0.0 <= found / rate - mark["start_s"] <= 0.03, (mark, found / rate)
        assert abs(firsts[mark["title"]] - (found + word) / rate) < 0.015, (mark, firsts, (found + word) / rate)
    bitrate = next(r for r in report["rules"] if r["rule"] == "mp3_bitrate")
    assert bitrate["passed"] and mp3_bitrates(path.read_bytes()) == {192}
    for rule in report["rules"]:
        assert rule["passed"] or rule["reason"]  # a failed rule says why


EPISODE = """Alice: Welcome to the show. Today we talk about rivers.

Bob: Thanks, Alice. Rivers are older than roads. They shaped every town.

Alice: And they still do. [pause 1s] Let us begin.

Bob: First, the source.
"""
ELEVEN = "fal-ai/elevenlabs/tts/multilingual-v2"
CHATTERBOX = "fal-ai/chatterbox/text-to-speech/multilingual"


def bed(path: Path, seconds: float = 3.0, rate: int = 44100) -> Path:
    """A music bed: a chord, written as 16-bit WAV with the standard library."""
    import wave

    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 330 * t)) / 2
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((tone * 32767).astype("<i2").tobytes())
    return path


def true_peak_db(samples: np.ndarray) -> float:
    from scipy.signal import resample_poly

    over = resample_poly(samples, 4, 1, axis=1)
    return 20 * math.log10(float(np.max(np.abs(over))))


async def test_a_two_host_episode_with_a_music_bed(settings: ServerSettings, fake_fal: FakeFal, rec_dir: Path) -> None:
    settings = settings.model_copy(update={"wait_s": 60, "allowed_dirs": str(rec_dir)})
    voices = {
        "Alice": {"tool": "elevenlabs_tts", "voice": "Aria"},
        "Bob": {"tool": "chatterbox_tts", "voice": "english"},
    }
    async with Client(server(settings), mode="legacy") as client:
        body = await produce(client, script=EPISODE, voices=voices, music=str(bed(rec_dir / "bed.wav")), format="mp3")
    alice, bob = submits(fake_fal, ELEVEN), submits(fake_fal, CHATTERBOX)
    assert len(alice) == 3 and len(bob) == 2 and len(fake_fal.requests_of("submit")) == 5  # the pause cuts a part
    # continuity: ElevenLabs gets the neighbouring text of Alice's parts, Chatterbox one seed for Bob
    by_text = {a["text"]: a for a in alice}  # sent side by side: in any order
    first, second = by_text["Welcome to the show. Today we talk about rivers."], by_text["And they still do."]
    assert first["next_text"] == "And they still do." and "previous_text" not in first
    assert second["previous_text"].startswith("Welcome to the show") and second["next_text"] == "Let us begin."
    assert bob[0]["seed"] == bob[1]["seed"] and isinstance(bob[0]["seed"], int)
    assert body["output"]["chapters"] == [] and "application/json+chapters" not in files_by_type(body)

    [final] = [f for f in body["files"] if f["content_type"] == "audio/mpeg"]
    samples, rate = decode(Path(final["path"]))
    assert rate == 44100
    import pyloudnorm

    loudness = pyloudnorm.Meter(rate).integrated_loudness(samples.T)
    peak = true_peak_db(samples)
    report = {r["rule"]: r for r in body["output"]["delivery"]["rules"]}
    assert abs(report["loudness"]["measured"] - loudness) < 0.3 and report["loudness"]["passed"] == (
        abs(loudness + 16) <= 1
    )
    assert abs(report["true_peak"]["measured"] - peak) < 0.3 and report["true_peak"]["passed"] == (peak <= -1.0)
    assert -17 <= loudness <= -15 and peak <= -1.0
    # the bed plays alone before the first word (music lead-in), then the speech comes in over it
    lead = samples[:, : int(1.5 * rate)]
    assert 20 * math.log10(float(np.sqrt(np.mean(lead**2)))) > -45

    import srt

    [sub] = [f for f in body["files"] if f["content_type"] == "application/x-subrip"]
    cues = list(srt.parse(Path(sub["path"]).read_text()))
    speakers = [re.match(r"\[(\w+)\]", c.content) for c in cues]
    assert {m.group(1) for m in speakers if m} == {"Alice", "Bob"}
    assert cues[0].content.startswith("[Alice] Welcome to the show.")
    assert cues[0].start.total_seconds() >= 1.5  # after the music's lead-in


async def test_subtitles_name_each_speaker_as_the_script_writes_it(client: Client, fake_fal: FakeFal) -> None:
    voices = {"dr. ada": {"tool": "kokoro_tts", "voice": "af_heart"}, "bob": {"tool": "kokoro_tts", "voice": "am_adam"}}
    script = "Dr. Ada: Hello there.\n\nBOB: Hi, doctor.\n\nDR.  ADA: Goodbye.\n\nThe door closed."
    body = await produce(client, script=script, voices=voices | {"narrator": {"tool": "kokoro_tts", "voice": "af_sky"}})
    kinds = files_by_type(body)
    import srt
    import webvtt

    cues = list(srt.parse(Path(kinds["application/x-subrip"][0]["path"]).read_text()))
    assert [c.content for c in cues] == [
        "[Dr. Ada] Hello there.",
        "[BOB] Hi, doctor.",
        "[DR. ADA] Goodbye.",
        "[narrator] The door closed.",
    ]
    vtt = list(webvtt.read(kinds["text/vtt"][0]["path"]))
    assert [(c.voice, c.text) for c in vtt] == [
        ("Dr. Ada", "Hello there."),
        ("BOB", "Hi, doctor."),
        ("DR. ADA", "Goodbye."),
        ("narrator", "The door closed."),
    ]
    # each spelling still speaks with its `voices` entry
    sent = {s["prompt"]: s["voice"] for s in submits(fake_fal)}
    assert sent == {
        "Hello there.": "af_heart",
        "Hi, doctor.": "am_adam",
        "Goodbye.": "af_heart",
        "The door closed.": "af_sky",
    }


async def test_the_whole_cost_is_asked_once_and_a_decline_sends_nothing(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    from tests.server.test_cost_confirmation import User

    user = User("decline")
    voices = {"narrator": {"tool": "minimax_tts", "voice": "Wise_Woman"}}
    script = "\n\n".join(f"Paragraph {i}. " + "Words go here. " * 60 for i in range(4))  # ~3,700 chars: $0.37
    async with Client(
        server(settings.model_copy(update={"confirm_above_usd": 0.25})), mode="auto", elicitation_callback=user
    ) as client:
        result = await client.call_tool("produce_audio", {"script": script, "voices": voices})
        listed = body_of(await client.call_tool("list_jobs", {}))
    assert result.is_error
    [question] = user.asked
    expected = dollars(round(sum(len(" ".join(p.split())) for p in script.split("\n\n")) / 1000 * 0.1, 6))
    assert f"cost about {expected}" in question.message and "4 parts" in question.message
    assert "was not started" in text_of(result)
    assert fake_fal.requests_of("submit") == [] and listed["jobs"] == []


async def test_the_whole_is_held_to_the_spend_cap_before_anything_is_sent(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    voices = {"narrator": {"tool": "minimax_tts", "voice": "Wise_Woman"}}
    script = "\n\n".join(f"Paragraph {i}. " + "Words go here. " * 60 for i in range(4))  # each part ~$0.09
    capped = settings.model_copy(update={"max_spend_usd": 0.2, "wait_s": 60})
    async with Client(server(capped), mode="auto") as client:
        result = await client.call_tool("produce_audio", {"script": script, "voices": voices})
        listed = body_of(await client.call_tool("list_jobs", {}))
    assert result.is_error and "MCP_AUDIO_MAX_SPEND_USD" in text_of(result)
    assert fake_fal.requests_of("submit") == [] and listed["jobs"] == []


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            {"script": "Alice: Hi.\n\nCarol: Hello.", "voices": {"Alice": {"tool": "kokoro_tts"}}},
            "script line 3: speaker 'Carol' has no voice",
        ),
        (
            {"script": "Hi.", "voices": {"Alice": {"tool": "whisper_transcribe"}}},
            "`voices.Alice.tool`: 'whisper_transcribe' is not a speech tool",
        ),
        (
            {"script": "Hi.", "voices": {"narrator": {"tool": "kokoro_tts", "voice": "nobody"}}},
            "unknown voice 'nobody'",
        ),
        ({"script": "Hello.\n\nThen [laughs] it ended."}, "script line 3: unknown cue [laughs]"),
        ({"script": "x" * 200_001}, "the limit is 200,000"),
        (
            {"script": "Hi.", "lexicon": {f"w{i}": "x" for i in range(501)}},
            "`lexicon`: lexicon has 501 entries; the limit is 500",
        ),
        ({"script": "Hi.", "music": "notes.txt"}, "`music`: 'notes.txt' is not a recognised audio or video format"),
        (
            {"script": "Hi.", "delivery": "radio"},
            "`delivery`: 'radio' is not one of podcast, audiobook, broadcast, none",
        ),
    ],
)
async def test_bad_input_is_refused_before_anything_is_sent(
    settings: ServerSettings, fake_fal: FakeFal, rec_dir: Path, arguments: dict[str, Any], expected: str
) -> None:
    (rec_dir / "notes.txt").write_text("not audio at all, just some words of text " * 4)
    settings = settings.model_copy(update={"allowed_dirs": str(rec_dir)})
    if arguments.get("music") == "notes.txt":
        arguments = arguments | {"music": str(rec_dir / "notes.txt")}
        expected = expected.replace("'notes.txt'", f"'{rec_dir / 'notes.txt'}'")
    async with Client(server(settings), mode="auto") as client:
        result = await client.call_tool("produce_audio", arguments)
        listed = body_of(await client.call_tool("list_jobs", {}))
    assert result.is_error and expected in text_of(result), text_of(result)
    assert fake_fal.requests_of("submit") == [] and listed["jobs"] == []


async def test_redo_part_renders_one_part_again_and_reassembles(client: Client, fake_fal: FakeFal) -> None:
    first = await produce(client, script=BOOK, delivery="audiobook", format="mp3")
    before = len(fake_fal.requests_of("submit"))
    result = await client.call_tool(
        "redo_part", {"job_id": first["job_id"], "part": 2, "text": "Nobody knew. It went on."}
    )
    redo = body_of(result)
    assert redo["status"] == "completed", text_of(result)
    sent = fake_fal.requests_of("submit")[before:]
    assert len(sent) == 1 and json.loads(sent[0].body)["prompt"] == "Nobody knew. It went on."  # nothing else again
    assert redo["job_id"] != first["job_id"] and redo["output"]["redo_of"] == first["job_id"]
    assert redo["output"]["takes"] == {"1": 2}
    import srt

    [sub] = [f for f in redo["files"] if f["content_type"] == "application/x-subrip"]
    text = " ".join(c.content for c in srt.parse(Path(sub["path"]).read_text()))
    assert "Nobody knew." in text and "Nobody asked" not in text
    assert all(Path(f["path"]).is_file() for f in first["files"])  # the first production is kept
    assert {r["rule"] for r in redo["output"]["delivery"]["rules"]} >= {"rms", "peak", "mp3_bitrate"}
    refused = await client.call_tool("redo_part", {"job_id": first["job_id"], "part": 99})
    assert refused.is_error and "has parts 1 to 6" in text_of(refused)


async def test_a_production_s_parts_are_kept_for_redo_part_then_removed(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    settings = settings.model_copy(update={"wait_s": 60, "production_keep_s": 1.0})  # downloads: never
    async with Client(server(settings), mode="auto") as client:
        first = await produce(client, script=BOOK, delivery="audiobook")
        work = settings.data_dir / "productions" / first["job_id"]
        assert len(list((work / "parts").iterdir())) == 6 and not (work / "render").exists()
        fetched = len(fake_fal.requests_of("file"))
        result = await client.call_tool("redo_part", {"job_id": first["job_id"], "part": 3})
        assert body_of(result)["status"] == "completed", text_of(result)
        assert len(fake_fal.requests_of("file")) == fetched + 1  # the new take only: the others are the kept ones
    await anyio.sleep(1.2)
    async with Client(server(settings), mode="auto") as client:  # a start-up removes what is past its keep time
        assert not work.exists() and list((settings.data_dir / "productions").iterdir()) == []
        fetched = len(fake_fal.requests_of("file"))
        result = await client.call_tool("redo_part", {"job_id": first["job_id"], "part": 3})
        assert body_of(result)["status"] == "completed", text_of(result)  # the parts fetched again from their jobs
        assert len(fake_fal.requests_of("file")) == fetched + 6


async def test_a_part_with_an_unknown_outcome_stops_the_production_and_redo_part_finishes_it(
    client: Client, fake_fal: FakeFal
) -> None:
    fake_fal.inject("submit", 500, times=1, body={"detail": "internal server error"})  # one part: unknown
    result = await client.call_tool("produce_audio", {"script": BOOK, "delivery": "audiobook"})
    body = body_of(result)
    assert result.is_error and body["status"] == "failed", text_of(result)
    [number] = {
        int(n)
        for n in re.findall(r"Part (\d+) \(chapter \d+, narrator, script line \d+\) has an unknown", body["error"])
    }
    assert f'redo_part(job_id="{body["job_id"]}", part={number})' in body["error"]
    assert "It is not sent again" in body["error"]
    sent = [json.loads(r.body)["prompt"] for r in fake_fal.requests_of("submit")]
    assert len(sent) == len(set(sent)) <= 6  # nothing resent; parts not yet started were not started
    redo = await client.call_tool("redo_part", {"job_id": body["job_id"], "part": number})
    assert body_of(redo)["status"] == "completed", text_of(redo)
    # that part again, and the parts never started; the finished ones reused
    assert len(fake_fal.requests_of("submit")) == 7


async def test_get_job_shows_a_running_production_s_progress(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script(KOKORO, run_s=0.5)
    progress: list[str] = []

    async def heard(done: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with Client(server(settings.model_copy(update={"wait_s": 0.2})), mode="legacy") as client:
        started = body_of(await client.call_tool("produce_audio", {"script": BOOK}))
        assert started["status"] in ("queued", "running") and started["progress"]["parts"] == 6
        done = await client.call_tool("get_job", {"job_id": started["job_id"], "wait_s": 30}, progress_callback=heard)
    assert body_of(done)["status"] == "completed", text_of(done)
    assert any(re.fullmatch(r"Part \d/6 done \(narrator\)", line) for line in progress), progress
    assert any("assembling" in line for line in progress)
    parts = (done.meta or {})["mcp-audio/parts"]  # for the player: each part's take and file
    assert [p["part"] for p in parts] == [1, 2, 3, 4, 5, 6]
    assert all(p["status"] == "completed" and p["file"]["content_type"].startswith("audio/") for p in parts)


async def test_a_prompt_walks_an_agent_from_a_document_to_a_production(client: Client) -> None:
    listed = {p.name for p in (await client.list_prompts()).prompts}
    assert "produce_document" in listed
    prompt = await client.get_prompt("produce_document", {"document": "Chapter one. Text.", "kind": "audiobook"})
    text = prompt.messages[0].content.text  # type: ignore[union-attr]
    for needed in ("produce_audio", "'# Title'", "Name:", "[pause 2s]", "lexicon", "m4b", "get_job", "redo_part"):
        assert needed in text, needed
    assert text.endswith("Document:\nChapter one. Text.")


async def test_a_generated_music_bed_is_one_more_job_of_the_production(client: Client, fake_fal: FakeFal) -> None:
    body = await produce(
        client,
        script=EPISODE.replace("Alice:", "").replace("Bob:", ""),
        music={"tool": "lyria2_music", "prompt": "calm bed"},
    )
    lyria = [
        json.loads(r.body) for r in fake_fal.requests_of("submit") if r.path.strip("/").startswith("fal-ai/lyria2")
    ]
    assert lyria == [{"prompt": "calm bed"}]
    assert body["output"]["delivery"]["delivery"] == "podcast"
    refused = await client.call_tool("produce_audio", {"script": "Hi.", "music": {"tool": "kokoro_tts", "text": "x"}})
    assert refused.is_error and "`music.tool`: 'kokoro_tts' is not a music tool" in text_of(refused)


async def test_cancel_job_on_a_production_cancels_its_running_parts(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script(KOKORO, run_s=30.0)
    async with Client(server(settings.model_copy(update={"wait_s": 0.3})), mode="auto") as client:
        started = body_of(await client.call_tool("produce_audio", {"script": BOOK}))
        for _ in range(100):  # until parts are upstream
            if len(fake_fal.requests_of("submit")) >= 4:
                break
            await anyio.sleep(0.05)
        cancelled = body_of(await client.call_tool("cancel_job", {"job_id": started["job_id"]}))
        jobs = body_of(await client.call_tool("list_jobs", {"limit": 50}))["jobs"]
    assert cancelled["status"] == "cancelled"
    parts = [j for j in jobs if j["tool"] == "kokoro_tts"]
    assert len(parts) == 4 and all(j["status"] == "cancelled" for j in parts)
    assert len(fake_fal.requests_of("cancel")) == 4 and len(fake_fal.requests_of("submit")) == 4
