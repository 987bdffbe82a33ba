"""The Voice API tools through real MCP clients (in-process in both eras, and over stdio)
against the loopback fake: requests as the upstream receives them, results and errors as an
agent sees them, and a task that survives kill -9."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters

from mcp_audio.config import Settings
from mcp_audio.providers.voice_api import VoiceApiProvider
from mcp_audio.sandbox._base import silent_mp3
from mcp_audio.sandbox.audio import SANDBOX_NOTE
from mcp_audio.sandbox.voice_api import FakeVoiceApi, Part
from tests.helpers import (
    VOICE_HOST,
    VOICE_KEY,
    assert_secret_kept,
    audio_payload,
    env_for,
    make_wav,
    server,
    text_of,
)

pytestmark = pytest.mark.anyio

TRANSCRIPT = "Hello there. Hi, how are you?"


@pytest.fixture(params=["auto", "legacy"], ids=["2026-era", "2025-era"])
async def client(request: pytest.FixtureRequest, voice_settings: Settings) -> AsyncIterator[Client]:
    async with Client(server(voice_settings), mode=request.param) as connected:
        yield connected


def voice_env(settings: Settings) -> dict[str, str]:
    return env_for(settings)


def job_id_of(result: Any) -> str:
    assert result.structured_content is not None, text_of(result)
    return str(result.structured_content["job_id"])


# --- text to speech -----------------------------------------------------------------------


async def test_multi_speaker_tts_end_to_end(client: Client, fake_voice: FakeVoiceApi, voice_settings: Settings) -> None:
    text = "<|speaker:0|>[excited] We shipped it on Thursday! <|speaker:1|>[whisper] Nobody ships on a Thursday."
    result = await client.call_tool("voice_api_tts", {"text": text, "model_ids": ["m-warm-narrator", "m-bright-host"]})
    assert not result.is_error, text_of(result)
    [submit] = fake_voice.requests_of("tts_submit")
    assert submit.json == {"text": text, "model_ids": ["m-warm-narrator", "m-bright-host"]}
    assert submit.headers["x-rapidapi-key"] == VOICE_KEY and submit.headers["x-rapidapi-host"] == VOICE_HOST
    assert submit.headers["content-type"] == "application/json"
    body = result.structured_content
    assert body is not None and body["status"] == "completed"
    [audio] = body["files"]
    saved = Path(audio["path"])
    assert saved.parent == voice_settings.output_dir and saved.suffix == ".mp3"
    served = fake_voice.tasks[submit.task_id or ""].audio
    assert served is not None
    assert audio_payload(saved.read_bytes()) == audio_payload(served)  # the model's audio, after its credentials
    assert audio["credentials"]["embedded"] and audio["credentials"]["models"] == ["tts"]
    assert audio["sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert audio["content_type"] == "audio/mpeg" and audio["file_size"] == saved.stat().st_size
    # Sandbox speech lasts about 14 characters a second of what is spoken (the cues are not).
    spoken = "We shipped it on Thursday! Nobody ships on a Thursday."
    assert audio["duration_s"] == pytest.approx(len(spoken) / 14, rel=0.15)
    assert str(saved) in text_of(result)
    assert len(fake_voice.requests_of("tts_audio")) == 1
    assert_secret_kept(VOICE_KEY, voice_settings, text_of(result), json.dumps(body))


async def test_unknown_interim_statuses_count_as_running(client: Client, fake_voice: FakeVoiceApi) -> None:
    fake_voice.script("tts", phases=[("queued", 0, 0.3), ("processing", 35, 0.6)])
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    result = await client.call_tool(
        "voice_api_tts", {"text": "Hello.", "model_ids": ["m-calm-guide"]}, progress_callback=on_progress
    )
    assert not result.is_error, text_of(result)
    assert "Running: queued 0%" in seen and "Running: processing 35%" in seen
    assert result.structured_content is not None and result.structured_content["status"] == "completed"


async def test_failed_task_reports_the_upstream_message(
    client: Client, fake_voice: FakeVoiceApi, rec_dir: Path
) -> None:
    fake_voice.script("stt", phases=[("processing", 50, 0.1)], error="Audio stream could not be decoded")
    (rec_dir / "bad.wav").write_bytes(make_wav(1.0))
    result = await client.call_tool("voice_api_transcribe", {"audio_url": str(rec_dir / "bad.wav")})
    assert result.is_error
    [task_id] = fake_voice.tasks
    assert text_of(result) == (
        f"voice_api_transcribe failed (job {job_id_of(result)}): "
        f"Voice API stt task {task_id} failed: Audio stream could not be decoded"
    )


# --- speech to text -----------------------------------------------------------------------


async def test_transcribe_local_file_in_both_result_modes(
    client: Client, fake_voice: FakeVoiceApi, rec_dir: Path
) -> None:
    wav = make_wav(2.0)
    (rec_dir / "meeting.wav").write_bytes(wav)

    detailed = await client.call_tool(
        "voice_api_transcribe", {"audio_url": str(rec_dir / "meeting.wav"), "language": "en"}
    )
    assert not detailed.is_error, text_of(detailed)
    [submit] = fake_voice.requests_of("stt_submit")
    assert submit.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert submit.form == {"language": "en"}  # plain_text is not a submit field
    assert [p for p in submit.parts if p.filename] == [Part("audio", "meeting.wav", "audio/wav", wav)]
    assert fake_voice.requests_of("stt_result")[0].query == {"plain_text": "false"}
    output = detailed.structured_content["output"]  # type: ignore[index]
    assert output["text"] == TRANSCRIPT
    assert [(s["start"], s["end"], s["speaker"]) for s in output["segments"]] == [
        (0.0, 1.2, "SPEAKER_00"),
        (1.3, 2.6, "SPEAKER_01"),
    ]
    assert f"Transcript:\n{TRANSCRIPT}" in text_of(detailed)

    plain = await client.call_tool(
        "voice_api_transcribe", {"audio_url": str(rec_dir / "meeting.wav"), "plain_text": True}
    )
    assert not plain.is_error, text_of(plain)
    second = fake_voice.requests_of("stt_submit")[1]
    assert second.form == {} and [p.data for p in second.parts] == [wav]
    assert fake_voice.requests_of("stt_result")[1].query == {"plain_text": "true"}
    assert plain.structured_content["output"] == {"text": TRANSCRIPT}  # type: ignore[index]


async def test_url_and_data_uri_inputs_are_sent_as_bytes(voice_settings: Settings, fake_voice: FakeVoiceApi) -> None:
    mp3 = silent_mp3(10)
    url = fake_voice.put_file("clips/interview.mp3", mp3, "audio/mpeg")
    wav = make_wav(1.0)
    data_uri = "data:audio/wav;base64," + base64.b64encode(wav).decode()
    async with Client(server(voice_settings)) as client:
        for audio in (url, data_uri):
            result = await client.call_tool("voice_api_transcribe", {"audio_url": audio})
            assert not result.is_error, text_of(result)
    first, second = fake_voice.requests_of("stt_submit")
    assert first.parts == [Part("audio", "interview.mp3", "audio/mpeg", mp3)]
    assert second.parts == [Part("audio", "audio.wav", "audio/wav", wav)]
    [download] = fake_voice.requests_of("file")
    assert "x-rapidapi-key" not in download.headers  # the key goes to the Voice API only


# --- cloning ------------------------------------------------------------------------------


async def test_clone_from_local_clip_then_speak_with_the_saved_name(
    client: Client, fake_voice: FakeVoiceApi, rec_dir: Path
) -> None:
    clip = make_wav(12.0)
    (rec_dir / "me.wav").write_bytes(clip)
    cloned = await client.call_tool(
        "voice_api_clone_voice", {"audio_url": str(rec_dir / "me.wav"), "title": "My narrator", "name": "narrator"}
    )
    assert not cloned.is_error, text_of(cloned)
    [submit] = fake_voice.requests_of("clone_submit")
    assert submit.form == {"title": "My narrator"}  # `name` stays with the server
    assert [p for p in submit.parts if p.filename] == [Part("audio", "me.wav", "audio/wav", clip)]
    [task] = fake_voice.tasks.values()
    body = cloned.structured_content
    assert body is not None and body["saved_voice"] == "narrator"
    assert body["output"] == {"model_id": task.model_id, "title": "My narrator", "sandbox": SANDBOX_NOTE}
    assert "Saved as voice 'narrator'" in text_of(cloned)

    spoken = await client.call_tool(
        "voice_api_tts", {"text": "<|speaker:0|>Hi. <|speaker:1|>Hello.", "model_ids": ["narrator", "m-calm-guide"]}
    )
    assert not spoken.is_error, text_of(spoken)
    [tts] = fake_voice.requests_of("tts_submit")
    assert tts.json == {"text": "<|speaker:0|>Hi. <|speaker:1|>Hello.", "model_ids": [task.model_id, "m-calm-guide"]}
    voices = json.loads((await client.read_resource("voices://cloned")).contents[0].text)  # type: ignore[union-attr]
    assert {"name": "narrator", "family": "voice-api", "provider": "voice_api"} in voices


async def test_short_reference_clip_is_refused_before_any_request(
    client: Client, fake_voice: FakeVoiceApi, rec_dir: Path
) -> None:
    (rec_dir / "short.wav").write_bytes(make_wav(5.0))
    result = await client.call_tool("voice_api_clone_voice", {"audio_url": str(rec_dir / "short.wav"), "name": "x"})
    assert result.is_error
    assert text_of(result) == (
        f"Error executing tool voice_api_clone_voice: `audio_url`: '{rec_dir / 'short.wav'}' is 5.0 s long; "
        "this input needs 10-90 s."
    )
    assert fake_voice.requests == []


# --- errors an agent sees -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("inject", "arguments", "expected"),
    [
        (
            ("tts_status", 404, None, {"detail": "Task not found"}),
            {"text": "Hi."},
            "Voice API answered HTTP 404: Task not found",
        ),
        (
            None,  # the fake's own validation
            {"text": "<|speaker:1|>Hi.", "model_ids": ["m-calm-guide"]},
            "Voice API rejected the input:\n- `text`: speaker 1 has no model in model_ids (1 given)",
        ),
        (
            ("tts_submit", 500, None, {"message": "Synthesis engine crashed"}),
            {"text": "Hi."},
            # A submit answered 500 may have created a task: it is not resent, and the agent is told so.
            "Voice API failed (HTTP 500): Synthesis engine crashed. It was not resent, since the request may have "
            "run (and been billed). To see whether it ran, check the usage page of your Voice API subscription; if "
            "it is not there, call the tool again.",
        ),
        (
            ("tts_submit", 429, {"Retry-After": "0.05"}, {"message": "Too many requests"}, 5),
            {"text": "Hi."},
            "Voice API is unavailable (HTTP 429): Too many requests. Retries were exhausted; try again later.",
        ),
    ],
    ids=["404-task", "422-input", "500-submit", "429-exhausted"],
)
async def test_upstream_error_reaches_the_agent_verbatim_without_the_key(
    client: Client, fake_voice: FakeVoiceApi, voice_settings: Settings, inject: Any, arguments: Any, expected: str
) -> None:
    if inject is not None:
        kind, status, headers, body, *times = inject
        fake_voice.inject(kind, status, headers=headers, body=body, times=times[0] if times else 1)
    result = await client.call_tool("voice_api_tts", arguments)
    assert result.is_error
    unknown = inject is not None and inject[1] == 500  # a 500 to a submit may come after the task was created
    outcome = "has an unknown outcome" if unknown else "failed"
    assert text_of(result) == f"voice_api_tts {outcome} (job {job_id_of(result)}): {expected}"
    assert (result.structured_content or {})["status"] == ("unknown" if unknown else "failed")
    assert len(fake_voice.tasks) <= 1  # never a second task
    assert_secret_kept(VOICE_KEY, voice_settings, text_of(result), json.dumps(result.structured_content))


async def test_a_503_while_polling_is_retried_with_one_task(client: Client, fake_voice: FakeVoiceApi) -> None:
    fake_voice.inject("tts_status", 503, times=2, body={"message": "Service Unavailable"})
    result = await client.call_tool("voice_api_tts", {"text": "Hi."})
    assert not result.is_error, text_of(result)
    assert len(fake_voice.requests_of("tts_submit")) == 1
    assert len(fake_voice.tasks) == 1


async def test_cancel_is_refused_and_the_task_finishes(voice_settings: Settings, fake_voice: FakeVoiceApi) -> None:
    fake_voice.script("tts", phases=[("processing", 20, 4.0)])  # long enough to be running on a loaded machine
    async with Client(server(voice_settings.model_copy(update={"wait_s": 1.0}))) as client:
        started = await client.call_tool("voice_api_tts", {"text": "Hi."})
        job_id = job_id_of(started)
        assert started.structured_content["status"] == "running"  # type: ignore[index]
        refused = await client.call_tool("cancel_job", {"job_id": job_id})
        done = await client.call_tool("get_job", {"job_id": job_id, "wait_s": 10})
    [task_id] = fake_voice.tasks
    assert refused.is_error
    assert text_of(refused) == (
        f"Error executing tool cancel_job: The Voice API cannot cancel tasks; task {task_id} keeps running upstream and it will finish on its own "
        "(get_job returns its result)."
    )
    assert done.structured_content is not None and done.structured_content["status"] == "completed"


# --- the provider's own API: models and health ---------------------------------------------


async def test_models_are_filtered_upstream_and_cached(fake_voice: FakeVoiceApi) -> None:
    assert fake_voice.base_url is not None
    provider = VoiceApiProvider(api_key=VOICE_KEY, base_url=fake_voice.base_url, host=VOICE_HOST)
    try:
        assert await provider.health() == "healthy (HTTP 200)"
        found = await provider.list_models(title="narr", language="en")
        assert [m["id"] for m in found] == ["m-warm-narrator"]
        assert await provider.list_models(title="narr", language="en") == found  # cached
        ranked = await provider.list_models(tag="female", sort="score")
        assert [m["id"] for m in ranked] == ["m-calm-guide", "m-bright-host"]
        await provider.list_models(title="narr", language="en", refresh=True)
    finally:
        await provider.aclose()
    assert [r.query for r in fake_voice.requests_of("models")] == [
        {"title": "narr", "language": "en"},
        {"tag": "female", "sort": "score"},
        {"title": "narr", "language": "en", "refresh": "true"},
    ]
    [health] = fake_voice.requests_of("health")
    assert "x-rapidapi-key" not in health.headers


async def test_fake_stt_progress_goes_50_80_100(fake_voice: FakeVoiceApi) -> None:
    # The default STT phases' values, held long enough to be seen on a loaded machine.
    fake_voice.script("stt", phases=[("running", 50, 0.4), ("running", 80, 0.4)])
    headers = {"X-RapidAPI-Key": VOICE_KEY, "X-RapidAPI-Host": VOICE_HOST}
    async with httpx.AsyncClient(base_url=str(fake_voice.base_url), headers=headers) as http:
        bad = await http.post("/v1/stt", data={"language": "en"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "audio"]
        task = (await http.post("/v1/stt", files={"audio": ("a.wav", make_wav(1.0), "audio/wav")})).json()
        seen = []
        with anyio.fail_after(5):
            while not seen or seen[-1] != ("succeeded", 100):
                status = (await http.get(f"/v1/stt/{task['task_id']}")).json()
                assert status["result"] is None
                if not seen or seen[-1] != (status["status"], status["progress"]):
                    seen.append((status["status"], status["progress"]))
                await anyio.sleep(0.02)
        assert [p for _, p in seen] == [50, 80, 100]
        assert (await http.get("/v1/stt/nope")).status_code == 404
        assert (await http.get("/v1/stt/nope", headers={"X-RapidAPI-Key": "wrong"})).status_code == 401


# --- real processes -----------------------------------------------------------------------


async def test_stdio_end_to_end(voice_settings: Settings, fake_voice: FakeVoiceApi) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_audio"], env=voice_env(voice_settings))
    async with Client(params, mode="legacy") as client:
        result = await client.call_tool("voice_api_tts", {"text": "Hello over stdio.", "model_ids": ["m-bright-host"]})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    [task] = fake_voice.tasks.values()
    assert task.audio is not None
    assert audio_payload(Path(result.structured_content["files"][0]["path"]).read_bytes()) == audio_payload(task.audio)
    assert [r.json for r in fake_voice.requests_of("tts_submit")] == [
        {"text": "Hello over stdio.", "model_ids": ["m-bright-host"]}
    ]


async def test_the_voice_api_listing_is_the_live_model_list(client: Client, fake_voice: FakeVoiceApi) -> None:
    listed = json.loads((await client.read_resource("voices://voice-api")).contents[0].text)  # type: ignore[union-attr]
    assert [model["id"] for model in listed] == ["m-warm-narrator", "m-bright-host", "m-calm-guide"]
    resources = {r.name: str(r.uri) for r in (await client.list_resources()).resources}
    assert resources["voices-voice-api"] == "voices://voice-api"  # listed: the live list above, no static copy
    names = [r.name for r in (await client.list_resources()).resources]
    assert len(names) == len(set(names))


async def test_the_clone_hint_names_the_tool_and_argument_and_a_taken_name_is_refused(
    client: Client, fake_voice: FakeVoiceApi, rec_dir: Path
) -> None:
    (rec_dir / "me.wav").write_bytes(make_wav(12.0))
    arguments = {"audio_url": str(rec_dir / "me.wav"), "name": "narrator"}
    cloned = await client.call_tool("voice_api_clone_voice", arguments)
    assert not cloned.is_error, text_of(cloned)
    assert 'use it with voice_api_tts as `model_ids`: ["narrator"]' in text_of(cloned)

    again = await client.call_tool("voice_api_clone_voice", arguments)
    assert again.is_error
    assert "`name`: a saved voice is already named 'narrator'" in text_of(again)
    assert "`replace: true`" in text_of(again)
    assert len(fake_voice.requests_of("clone_submit")) == 1  # refused before anything was sent

    replaced = await client.call_tool("voice_api_clone_voice", arguments | {"replace": True})
    assert not replaced.is_error, text_of(replaced)
    assert len(fake_voice.requests_of("clone_submit")) == 2
    voices = json.loads((await client.read_resource("voices://cloned")).contents[0].text)  # type: ignore[union-attr]
    assert [voice["name"] for voice in voices] == ["narrator"]
