"""`mcp-audio doctor` checks every configured URL of an upstream and every folder it uses, run as
a user's shell runs it (main(argv) with the environment set)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_audio.cli import main
from mcp_audio.config import Settings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import FAL_KEY

DISCARD = "http://127.0.0.1:9"  # nothing listens on the discard port


def lines_of(out: str) -> dict[str, str]:
    """'PASS  fal rest URL  detail' lines keyed by check name, as 'PASS detail'."""
    checks = {}
    for line in out.splitlines():
        status, rest = line[:4], line[6:]
        name, _, detail = rest.partition("  ")
        checks.setdefault(name.strip(), f"{status} {detail.strip()}")
    return checks


def test_every_fal_url_is_checked_and_each_failure_names_its_variable(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor"]) == 0
    checks = lines_of(capsys.readouterr().out)
    base = cli_env.fal_queue_url
    assert checks["fal run URL"] == f"PASS MCP_AUDIO_FAL_RUN_URL={base}/run: reachable (HTTP 404)"
    assert checks["fal rest URL"] == f"PASS MCP_AUDIO_FAL_REST_URL={base}: reachable (HTTP 404)"
    assert checks["fal cdn URL"] == f"PASS MCP_AUDIO_FAL_CDN_URL={base}: reachable (HTTP 404)"
    # Only the queue reachable, as in a set-up that forgot the REST and CDN variables.
    monkeypatch.setenv("MCP_AUDIO_FAL_REST_URL", DISCARD)
    monkeypatch.setenv("MCP_AUDIO_FAL_CDN_URL", "v3.fal.media")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    checks = lines_of(out)
    assert checks["fal upstream"].startswith("PASS")
    assert checks["fal rest URL"] == f"FAIL MCP_AUDIO_FAL_REST_URL={DISCARD}: could not be reached (ConnectError)"
    assert checks["fal cdn URL"] == "FAIL MCP_AUDIO_FAL_CDN_URL=v3.fal.media: not an http(s) URL"
    assert FAL_KEY not in out


def test_the_further_urls_get_no_key(cli_env: Settings, fake_fal: FakeFal, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    capsys.readouterr()
    plain = [(r.method, r.path) for r in fake_fal.requests if "authorization" not in r.headers]
    assert sorted(plain) == [("GET", "/"), ("GET", "/"), ("GET", "/run")]  # REST, CDN and run: no key sent
    assert all("authorization" in r.headers for r in fake_fal.requests if (r.method, r.path) not in plain)


def test_folders_data_output_and_each_allowed_one(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    missing = tmp_path / "gone"
    monkeypatch.setenv("MCP_AUDIO_ALLOWED_DIRS", f"{shared}:{missing}")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert f"PASS allowed folder {shared} (MCP_AUDIO_ALLOWED_DIRS) is readable" in squeezed(out)
    assert f"FAIL allowed folder {missing} (MCP_AUDIO_ALLOWED_DIRS): no such folder" in squeezed(out)
    assert f"PASS data folder {cli_env.data_dir} is writable" in squeezed(out)
    assert f"PASS output folder {cli_env.output_dir} is writable" in squeezed(out)
    monkeypatch.setenv("MCP_AUDIO_ALLOWED_DIRS", "")
    assert main(["doctor"]) == 0
    expected = "SKIP allowed folders none (MCP_AUDIO_ALLOWED_DIRS): local file inputs are refused"
    assert expected in squeezed(capsys.readouterr().out)


def squeezed(out: str) -> str:
    """The report with its column padding removed."""
    return "\n".join(" ".join(line.split()) for line in out.splitlines())
