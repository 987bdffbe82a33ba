"""The Eigen AI tools through a real MCP client (both eras, and once over stdio) against the
loopback Eigen fake: exact multipart fields, saved files, voices, and exact error messages."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp_types import ResourceLink

from mcp_audio.config import Settings
from mcp_audio.doctor import run_checks
from mcp_audio.sandbox.audio import SANDBOX_NOTE
from mcp_audio.sandbox.eigen import FakeEigen, sine_wav
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.contract.family_view import choice_view
from tests.helpers import (
    EIGEN_KEY,
    assert_secret_kept,
    audio_payload,
    body_of,
    env_for,
    make_wav,
    server,
    stated_advanced,
    text_of,
)

pytestmark = pytest.mark.anyio

TTS_TOOLS = ("eigen_higgs_tts", "eigen_chatterbox_tts", "eigen_qwen3_tts")
TTS_CHOICES = {
    "eigen_higgs_tts": "eigen-higgs",
    "eigen_chatterbox_tts": "eigen-chatterbox",
    "eigen_qwen3_tts": "eigen-qwen3",
}
NOT_RESENT = (
    "It was not resent, since the request may have run (and been billed). To see whether it ran, check your "
    "Eigen AI account's usage page; if it is not there, call the tool again."
)


@pytest.fixture(params=["auto", "legacy"], ids=["2026-era", "2025-era"])
async def eigen_client(request: pytest.FixtureRequest, eigen_settings: Settings) -> AsyncIterator[Client]:
    async with Client(server(eigen_settings), mode=request.param) as connected:
        yield connected


# --- what is sent -------------------------------------------------------------------------

TTS_CALLS: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    (
        "eigen_higgs_tts",
        {
            "text": "Hello there.",
            "voice": "Linda",
            "advanced": {
                "voice_settings": {"speed": 1.25},
                "sampling": {"temperature": 0.7, "top_p": 0.9, "top_k": 40},
                "voice_name": "studio-narrator",
            },
        },
        {
            "model": "higgs2p5",
            "text": "Hello there.",
            "voice": "Linda",
            "voice_settings": '{"speed":1.25}',
            "sampling": '{"temperature":0.7,"top_p":0.9,"top_k":40}',
            "voice_name": "studio-narrator",
        },
    ),
    (
        "eigen_chatterbox_tts",
        {
            "text": "Bonjour à tous.",
            "language_id": "fr",
            "exaggeration": 0.9,
            "advanced": {
                "temperature": 0.6,
                "diffusion_steps": 8,
                "max_tokens": 1200,
                "top_p": 0.95,
                "min_p": 0.1,
                "repetition_penalty": 1.3,
                "seed": 42,
                "preset_url": "https://example.com/preset.wav",
            },
        },
        {
            "model": "chatterbox",
            "text": "Bonjour à tous.",
            "language_id": "fr",
            "exaggeration": "0.9",
            "temperature": "0.6",
            "diffusion_steps": "8",
            "max_tokens": "1200",
            "top_p": "0.95",
            "min_p": "0.1",
            "repetition_penalty": "1.3",
            "seed": "42",
            "preset_url": "https://example.com/preset.wav",
        },
    ),
    (
        "eigen_qwen3_tts",
        {
            "text": "你好，世界。",
            "voice": "Vivian",
            "language": "Chinese",
            "instructions": "speak cheerfully",
            "response_format": "mp3",
            "advanced": {"voice_settings": {"speed": 0.9}},
        },
        {
            "model": "qwen3-tts",
            "text": "你好，世界。",
            "voice": "Vivian",
            "language": "Chinese",
            "instructions": "speak cheerfully",
            "response_format": "mp3",
            "voice_settings": '{"speed":0.9}',
        },
    ),
]


@pytest.mark.parametrize("via", ["member", "speak"])
@pytest.mark.parametrize(("tool", "arguments", "expected"), TTS_CALLS, ids=[call[0] for call in TTS_CALLS])
async def test_tts_request_carries_exactly_the_given_fields(
    eigen_client: Client,
    fake_eigen: FakeEigen,
    tool: str,
    arguments: dict[str, Any],
    expected: dict[str, str],
    via: str,
) -> None:
    # By its own name, or as the listed speak tool with its model choice: the same request.
    if via == "speak":
        tool, arguments = "speak", arguments | {"model": TTS_CHOICES[tool]}
    result = await eigen_client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    [request] = fake_eigen.requests
    assert (request.method, request.path, request.kind) == ("POST", "/api/v1/generate", "tts")
    assert request.headers["authorization"] == f"Bearer {EIGEN_KEY}"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    names = [part.name for part in request.parts]
    assert names[0] == "model" and sorted(names) == sorted(expected)  # each once, nothing else (no `stream`)
    assert request.form == expected
    assert request.files == {}


async def test_file_parts_are_named_as_the_api_names_them(
    eigen_client: Client, fake_eigen: FakeEigen, rec_dir: Path
) -> None:
    clip, sample = make_wav(5.0), make_wav(3.0, rate=22050)
    (rec_dir / "prompt.wav").write_bytes(clip)
    (rec_dir / "sample.wav").write_bytes(sample)
    chatter = await eigen_client.call_tool("eigen_chatterbox_tts", {"text": "Hi.", "audio_prompt_url": "prompt.wav"})
    higgs = await eigen_client.call_tool(
        "eigen_higgs_tts", {"text": "Hi.", "voice_reference_url": str(rec_dir / "sample.wav")}
    )
    assert not chatter.is_error, text_of(chatter)
    assert not higgs.is_error, text_of(higgs)
    first, second = fake_eigen.requests
    assert first.form == {"model": "chatterbox", "text": "Hi."}
    [prompt] = first.files.values()
    assert (prompt.name, prompt.filename, prompt.content_type, prompt.data) == (
        "audio_prompt_file",
        "prompt.wav",
        "audio/wav",
        clip,
    )
    assert second.form == {"model": "higgs2p5", "text": "Hi."}
    assert second.files["voice_reference_file"].data == sample


# --- what comes back ----------------------------------------------------------------------


async def test_tts_audio_is_saved_with_path_uri_and_a_readable_resource(
    eigen_client: Client, fake_eigen: FakeEigen, eigen_settings: Settings
) -> None:
    result = await eigen_client.call_tool("eigen_higgs_tts", {"text": "Hello there.", "voice": "Jack"})
    body = body_of(result)
    assert body["status"] == "completed" and body["endpoint"] == "higgs2p5"
    [saved] = body["files"]
    path = Path(saved["path"])
    assert path.is_absolute() and path.parent == eigen_settings.output_dir.resolve()
    assert path.name.endswith(f"-eigen_higgs_tts-{body['job_id'][:8]}.wav")
    served = fake_eigen.last_audio
    assert served is not None
    assert audio_payload(path.read_bytes()) == audio_payload(served)  # the model's audio, with credentials
    assert saved["credentials"]["models"] == ["higgs2p5"] and saved["credentials"]["embedded"]
    assert saved["url"] == saved["file_uri"] == path.as_uri()
    assert saved["resource"] == f"files://{body['job_id']}/{path.name}"
    assert saved["content_type"] == "audio/wav" and saved["file_size"] == path.stat().st_size
    # Sandbox speech: about 14 characters a second, at Eigen's 24 kHz.
    assert saved["duration_s"] == pytest.approx(len("Hello there.") / 14, rel=0.2) and saved["sample_rate"] == 24000
    assert body["output"] == {}
    assert str(path) in text_of(result)
    links = [str(item.uri) for item in result.content if isinstance(item, ResourceLink)]
    assert links == [saved["resource"]]
    blob = await eigen_client.read_resource(saved["resource"])
    assert base64.b64decode(blob.contents[0].blob) == path.read_bytes()  # type: ignore[union-attr]


async def test_the_returned_content_type_names_the_file(eigen_client: Client, fake_eigen: FakeEigen) -> None:
    result = await eigen_client.call_tool("eigen_qwen3_tts", {"text": "Hi.", "response_format": "mp3"})
    [saved] = body_of(result)["files"]
    assert saved["content_type"] == "audio/mpeg" and saved["file_name"].endswith(".mp3")


async def test_a_cut_response_leaves_no_file_and_is_not_resent(eigen_settings: Settings, fake_eigen: FakeEigen) -> None:
    fake_eigen.break_body_after(len(sine_wav()) // 3)
    async with Client(server(eigen_settings)) as client:
        result = await client.call_tool("eigen_higgs_tts", {"text": "Hello there."})
    assert result.is_error
    assert text_of(result) == (
        f"eigen_higgs_tts has an unknown outcome (job {body_of(result)['job_id']}): eigen's response broke off "
        "(RemoteProtocolError) before it was complete, so nothing was saved; it was not resent, since the request "
        "may have run (and been billed). To see whether it ran, check your Eigen AI account's usage page; if it is "
        "not there, call the tool again."
    )
    assert body_of(result)["status"] == "unknown"
    assert len(fake_eigen.requests) == 1
    output_dir = eigen_settings.output_dir
    assert not output_dir.exists() or list(output_dir.iterdir()) == []  # not even a .part file


@pytest.mark.parametrize(
    ("tool", "choice"), [("eigen_transcribe", {}), ("transcribe", {"model": "eigen"})], ids=["member", "transcribe"]
)
async def test_local_recording_is_transcribed_from_its_exact_bytes(
    eigen_client: Client, fake_eigen: FakeEigen, rec_dir: Path, tool: str, choice: dict[str, str]
) -> None:
    recording = make_wav(2.0)
    (rec_dir / "talk.wav").write_bytes(recording)
    result = await eigen_client.call_tool(tool, {"audio_url": "talk.wav", "language": "de"} | choice)
    body = body_of(result)
    assert "Transcript:\nHello from the fake Eigen transcriber." in text_of(result)
    assert body["files"] == []
    assert body["output"] == {
        "text": "Hello from the fake Eigen transcriber.",
        "language": "de",
        "segments": [{"start": 0.0, "end": 1.5, "text": "Hello from the fake Eigen transcriber."}],
        "sandbox": SANDBOX_NOTE,  # not speech the sandbox made: the placeholder transcript
    }
    [request] = fake_eigen.requests
    assert request.kind == "asr" and request.form == {"model": "whisper_v3_turbo", "language": "de"}
    part = request.files["file"]
    assert (part.filename, part.content_type, part.data) == ("talk.wav", "audio/wav", recording)


async def test_plain_text_transcripts(eigen_client: Client, fake_eigen: FakeEigen, rec_dir: Path) -> None:
    (rec_dir / "talk.wav").write_bytes(make_wav(1.0))
    result = await eigen_client.call_tool("eigen_transcribe", {"audio_url": "talk.wav", "response_format": "text"})
    assert body_of(result)["output"] == {"text": "Hello from the fake Eigen transcriber."}
    assert fake_eigen.requests[0].form == {"model": "whisper_v3_turbo", "response_format": "text"}


async def test_url_and_data_uri_inputs_are_sent_as_bytes_without_the_key(
    eigen_client: Client, fake_eigen: FakeEigen
) -> None:
    recording = make_wav(1.0)
    url = fake_eigen.put_file("clips/talk.wav", recording, "audio/wav")
    data_uri = "data:audio/wav;base64," + base64.b64encode(recording).decode()
    by_url = await eigen_client.call_tool("eigen_transcribe", {"audio_url": url})
    by_data = await eigen_client.call_tool("eigen_transcribe", {"audio_url": data_uri})
    assert not by_url.is_error, text_of(by_url)
    assert not by_data.is_error, text_of(by_data)
    fetch, first, second = fake_eigen.requests
    assert fetch.kind == "file" and "authorization" not in fetch.headers  # the key stays with Eigen
    assert first.files["file"].data == second.files["file"].data == recording
    assert (first.files["file"].filename, second.files["file"].filename) == ("talk.wav", "file.wav")
    assert second.files["file"].content_type == "audio/wav"


async def test_slow_generation_returns_a_handle_then_the_file(eigen_settings: Settings, fake_eigen: FakeEigen) -> None:
    fake_eigen.delay_s = 1.0
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(server(eigen_settings.model_copy(update={"wait_s": 0.3}))) as client:
        first = await client.call_tool("eigen_higgs_tts", {"text": "Take your time."}, progress_callback=on_progress)
        handle = body_of(first)
        assert handle["status"] == "running"
        done = await client.call_tool("get_job", {"job_id": handle["job_id"], "wait_s": 10})
    assert body_of(done)["status"] == "completed"
    served = fake_eigen.last_audio
    assert served is not None
    assert audio_payload(Path(body_of(done)["files"][0]["path"]).read_bytes()) == audio_payload(served)
    assert "Running" in messages
    assert len(fake_eigen.requests) == 1


# --- voices -------------------------------------------------------------------------------


async def test_uploaded_voice_is_saved_and_used_by_name_in_every_tts_tool(
    eigen_client: Client, fake_eigen: FakeEigen, rec_dir: Path
) -> None:
    sample = make_wav(6.0)
    (rec_dir / "me.wav").write_bytes(sample)
    upload = await eigen_client.call_tool(
        "eigen_upload_voice", {"voice_reference_url": "me.wav", "model": "chatterbox", "name": "me"}
    )
    body = body_of(upload)
    [voice_id] = fake_eigen.voices
    assert body["output"] == {"voice_id": voice_id, "sandbox": SANDBOX_NOTE} and body["saved_voice"] == "me"
    assert "Saved as voice 'me': use it with eigen_higgs_tts as `voice`: \"me\"" in text_of(upload)
    [request] = fake_eigen.requests
    assert (request.path, request.form) == ("/api/v1/generate/upload", {"model": "chatterbox"})
    part = request.files["voice_reference_file"]
    assert (part.filename, part.content_type, part.data) == ("me.wav", "audio/wav", sample)
    cloned = json.loads((await eigen_client.read_resource("voices://cloned")).contents[0].text)  # type: ignore[union-attr]
    assert cloned == [{"name": "me", "family": "eigen", "provider": "eigen"}]

    for tool in TTS_TOOLS:
        speak = await eigen_client.call_tool(tool, {"text": "In my voice.", "voice": "me"})
        assert not speak.is_error, text_of(speak)
        sent = fake_eigen.requests[-1].form
        assert sent == {"model": sent["model"], "text": "In my voice.", "voice_id": voice_id}, tool


async def test_chatterbox_prompt_over_30_s_is_refused_before_any_request(
    eigen_client: Client, fake_eigen: FakeEigen, rec_dir: Path
) -> None:
    (rec_dir / "long.wav").write_bytes(make_wav(31.0))
    result = await eigen_client.call_tool("eigen_chatterbox_tts", {"text": "Hi.", "audio_prompt_url": "long.wav"})
    assert result.is_error
    assert "`audio_prompt_url`: 'long.wav' is 31.0 s long; this input needs at most 30 s." in text_of(result)
    assert fake_eigen.requests == []


async def test_a_voice_saved_by_another_upstream_is_refused_naming_the_usable_ones(
    eigen_settings: Settings, settings: Settings, fake_eigen: FakeEigen, fake_fal: FakeFal, rec_dir: Path
) -> None:
    fal_fields = ("fal_key", "fal_queue_url", "fal_run_url", "fal_rest_url", "fal_cdn_url")
    both = eigen_settings.model_copy(update={name: getattr(settings, name) for name in fal_fields})
    async with Client(server(both)) as client:
        clone = await client.call_tool(
            "qwen3_tts_clone_voice", {"audio_url": "https://example.com/ann.mp3", "name": "ann"}
        )
        assert not clone.is_error, text_of(clone)
        refused = await client.call_tool("eigen_chatterbox_tts", {"text": "Hi.", "voice": "ann"})
        (rec_dir / "me.wav").write_bytes(make_wav(3.0))
        await client.call_tool(
            "eigen_upload_voice", {"voice_reference_url": "me.wav", "model": "chatterbox", "name": "mine"}
        )
        again = await client.call_tool("eigen_chatterbox_tts", {"text": "Hi.", "voice": "ann"})
    assert refused.is_error and again.is_error
    assert (
        "`voice`: unknown voice 'ann'; 'ann' is a saved qwen3-tts voice, which this tool cannot use. "
        "Allowed: a voice saved by a eigen clone tool (none saved yet)." in text_of(refused)
    )
    assert "Allowed: a saved eigen voice (mine)." in text_of(again)
    assert [r.kind for r in fake_eigen.requests] == ["upload"]


async def test_presets_pass_through_and_eigen_judges_them(eigen_client: Client, fake_eigen: FakeEigen) -> None:
    # Higgs' preset list is open ("e.g. Linda, Jack"), so an unknown name is Eigen's to refuse.
    result = await eigen_client.call_tool("eigen_higgs_tts", {"text": "Hi.", "voice": "Zorg"})
    assert result.is_error
    assert "eigen rejected the input:\n- `voice`: Unknown voice 'Zorg'" in text_of(result)
    assert fake_eigen.requests[0].form["voice"] == "Zorg"


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "times", "body", "expected", "attempts"),
    [
        (
            422,
            1,
            {"detail": [{"loc": ["body", "text"], "msg": "Text is too long", "type": "value_error"}]},
            "eigen rejected the input:\n- `text`: Text is too long",
            1,
        ),
        (
            429,
            10,
            {"detail": "Rate limit exceeded"},
            "eigen is unavailable (HTTP 429): Rate limit exceeded. Retries were exhausted; try again later.",
            5,
        ),
        (500, 1, {"detail": "CUDA out of memory"}, f"eigen failed (HTTP 500): CUDA out of memory. {NOT_RESENT}", 1),
        (
            503,
            10,
            {"detail": "Overloaded"},
            "eigen is unavailable (HTTP 503): Overloaded. Retries were exhausted; try again later.",
            5,
        ),
    ],
    ids=["422", "429", "500", "503"],
)
async def test_upstream_errors_reach_the_agent_exactly(
    eigen_client: Client,
    fake_eigen: FakeEigen,
    eigen_settings: Settings,
    status: int,
    times: int,
    body: dict[str, Any],
    expected: str,
    attempts: int,
) -> None:
    fake_eigen.inject("tts", status, times=times, headers={"Retry-After": "0"}, body=body)
    result = await eigen_client.call_tool("eigen_higgs_tts", {"text": "Hello."})
    assert result.is_error
    outcome = "has an unknown outcome" if status == 500 else "failed"  # a 500 may come after the work was done
    assert text_of(result) == f"eigen_higgs_tts {outcome} (job {body_of(result)['job_id']}): {expected}"
    assert body_of(result)["status"] == ("unknown" if status == 500 else "failed")
    assert len(fake_eigen.requests) == attempts
    assert_secret_kept(EIGEN_KEY, eigen_settings, text_of(result), json.dumps(result.structured_content))


async def test_an_unknown_voice_id_is_eigens_404(eigen_client: Client, fake_eigen: FakeEigen) -> None:
    result = await eigen_client.call_tool("eigen_chatterbox_tts", {"text": "Hi.", "advanced": {"voice_id": "v-gone"}})
    assert result.is_error
    assert "eigen answered HTTP 404: Voice not found: v-gone" in text_of(result)


# --- the catalog, the doctor, stdio -------------------------------------------------------


async def test_tools_list_shows_the_eigen_tools_without_sse(eigen_client: Client) -> None:
    tools = {tool.name: tool for tool in (await eigen_client.list_tools()).tools}
    # The TTS tools and the transcriber are listed as choices of the speak and transcribe tools.
    assert {name for name in tools if name.startswith("eigen_")} == {"eigen_upload_voice"}
    speak, transcribe = tools["speak"].input_schema, tools["transcribe"].input_schema
    assert set(TTS_CHOICES.values()) <= set(speak["properties"]["model"]["enum"])
    assert "eigen" in transcribe["properties"]["model"]["enum"]
    upload = tools["eigen_upload_voice"].input_schema
    assert "stream" not in json.dumps(upload)
    for schema, choice in [*((speak, c) for c in TTS_CHOICES.values()), (transcribe, "eigen")]:
        view = choice_view(schema, choice)
        assert view.taken, choice
        assert "stream" not in json.dumps([view.taken, view.advanced, view.words]), choice
    higgs = choice_view(speak, "eigen-higgs")
    assert higgs.required == ["text"]
    # advanced members in words, to save context
    assert stated_advanced({"properties": {"advanced": {"description": higgs.advanced}}})["voice_settings"] == (
        "{speed number}"
    )
    assert upload["required"] == ["voice_reference_url", "model"]
    presets = json.loads((await eigen_client.read_resource("voices://eigen-higgs")).contents[0].text)  # type: ignore[union-attr]
    assert [preset["name"] for preset in presets["presets"]] == ["Linda", "Jack"]


async def test_doctor_reports_eigen_reachable(eigen_settings: Settings, fake_eigen: FakeEigen) -> None:
    checks = {check.name: check for check in await run_checks(eigen_settings)}
    assert checks["eigen key"].status == "pass"
    assert checks["eigen upstream"].status == "pass"
    assert checks["eigen upstream"].detail == f"{fake_eigen.base_url}: reachable (HTTP 200)"
    assert fake_eigen.requests_of("root") and "authorization" not in fake_eigen.requests_of("root")[0].headers


async def test_stdio_end_to_end(eigen_settings: Settings, fake_eigen: FakeEigen) -> None:
    assert fake_eigen.base_url is not None
    env = env_for(eigen_settings) | {
        "EIGEN_API_KEY": EIGEN_KEY,
        "MCP_AUDIO_EIGEN_URL": fake_eigen.base_url,
        "MCP_AUDIO_ALLOWED_DIRS": str(eigen_settings.allowed_dirs),
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_audio"], env=env)
    async with Client(params, mode="legacy") as client:
        result = await client.call_tool("eigen_qwen3_tts", {"text": "Hello world.", "voice": "Vivian"})
    [saved] = body_of(result)["files"]
    served = fake_eigen.last_audio
    assert served is not None and audio_payload(Path(saved["path"]).read_bytes()) == audio_payload(served)
    assert saved["credentials"]["models"] == ["qwen3-tts"]  # signed with no configuration (development certificate)
    assert fake_eigen.requests[0].form == {"model": "qwen3-tts", "text": "Hello world.", "voice": "Vivian"}
    assert EIGEN_KEY not in text_of(result)
