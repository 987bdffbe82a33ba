"""What every upstream promises, run once per upstream: a missing key is named before anything
is sent, a rejected key is named by its variable and never echoed, a 429 is retried after its
Retry-After without a second upstream job, and (for queued upstreams) a job outlives kill -9."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from mcp_audio.config import ServerSettings
from mcp_audio.core.upstreams import UPSTREAMS, Upstream
from tests.conftest import on_backend
from tests.helpers import (
    KEYS,
    assert_secret_kept,
    env_for,
    finish_the_unfinished_job,
    server,
    start_tool_call,
    stop,
    text_of,
)

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Case:
    upstream: Upstream
    fake: str  # fixture names
    settings: str
    tool: str
    arguments: dict[str, Any]
    submit_kind: str  # the fake's request kind of the billed request
    follow_kind: str | None  # a request kind seen while the job is followed (queued upstreams)
    listed_as: tuple[str, str]  # the family tool tools/list shows the tool under, and its `model` choice

    def jobs_upstream(self, fake: Any) -> int:
        """How many jobs the upstream created."""
        if hasattr(fake, "jobs"):
            return len(fake.jobs)
        if hasattr(fake, "tasks"):
            return len(fake.tasks)
        return int(fake.generated)


CASES = [
    Case(
        UPSTREAMS["fal"],
        "fake_fal",
        "settings",
        "lyria2_music",
        {"prompt": "calm"},
        "submit",
        "stream",
        ("make_music", "lyria2"),
    ),
    Case(
        UPSTREAMS["voice_api"],
        "fake_voice",
        "voice_settings",
        "voice_api_tts",
        {"text": "Hi."},
        "tts_submit",
        "tts_status",
        ("speak", "voice-api"),
    ),
    Case(
        UPSTREAMS["eigen"],
        "fake_eigen",
        "eigen_settings",
        "eigen_higgs_tts",
        {"text": "Hello."},
        "tts",
        None,
        ("speak", "eigen-higgs"),
    ),
]
QUEUED = [case for case in CASES if case.follow_kind is not None]


def sent_body(record: Any) -> Any:
    """What a recorded request carried: its JSON body, or its form fields."""
    return record.json if getattr(record, "json", None) is not None else record.form


def ids(cases: list[Case]) -> list[str]:
    return [case.upstream.name for case in cases]


def arrange(request: pytest.FixtureRequest, case: Case) -> tuple[Any, ServerSettings]:
    return request.getfixturevalue(case.fake), request.getfixturevalue(case.settings)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
async def test_missing_key_is_named_and_nothing_is_sent(request: pytest.FixtureRequest, case: Case) -> None:
    fake, settings = arrange(request, case)
    keyless = settings.model_copy(update={case.upstream.key_field: None})
    family, choice = case.listed_as
    async with Client(server(keyless)) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert choice in listed[family].input_schema["properties"]["model"]["enum"]  # still listed, as a choice
        result = await client.call_tool(case.tool, case.arguments)
        chosen = await client.call_tool(family, case.arguments | {"model": choice})
        jobs = await client.call_tool("list_jobs", {})
    env = case.upstream.key_env
    for tool, answer in ((case.tool, result), (family, chosen)):
        assert answer.is_error
        assert text_of(answer) == (
            f"Error executing tool {tool}: {env} is not set: this tool calls {case.upstream.key_needed_for}. "
            f"Set the {env} environment variable in the MCP client's server config."
        )
    assert jobs.structured_content == {"jobs": []}  # no job row for a call that cannot run
    assert fake.requests == []


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
async def test_rejected_key_is_named_by_variable_never_echoed(request: pytest.FixtureRequest, case: Case) -> None:
    fake, settings = arrange(request, case)
    wrong = f"{case.upstream.name}-wrong-key-9876543210"
    rejected = settings.model_copy(update={case.upstream.key_field: SecretStr(wrong)})
    async with Client(server(rejected)) as client:
        result = await client.call_tool(case.tool, case.arguments)
        # An upstream that echoes the key it was given: the agent still never sees it.
        fake.inject(case.submit_kind, 401, body={"detail": f"bad key {wrong}"})
        echoed = await client.call_tool(case.tool, case.arguments)
        listed = await client.call_tool("list_jobs", {})
    for answer in (result, echoed):
        assert answer.is_error
        job_id = (answer.structured_content or {})["job_id"]
        assert text_of(answer) == (
            f"{case.tool} failed (job {job_id}): {case.upstream.label} rejected the API key (HTTP 401). "
            f"Check that {case.upstream.key_env} holds a valid, active key."
        )
    assert_secret_kept(wrong, rejected, str(result), str(echoed), str(listed))
    assert case.jobs_upstream(fake) == 0


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
async def test_429_is_retried_after_retry_after_with_one_upstream_job(
    request: pytest.FixtureRequest, case: Case
) -> None:
    fake, settings = arrange(request, case)
    fake.inject(case.submit_kind, 429, times=2, headers={"Retry-After": "0.2"}, body={"detail": "Rate limited"})
    async with Client(server(settings)) as client:
        result = await client.call_tool(case.tool, case.arguments)
    assert not result.is_error, text_of(result)
    assert (result.structured_content or {})["status"] == "completed"
    sent = fake.requests_of(case.submit_kind)
    assert len(sent) == 3
    assert len({json.dumps(sent_body(r), sort_keys=True) for r in sent}) == 1  # the same request, resent
    assert sent[1].time - sent[0].time >= 0.2 and sent[2].time - sent[1].time >= 0.2
    assert case.jobs_upstream(fake) == 1
    assert_secret_kept(KEYS[case.upstream.name], settings, json.dumps(result.structured_content), text_of(result))


@pytest.mark.parametrize("case", QUEUED, ids=ids(QUEUED))
async def test_kill_9_mid_job_then_restart_finishes_it_without_resubmitting(
    request: pytest.FixtureRequest, case: Case, tmp_path: Path, database_url: str | None
) -> None:
    fake, settings = arrange(request, case)
    settings = on_backend(settings, database_url)  # on SQLite and on PostgreSQL
    if case.upstream.name == "fal":
        fake.script("fal-ai/lyria2", queue_s=0.3, run_s=1.5)
    else:
        fake.script("tts", phases=[("queued", 0, 0.2), ("processing", 50, 1.2)])
    server_log = tmp_path / "server.log"
    proc = start_tool_call(env_for(settings), case.tool, case.arguments, log=server_log)
    try:
        with anyio.fail_after(30):
            while not fake.requests_of(case.follow_kind):
                await anyio.sleep(0.05)
    finally:
        stop(proc)  # SIGKILL: no clean-up runs
    async with Client(server(settings)) as client:
        body = await finish_the_unfinished_job(client)
    assert body["files"], body
    assert len(fake.requests_of(case.submit_kind)) == 1  # re-attached, never resubmitted
    assert case.jobs_upstream(fake) == 1
    assert_secret_kept(KEYS[case.upstream.name], settings, server_log.read_text(), json.dumps(body))
