"""The `mcp-audio` command line, run as a user runs it."""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from mcp_audio.catalog import load_catalog
from mcp_audio.cli import NO_ARGUMENTS, _parser, main
from mcp_audio.config import ENV_NAMES, Settings, settings_markdown
from mcp_audio.core.upstreams import REMOTE
from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.server.resources import tools_markdown
from tests.forked import run_mcp_audio
from tests.helpers import FAL_KEY, env_for, text_of

ROOT = Path(__file__).parent.parent.parent
KEY_ENVS = {upstream.key_env for upstream in REMOTE.values()}


def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`mcp-audio ARGS` in a process of its own, forked warm (the commands' start from a fresh
    interpreter is `python -m mcp_audio` in the tests that spell it out, and test_startup's)."""
    return run_mcp_audio(list(args), env_for(settings))


def test_tools_table_needs_no_key(settings: Settings) -> None:
    env = {k: v for k, v in env_for(settings).items() if k != "FAL_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_audio", "tools"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split() == ["TOOL", "KIND", "UPSTREAM", "ENDPOINT(S)", "PRICE"]
    assert any(row.startswith("qwen3_tts ") and "$0.09 per 1000 characters" in row for row in rows)
    as_json = [json.loads(line) for line in run(settings, "tools", "--json").stdout.splitlines()]
    assert {entry["tool"] for entry in as_json} == set(load_catalog().capabilities)


def test_call_prints_result_json_on_stdout_and_status_on_stderr(settings: Settings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.3, run_s=0.5, logs=["rendering"])
    proc = run(settings, "call", "lyria2_music", "--json", '{"prompt": "calm piano"}')
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "completed"
    assert result["files"][0]["url"].startswith(fake_fal.base_url)
    assert "lyria2_music:" in proc.stderr
    assert FAL_KEY not in proc.stdout + proc.stderr

    jobs = run(settings, "jobs", "--status", "completed", "--json")
    assert json.loads(jobs.stdout.splitlines()[0])["job_id"] == result["job_id"]


def test_call_with_bad_arguments_fails_with_the_message(settings: Settings, fake_fal: FakeFal) -> None:
    proc = run(settings, "call", "lyria2_music", "--json", '{"prompt": "x", "tempo": 120}')
    assert proc.returncode == 1
    assert "`tempo`: unknown argument" in proc.stderr
    bad_json = run(settings, "call", "lyria2_music", "--json", "{nope")
    assert bad_json.returncode == 1 and "--json is not valid JSON" in bad_json.stderr
    assert fake_fal.requests == []


def test_readme_tools_table_matches_the_manifests() -> None:
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- tools:start -->\n(.*?)<!-- tools:end -->", readme, re.S)
    assert table is not None
    assert table.group(1) == tools_markdown(load_catalog()), "run: python scripts/sync_readme.py"


def test_readme_settings_table_matches_the_settings_and_registry() -> None:
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", readme, re.S)
    assert table is not None
    assert table.group(1) == settings_markdown(), "run: python scripts/sync_readme.py"
    for field, env_name in ENV_NAMES.items():
        assert f"`{env_name}`" in table.group(1), field
    assert set(ENV_NAMES) == set(Settings.model_fields)
    for upstream in REMOTE.values():  # every upstream's key and URLs come from the registry
        assert ENV_NAMES[upstream.key_field] == upstream.key_env
        assert all(ENV_NAMES[url.field] == url.env for url in upstream.urls)


def test_doctor_reports_each_upstream_and_folder_without_showing_keys(settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = env_for(settings) | {
        "VOICE_API_KEY": "voice-secret-123456",
        "MCP_AUDIO_VOICE_API_URL": "http://127.0.0.1:9",  # nothing listens on the discard port
        "MCP_AUDIO_OUTPUT_DIR": str(blocker / "out"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_audio", "doctor"], env=env, capture_output=True, text=True, timeout=90
    )
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert any(line.startswith("PASS") and "fal key" in line and "FAL_KEY is set" in line for line in lines)
    assert any(line.startswith("PASS") and "fal upstream" in line and "queue reachable" in line for line in lines)
    assert any(
        line.startswith("FAIL") and "voice_api upstream" in line and "could not be reached" in line for line in lines
    )
    assert any(line.startswith("SKIP") and "eigen key" in line and "EIGEN_API_KEY is not set" in line for line in lines)
    assert any(line.startswith("PASS") and "data folder" in line for line in lines)
    assert any(line.startswith("FAIL") and "output folder" in line and "not writable" in line for line in lines)
    assert FAL_KEY not in proc.stdout + proc.stderr and "voice-secret-123456" not in proc.stdout + proc.stderr


# --- the same commands in-process (main(argv)), as a user's shell would run them ---------------


def test_main_leaves_garbage_collection_on_however_it_ends(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _parser().parse_args([]) == NO_ARGUMENTS  # what main takes for no arguments, unparsed
    assert main(["tools"]) == 0 and gc.isenabled()
    monkeypatch.setenv("MCP_AUDIO_WAIT_S", "soon")
    assert main(["tools"]) == 1 and gc.isenabled()  # refused before any command ran
    assert "MCP_AUDIO_WAIT_S" in capsys.readouterr().err


def test_main_tools_in_every_format(cli_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools"]) == 0
    assert any(line.startswith("qwen3_tts ") for line in capsys.readouterr().out.splitlines())
    assert main(["tools", "--json"]) == 0
    assert {json.loads(line)["tool"] for line in capsys.readouterr().out.splitlines()} == set(
        load_catalog().capabilities
    )
    assert main(["tools", "--markdown"]) == 0
    assert capsys.readouterr().out == tools_markdown(load_catalog())


def test_main_call_then_jobs(cli_env: Settings, fake_fal: FakeFal, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "lyria2_music", "--json", '{"prompt": "calm piano"}', "--wait", "10"]) == 0
    captured = capfd.readouterr()
    result = json.loads(captured.out)
    assert result["status"] == "completed" and "lyria2_music:" in captured.err
    # A model's own tool is listed by its family (make_music): the SDK client's note that it has
    # no listed schema is not the user's concern.
    assert "not listed by server" not in captured.err
    assert FAL_KEY not in captured.out + captured.err
    assert main(["jobs", "--status", "completed", "--limit", "5", "--json"]) == 0
    assert json.loads(capfd.readouterr().out.splitlines()[0])["job_id"] == result["job_id"]
    assert main(["call", "lyria2_music", "--json", "[1]"]) == 1
    assert "--json must be a JSON object" in capfd.readouterr().err
    assert main(["call", "lyria2_music", "--json", '{"tempo": 1}']) == 1
    assert "`tempo`: unknown argument" in capfd.readouterr().err


def test_main_doctor_and_bad_settings(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "PASS  fal key" in out and "SKIP  eigen key" in out and FAL_KEY not in out
    monkeypatch.setenv("MCP_AUDIO_WAIT_S", "soon")
    assert main(["tools"]) == 1
    assert "mcp-audio: invalid setting MCP_AUDIO_WAIT_S:" in capsys.readouterr().err


def test_main_shows_one_tools_arguments_and_refuses_bad_options(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "elevenlabs_sound_effect"]) == 0
    out = capsys.readouterr().out
    assert "  prompt (string; required; at most 10000 characters): " in out
    assert "  duration_seconds (number; >= 0.5; <= 22): " in out
    assert main(["tools", "elevenlabs_sound_effect", "--json"]) == 0
    [entry] = map(json.loads, capsys.readouterr().out.splitlines())
    assert entry["input_schema"]["required"] == ["prompt"] and entry["input_schema"]["additionalProperties"] is False
    assert main(["tools", "transcribe"]) == 0  # a family tool: its models and the tool of each
    out = capsys.readouterr().out
    assert (
        "  whisper, the default: whisper_transcribe\n" in out
        and "  scribe-v1: elevenlabs_transcribe (model scribe-v1)\n" in out
    )
    assert main(["tools", "no_such_tool"]) == 1
    assert "no tool named 'no_such_tool'" in capsys.readouterr().err
    for bad in (["jobs", "--status", "bogus"], ["jobs", "--limit", "0"], ["serve", "--port", "70000"]):
        with pytest.raises(SystemExit) as exit_code:
            main(bad)
        assert exit_code.value.code == 2, bad
    errors = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in errors and "must be 1 or more, not 0" in errors and "not 70000" in errors


def test_main_call_progress_on_a_pipe_is_one_line_per_event(
    cli_env: Settings, fake_fal: FakeFal, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.3, run_s=0.3, logs=["rendering"])
    assert main(["call", "lyria2_music", "--json", '{"prompt": "calm"}']) == 0
    lines = capsys.readouterr().err.splitlines()
    events = [line for line in lines if line.startswith("lyria2_music: ")]
    assert any("Submitted to fal" in line for line in events)
    assert any("rendering" in line for line in events)
    assert not any("\r" in line for line in lines)


@pytest.mark.anyio
async def test_serve_sandbox_answers_every_upstream_with_no_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_AUDIO_") and k not in KEY_ENVS}
    env |= {"MCP_AUDIO_DATA_DIR": str(tmp_path / "d"), "MCP_AUDIO_OUTPUT_DIR": str(tmp_path / "o")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_audio", "serve", "--sandbox"], env=env)
    calls = {
        "qwen3_tts": {"text": "Hello from the sandbox."},
        "voice_api_tts": {"text": "Hello.", "model_ids": ["m-warm-narrator"]},
        "eigen_higgs_tts": {"text": "Hello."},
        "whisper_transcribe": {"audio_url": "https://example.com/talk.mp3"},
    }
    async with Client(params, mode="legacy") as client:
        results = {tool: await client.call_tool(tool, arguments) for tool, arguments in calls.items()}
        models = json.loads((await client.read_resource("voices://voice-api")).contents[0].text)  # type: ignore[union-attr]
    for tool, result in results.items():
        assert not result.is_error, (tool, text_of(result))
        assert (result.structured_content or {})["status"] == "completed", tool
    for tool in ("qwen3_tts", "voice_api_tts", "eigen_higgs_tts"):
        saved = Path((results[tool].structured_content or {})["files"][0]["path"])
        assert saved.parent == (tmp_path / "o" / "sandbox").resolve() and saved.stat().st_size > 0
    assert (results["whisper_transcribe"].structured_content or {})["output"]["text"]
    assert [model["id"] for model in models][:1] == ["m-warm-narrator"]
    assert not (tmp_path / "d" / "jobs.sqlite3").exists()  # sandbox jobs live apart from real ones


def test_doctor_sandbox_passes_with_no_key(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in KEY_ENVS:
        monkeypatch.delenv(name, raising=False)
    assert main(["doctor", "--sandbox"]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 15 + out.count("allowed folder") and "FAIL" not in out  # 4 fal URLs, 1 host
    assert "PASS  fal key accepted" in out and "PASS  voice_api key accepted" in out
    assert "PASS  local tools" in out and "no key needed" in out  # the finishing tools run here
    assert "SKIP  eigen key accepted" in out  # Eigen has no free authenticated request


def test_doctor_fails_a_rejected_key_naming_its_variable(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "fal-wrong-key-0000111122223333"
    monkeypatch.setenv("FAL_KEY", wrong)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  fal key accepted" in out and "FAL_KEY was rejected by fal (HTTP 401)" in out
    assert "PASS  fal upstream" in out  # reachable: only the key is wrong
    assert wrong not in out
