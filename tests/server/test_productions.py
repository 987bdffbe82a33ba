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

import numpy as np
import pytest
from mcp import Client

from mcp_audio.config import ServerSettings
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
    for mark in output["chapters"]:  # one file per chapter, cut from the book, through files://
        chapter = await client.read_resource(mark["file"])
        data = base64.b64decode(chapter.contents[0].blob)
        assert data[:3] == b"ID3" or data[:2] == b"\xff\xfb"
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
    bitrate = next(r for r in report["rules"] if r["rule"] == "mp3_bitrate")
    assert bitrate["passed"] and mutagen.File(path).info.bitrate == 192000
    for rule in report["rules"]:
        assert rule["passed"] or rule["reason"]  # a failed rule says why
