"""The sandbox can serve a production: speech as long as its text, music and effects as long as
asked, transcripts of its own speech, and a placeholder note on every result. Through a real MCP
client against the loopback fakes; the audio is measured from the decoded files (wave, mutagen)."""

from __future__ import annotations

import io
import shutil
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mutagen
import numpy as np
import pytest
from mcp import Client

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox import audio
from mcp_audio.sandbox.audio import SANDBOX_NOTE
from mcp_audio.sandbox.eigen import FakeEigen
from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.sandbox.voice_api import FakeVoiceApi
from tests.helpers import audio_payload, completed, make_wav, server

pytestmark = pytest.mark.anyio

SENTENCES = (
    "The lighthouse keeper climbed the stairs every evening at dusk.",
    "He trimmed the wick, wiped the lens, and watched the ships pass by!",
    "Nobody remembered when the light had last gone dark.",
    "Did the sea ever rest?",
    "Some nights the fog rolled in so thick that he could not see his own hands.",
)
PASSAGE = " ".join(SENTENCES)


@pytest.fixture
async def saving(every_settings: ServerSettings) -> AsyncIterator[Client]:
    """Every upstream, outputs saved locally so they can be measured and sent on."""
    async with Client(server(every_settings.model_copy(update={"download": "always"}))) as connected:
        yield connected


def saved_file(body: dict[str, Any]) -> Path:
    return Path(body["files"][0]["path"])


def decoded(path: Path) -> tuple[np.ndarray[Any, Any], int]:
    with wave.open(str(path)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth()) == (1, 2)
        samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.float64)
        return samples, reader.getframerate()


def dbfs(samples: np.ndarray[Any, Any]) -> float:
    return float(20 * np.log10(max(float(np.sqrt(np.mean(samples**2))), 1e-9) / 32768))


def windows_db(samples: np.ndarray[Any, Any], rate: int, seconds: float = 0.05) -> np.ndarray[Any, Any]:
    n = int(rate * seconds)
    frames = samples[: len(samples) // n * n].reshape(-1, n)
    return np.array(20 * np.log10(np.maximum(np.sqrt(np.mean(frames**2, axis=1)), 1e-9) / 32768))


def pitch(samples: np.ndarray[Any, Any], rate: int) -> float:
    """The fundamental of the loudest half second, by autocorrelation (60-400 Hz)."""
    n = rate // 2
    loudest = max(range(0, len(samples) - n, n // 2), key=lambda at: float(np.sum(samples[at : at + n] ** 2)))
    piece = samples[loudest : loudest + n]
    corr = np.correlate(piece, piece, "full")[n - 1 :]
    low, high = rate // 400, rate // 60
    return rate / (low + int(np.argmax(corr[low:high])))


async def test_speech_lasts_as_long_as_its_text_and_sounds_like_speech(saving: Client) -> None:
    short = await completed(saving, "kokoro_tts", {"prompt": SENTENCES[0]})
    long_text = " ".join([PASSAGE] * 4)  # ~1,300 characters
    long = await completed(saving, "kokoro_tts", {"prompt": long_text})
    for body, text in ((short, SENTENCES[0]), (long, long_text)):
        samples, rate = decoded(saved_file(body))
        assert len(samples) / rate == pytest.approx(len(text) / 14, rel=0.1), text[:20]
        assert body["output"]["sandbox"] == SANDBOX_NOTE
    samples, rate = decoded(saved_file(long))
    levels = windows_db(samples, rate)
    speaking = levels > -50
    # Mostly speech at about -20 dBFS, with real pauses: the quietest stretches are the noise floor.
    assert 0.6 < speaking.mean() < 0.97
    speech = samples[: len(speaking) * int(rate * 0.05)][np.repeat(speaking, int(rate * 0.05))]
    assert dbfs(speech) == pytest.approx(-20, abs=2)
    assert -72 < float(np.percentile(levels, 2)) < -62
    # Not a tone: the level rises and falls at a syllable rate (3-10 a second).
    rises = np.sum(np.diff((levels > -30).astype(int)) == 1) / (len(samples) / rate)
    assert 1.5 < rises < 10
    assert float(np.max(np.abs(samples))) < 32767  # never clipped


async def test_the_same_voice_sounds_the_same_and_voices_differ_in_pitch(saving: Client) -> None:
    first = await completed(saving, "kokoro_tts", {"prompt": PASSAGE, "voice": "af_heart"})
    again = await completed(saving, "kokoro_tts", {"prompt": PASSAGE, "voice": "af_heart"})
    other = await completed(saving, "kokoro_tts", {"prompt": PASSAGE, "voice": "am_adam"})
    # The same audio (the files differ only in their Content Credentials, signed at other times).
    assert audio_payload(saved_file(first).read_bytes()) == audio_payload(saved_file(again).read_bytes())
    one, rate = decoded(saved_file(first))
    two, _ = decoded(saved_file(other))
    assert len(one) == len(two)  # the text sets the length, the voice does not
    # Each voice name has its own pitch (a semitone apart at least, unless two names collide).
    assert abs(pitch(one, rate) / pitch(two, rate) - 1) > 0.05


@pytest.mark.parametrize(
    ("tool", "arguments", "seconds"),
    [
        ("stable_audio_music", {"prompt": "calm piano", "seconds_total": 12}, 12.0),
        ("cassetteai_music", {"prompt": "lofi beat", "duration": 15}, 15.0),
        ("cassetteai_sound_effect", {"prompt": "door slam", "duration": 3}, 3.0),
        ("mmaudio_sound", {"prompt": "rain on a tin roof"}, 8.0),  # the schema's default
        ("lyria2_music", {"prompt": "a brass fanfare"}, 30.0),  # no length to ask: the sandbox's default
        ("elevenlabs_sound_effect", {"text": "a whoosh", "duration_seconds": 4.5}, 4.5),  # MP3
    ],
)
async def test_music_and_effects_last_as_long_as_asked(
    saving: Client, tool: str, arguments: dict[str, Any], seconds: float
) -> None:
    body = await completed(saving, tool, arguments)
    path = saved_file(body)
    info = mutagen.File(path).info
    assert float(info.length) == pytest.approx(seconds, abs=0.1)
    assert body["output"]["sandbox"] == SANDBOX_NOTE
    assert (audio.read_tag(path.read_bytes()) or {}).get(audio.TAG_KEY) == SANDBOX_NOTE  # the file says so too


async def test_fal_transcribes_its_own_speech_with_timings_that_fit_the_audio(saving: Client, rec_dir: Path) -> None:
    spoken = await completed(saving, "kokoro_tts", {"prompt": PASSAGE})
    shutil.copy(saved_file(spoken), rec_dir / "spoken.wav")  # a local file: uploaded to fal's storage
    duration = len(decoded(saved_file(spoken))[0]) / 24_000
    whisper = await completed(saving, "whisper_transcribe", {"audio_url": str(rec_dir / "spoken.wav")})
    assert whisper["output"]["text"] == PASSAGE
    chunks = whisper["output"]["chunks"]
    assert [c["text"] for c in chunks] == list(SENTENCES)
    bounds = [t for c in chunks for t in c["timestamp"]]
    assert bounds == sorted(bounds) and bounds[0] > 0 and bounds[-1] <= duration
    assert whisper["output"]["sandbox"] == SANDBOX_NOTE
    # By the fal URL it was served at (no upload), and per word.
    url = spoken["files"][0]["url"]
    scribe = await completed(saving, "elevenlabs_transcribe", {"audio_url": url})
    words = scribe["output"]["words"]
    assert " ".join(w["text"] for w in words) == PASSAGE
    assert all(w["start"] < w["end"] for w in words) and words[-1]["end"] <= duration


async def test_voice_api_and_eigen_transcribe_their_own_and_each_others_speech(
    saving: Client, rec_dir: Path, fake_voice: FakeVoiceApi, fake_eigen: FakeEigen
) -> None:
    text = "<|speaker:0|>Welcome back to the show. <|speaker:1|>Thanks, it is good to be here."
    voiced = await completed(saving, "voice_api_tts", {"text": text, "model_ids": ["m-warm-narrator", "m-bright-host"]})
    shutil.copy(saved_file(voiced), rec_dir / "voiced.mp3")
    said = "Welcome back to the show. Thanks, it is good to be here."
    assert float(mutagen.File(rec_dir / "voiced.mp3").info.length) == pytest.approx(len(said) / 14, rel=0.15)
    heard = await completed(saving, "voice_api_transcribe", {"audio_url": str(rec_dir / "voiced.mp3")})
    assert heard["output"]["text"] == said and heard["output"]["sandbox"] == SANDBOX_NOTE
    assert [s["text"] for s in heard["output"]["segments"]] == [
        "Welcome back to the show.",
        "Thanks, it is good to be here.",
    ]
    by_eigen = await completed(saving, "eigen_transcribe", {"audio_url": str(rec_dir / "voiced.mp3")})
    assert by_eigen["output"]["text"] == said

    eigen_speech = await completed(saving, "eigen_qwen3_tts", {"text": SENTENCES[1], "voice": "Ryan"})
    shutil.copy(saved_file(eigen_speech), rec_dir / "eigen.wav")
    plain = await completed(
        saving, "eigen_transcribe", {"audio_url": str(rec_dir / "eigen.wav"), "response_format": "text"}
    )
    assert plain["output"] == {"text": SENTENCES[1]}
    by_fal = await completed(saving, "wizper_transcribe", {"audio_url": str(rec_dir / "eigen.wav")})
    assert by_fal["output"]["text"] == SENTENCES[1]
    # Audio the sandbox did not make keeps the placeholder transcript.
    (rec_dir / "other.wav").write_bytes(make_wav(2.0))
    other = await completed(saving, "eigen_transcribe", {"audio_url": str(rec_dir / "other.wav")})
    assert other["output"]["text"] == fake_eigen.transcript and other["output"]["sandbox"] == SANDBOX_NOTE


async def test_every_sandbox_result_says_it_is_a_placeholder(saving: Client, fake_fal: FakeFal) -> None:
    """In the result's fields where the upstream answers JSON; in the file's own tag where it sends
    only audio (Eigen and the Voice API's speech)."""
    for tool, arguments in (
        ("elevenlabs_tts", {"text": "Hello."}),
        ("minimax_tts", {"prompt": "Hello."}),
        ("qwen3_tts", {"text": "Hello."}),
    ):
        body = await completed(saving, tool, arguments)
        assert body["output"]["sandbox"] == SANDBOX_NOTE, tool
        assert (audio.read_tag(saved_file(body).read_bytes()) or {}).get(audio.TAG_KEY) == SANDBOX_NOTE, tool
    minimax = await completed(saving, "minimax_tts", {"prompt": PASSAGE})
    seconds = len(decoded(saved_file(minimax))[0]) / 24_000
    assert minimax["output"]["duration_ms"] == pytest.approx(seconds * 1000, abs=1)
    only_audio: list[tuple[str, dict[str, Any]]] = [
        ("eigen_higgs_tts", {"text": "Hello."}),
        ("voice_api_tts", {"text": "Hello.", "model_ids": ["m-warm-narrator"]}),
    ]
    for tool, arguments in only_audio:
        body = await completed(saving, tool, arguments)
        assert (audio.read_tag(saved_file(body).read_bytes()) or {}).get(audio.TAG_KEY) == SANDBOX_NOTE, tool


def test_an_hour_of_speech_takes_a_few_seconds_of_cpu() -> None:
    """~50,000 characters in 100 parts (one hour): the sandbox must not be the slow part of a production."""
    part = (PASSAGE + " ") * 2
    start = time.process_time()
    seconds = 0.0
    for n in range(100):
        data, _ = audio.speak([(f"Part {n}. " + part[:480], "narrator")])
        with wave.open(io.BytesIO(data)) as reader:
            seconds += reader.getnframes() / reader.getframerate()
    cpu = time.process_time() - start
    assert seconds == pytest.approx(100 * 490 / 14, rel=0.05)
    assert cpu < 5.0, f"{cpu:.2f} s of CPU for {seconds / 3600:.2f} h of speech"
