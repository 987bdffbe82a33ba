"""MCP tasks (2025-11-25), spoken as raw JSON-RPC per the spec: the capability, taskSupport on
capability tools, a task-augmented tools/call answered at once with a task backed by the job
store (task id == job id), tasks/get, tasks/result (with the related-task _meta), tasks/list,
tasks/cancel (upstream too), and the status notification. Other protocol versions see none."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.memory import create_client_server_memory_streams
from mcp.shared.message import SessionMessage
from mcp_types.jsonrpc import JSONRPCError, JSONRPCNotification, JSONRPCRequest, JSONRPCResponse

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import LISTED_KINDS, server
from tests.http_harness import MCP_HEADERS, TRUST, add_token, http_server

pytestmark = pytest.mark.anyio

TASKS = "2025-11-25"


class Peer:
    """A client that writes JSON-RPC messages itself and keeps every notification it receives."""

    def __init__(self, read: Any, write: Any) -> None:
        self._read, self._write = read, write
        self._ids = itertools.count(1)
        self.notifications: list[dict[str, Any]] = []
        self.elicitation: dict[str, Any] | None = None  # the answer to an elicitation/create, if any
        self.asked: list[dict[str, Any]] = []

    async def send(self, message: Any) -> None:
        await self._write.send(SessionMessage(message))

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The response: {"result": ...} or {"error": ...}."""
        request_id = next(self._ids)
        await self.send(JSONRPCRequest(jsonrpc="2.0", id=request_id, method=method, params=params))
        with anyio.fail_after(20):
            while True:
                item = await self._read.receive()
                assert not isinstance(item, Exception), item
                message = item.message
                if isinstance(message, JSONRPCNotification):
                    self.notifications.append(message.model_dump(by_alias=True, exclude_none=True))
                elif isinstance(message, JSONRPCResponse) and message.id == request_id:
                    return {"result": message.result}
                elif isinstance(message, JSONRPCError) and message.id == request_id:
                    return {"error": message.error.model_dump(by_alias=True, exclude_none=True)}
                elif isinstance(message, JSONRPCRequest):  # a server request: only elicitation is expected
                    assert message.method == "elicitation/create" and self.elicitation is not None, message
                    self.asked.append(dict(message.params or {}))
                    await self.send(JSONRPCResponse(jsonrpc="2.0", id=message.id, result=self.elicitation))

    async def result(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = await self.request(method, params)
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result

    async def drain(self, seconds: float) -> None:
        """Collect notifications for a while."""
        with anyio.move_on_after(seconds):
            while True:
                item = await self._read.receive()
                if isinstance(item, SessionMessage) and isinstance(item.message, JSONRPCNotification):
                    self.notifications.append(item.message.model_dump(by_alias=True, exclude_none=True))


@asynccontextmanager
async def connected(
    mcp: MCPServer[Any], version: str = TASKS, capabilities: dict[str, Any] | None = None
) -> AsyncIterator[tuple[Peer, dict[str, Any]]]:
    """A raw peer after the initialize handshake at `version`; with the initialize result."""
    lowlevel = mcp._lowlevel_server
    async with create_client_server_memory_streams() as (client, served), anyio.create_task_group() as group:
        group.start_soon(lambda: lowlevel.run(served[0], served[1], lowlevel.create_initialization_options()))
        peer = Peer(*client)
        initialized = await peer.result(
            "initialize",
            {
                "protocolVersion": version,
                "capabilities": capabilities or {"tasks": {"list": {}, "cancel": {}}},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        )
        await peer.send(JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized"))
        yield peer, initialized
        group.cancel_scope.cancel()


def task_call(tool: str, arguments: dict[str, Any], ttl: int = 60000) -> dict[str, Any]:
    return {"name": tool, "arguments": arguments, "task": {"ttl": ttl}}


async def test_capability_and_task_support_are_advertised(settings: ServerSettings) -> None:
    async with connected(server(settings)) as (peer, initialized):
        tools = {tool["name"]: tool for tool in (await peer.result("tools/list"))["tools"]}
    assert initialized["protocolVersion"] == TASKS
    assert initialized["capabilities"]["tasks"] == {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
    # Every capability tool as listed: the family tools (make_music...), and each capability no family lists.
    assert set(LISTED_KINDS) <= set(tools) and {"make_music", "speak", "audio_join"} <= set(LISTED_KINDS)
    assert all(tools[name]["execution"] == {"taskSupport": "optional"} for name in LISTED_KINDS)
    assert all("execution" not in tools[name] for name in ("get_job", "cancel_job", "list_jobs"))


async def test_a_family_tool_runs_as_a_task(settings: ServerSettings, fake_fal: FakeFal) -> None:
    """`model` picks the capability, whose job backs the task; a model it lacks: no task."""
    fake_fal.script("fal-ai/lyria2", run_s=0.3)
    async with connected(server(settings)) as (peer, _):
        created = await peer.result("tools/call", task_call("make_music", {"model": "lyria2", "prompt": "calm"}))
        refused = await peer.result("tools/call", task_call("make_music", {"model": "lyria9", "prompt": "calm"}))
        task = created["task"]
        final = await peer.result("tasks/result", {"taskId": task["taskId"]})
        job = await peer.result("tools/call", {"name": "get_job", "arguments": {"job_id": task["taskId"]}})
        listed = await peer.result("tasks/list")
    assert final["structuredContent"]["status"] == "completed" and final["structuredContent"]["files"]
    assert final["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task["taskId"]}
    assert job["structuredContent"]["tool"] == "lyria2_music"  # the job is the member's
    assert [r.path for r in fake_fal.requests_of("submit")] == ["/fal-ai/lyria2"]
    assert refused["isError"] is True and "`model`: got 'lyria9'" in refused["content"][0]["text"]
    assert [t["taskId"] for t in listed["tasks"]] == [task["taskId"]]


async def test_other_versions_see_no_tasks(settings: ServerSettings) -> None:
    async with connected(server(settings), "2025-06-18") as (peer, initialized):
        tools = (await peer.result("tools/list"))["tools"]
        got = await peer.request("tasks/get", {"taskId": "x"})
        plain = await peer.result("tools/call", task_call("audio_info", {"audio_url": "/nowhere.wav"}))
    assert "tasks" not in initialized["capabilities"]
    assert all("execution" not in tool for tool in tools)
    assert got["error"]["code"] == -32601
    assert "task" not in plain and plain["isError"] is True  # `task` is not of this version: a plain call


async def test_one_server_lists_each_version_its_own_way_again_and_again(settings: ServerSettings) -> None:
    """tools/list answers are kept per protocol version (server/aliases.py): sessions of two
    versions on one server, alternately, each get their own version's list every time."""
    shared = server(settings)
    seen = []
    for version in (TASKS, "2025-06-18", TASKS, "2025-06-18"):
        async with connected(shared, version) as (peer, _):
            for _ in range(2):
                tools = {tool["name"]: tool for tool in (await peer.result("tools/list"))["tools"]}
                seen.append((version, sorted(tools), "execution" in tools["speak"]))
    assert len({tuple(names) for _, names, _ in seen}) == 1  # the same tools, members unlisted
    assert "speak" in seen[0][1] and "kokoro_tts" not in seen[0][1]
    assert [(version, has) for version, _, has in seen] == [
        (version, version == TASKS) for version in (TASKS, "2025-06-18", TASKS, "2025-06-18") for _ in range(2)
    ]


async def test_the_2026_era_sees_no_2025_tasks(settings: ServerSettings) -> None:
    async with Client(server(settings)) as client:
        tools = (await client.list_tools()).tools
    assert all(tool.execution is None for tool in tools)


async def test_a_task_augmented_call_runs_as_a_job_to_its_result(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.3, run_s=0.3, logs=["rendering"])
    async with connected(server(settings)) as (peer, _):
        with anyio.fail_after(3):  # at once, not after the job
            call = task_call("lyria2_music", {"prompt": "calm"}) | {"_meta": {"progressToken": "p-1"}}
            created = await peer.result("tools/call", call)
        task = created["task"]
        assert task["status"] == "working" and task["ttl"] is None
        assert {"taskId", "createdAt", "lastUpdatedAt", "pollInterval"} <= set(task)
        # The task is the job: same id, seen by the job tools.
        job = await peer.result("tools/call", {"name": "get_job", "arguments": {"job_id": task["taskId"]}})
        assert job["structuredContent"]["job_id"] == task["taskId"]
        polled = await peer.result("tasks/get", {"taskId": task["taskId"]})
        assert polled["taskId"] == task["taskId"] and polled["status"] in ("working", "completed")
        final = await peer.result("tasks/result", {"taskId": task["taskId"]})
        assert final["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task["taskId"]}
        assert final["structuredContent"]["status"] == "completed" and final["structuredContent"]["files"]
        assert not final.get("isError")
        done = await peer.result("tasks/get", {"taskId": task["taskId"]})
        assert done["status"] == "completed"
        listed = await peer.result("tasks/list")
        await peer.drain(0.5)
    assert [t["taskId"] for t in listed["tasks"]] == [task["taskId"]]
    progress = [n["params"] for n in peer.notifications if n["method"] == "notifications/progress"]
    assert progress and all(p["progressToken"] == "p-1" for p in progress)
    assert all(p["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task["taskId"]} for p in progress)
    assert any("rendering" in p.get("message", "") for p in progress)
    statuses = [n["params"] for n in peer.notifications if n["method"] == "notifications/tasks/status"]
    assert statuses and statuses[-1]["taskId"] == task["taskId"] and statuses[-1]["status"] == "completed"
    assert len(fake_fal.requests_of("submit")) == 1


async def test_a_failed_task_answers_the_tool_error(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", error=(422, {"detail": [{"loc": ["body", "prompt"], "msg": "too calm"}]}))
    async with connected(server(settings)) as (peer, _):
        task = (await peer.result("tools/call", task_call("lyria2_music", {"prompt": "calm"})))["task"]
        final = await peer.result("tasks/result", {"taskId": task["taskId"]})
        got = await peer.result("tasks/get", {"taskId": task["taskId"]})
    assert final["isError"] is True and final["structuredContent"]["status"] == "failed"
    assert final["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task["taskId"]}
    assert got["status"] == "failed" and "too calm" in got["statusMessage"]


async def test_cancel_cancels_upstream_and_a_finished_task_cannot_be_cancelled(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=30)
    async with connected(server(settings)) as (peer, _):
        task = (await peer.result("tools/call", task_call("lyria2_music", {"prompt": "calm"})))["task"]
        with anyio.fail_after(5):
            while not fake_fal.requests_of("submit"):
                await anyio.sleep(0.02)
        cancelled = await peer.result("tasks/cancel", {"taskId": task["taskId"]})
        again = await peer.request("tasks/cancel", {"taskId": task["taskId"]})
        final = await peer.result("tasks/result", {"taskId": task["taskId"]})
    assert cancelled["status"] == "cancelled" and cancelled["taskId"] == task["taskId"]
    assert fake_fal.requests_of("cancel"), "the upstream job was cancelled too"
    assert again["error"]["code"] == -32602 and "already cancelled" in again["error"]["message"]
    assert final["structuredContent"]["status"] == "cancelled"


async def test_unknown_tasks_and_tools_that_do_not_run_as_tasks(settings: ServerSettings) -> None:
    async with connected(server(settings)) as (peer, _):
        missing = await peer.request("tasks/get", {"taskId": "nope"})
        result_missing = await peer.request("tasks/result", {"taskId": "nope"})
        job_tool = await peer.request("tools/call", task_call("list_jobs", {}))
        refused = await peer.result("tools/call", task_call("lyria2_music", {"prompt": "calm", "colour": "red"}))
        listed = await peer.result("tasks/list")
        cursor = await peer.request("tasks/list", {"cursor": "page two"})
    assert missing["error"]["code"] == -32602 and "No task with id 'nope'" in missing["error"]["message"]
    assert result_missing["error"]["code"] == -32602
    assert job_tool["error"]["code"] == -32601
    # Refused before any job existed: the tool's own error, no task.
    assert refused["isError"] is True and "`colour`: unknown argument" in refused["content"][0]["text"]
    assert listed == {"tasks": []}
    assert cursor["error"]["code"] == -32602


# --- the 2026-07-28 tasks extension -------------------------------------------------------------

MODERN = "2026-07-28"
EXTENSION = "io.modelcontextprotocol/tasks"


def modern(params: dict[str, Any] | None = None, *, declares: bool = True) -> dict[str, Any]:
    """Params of a 2026-era request: the version and capabilities ride in `_meta`."""
    capabilities: dict[str, Any] = {"extensions": {EXTENSION: {}}} if declares else {}
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
    }
    return {**(params or {}), "_meta": meta}


@asynccontextmanager
async def modern_peer(mcp: MCPServer[Any]) -> AsyncIterator[Peer]:
    lowlevel = mcp._lowlevel_server
    async with create_client_server_memory_streams() as (client, served), anyio.create_task_group() as group:
        group.start_soon(lambda: lowlevel.run(served[0], served[1], lowlevel.create_initialization_options()))
        yield Peer(*client)
        group.cancel_scope.cancel()


async def test_2026_a_call_unfinished_after_wait_s_becomes_a_task(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.6, run_s=0.2)
    async with modern_peer(server(settings.model_copy(update={"wait_s": 0.1}))) as peer:
        discovered = await peer.result("server/discover", modern())
        created = await peer.result("tools/call", modern({"name": "lyria2_music", "arguments": {"prompt": "calm"}}))
        assert created["resultType"] == "task" and created["status"] == "working"
        assert created["ttlMs"] is None and created["pollIntervalMs"] > 0
        task_id = created["taskId"]
        with anyio.fail_after(10):
            while (got := await peer.result("tasks/get", modern({"taskId": task_id})))["status"] == "working":
                await anyio.sleep(0.1)
        ack = await peer.result("tasks/cancel", modern({"taskId": task_id}))
        update = await peer.result("tasks/update", modern({"taskId": task_id, "inputResponses": {}}))
        unknown = await peer.request("tasks/get", modern({"taskId": "nope"}))
        undeclared = await peer.request("tasks/get", modern({"taskId": task_id}, declares=False))
        no_list = await peer.request("tasks/list", modern())
        plain = await peer.result(
            "tools/call", modern({"name": "lyria2_music", "arguments": {"prompt": "calm"}}, declares=False)
        )
    assert EXTENSION in discovered["capabilities"]["extensions"]
    assert got["status"] == "completed" and got["resultType"] == "complete"
    assert got["result"]["structuredContent"]["job_id"] == task_id
    assert got["result"]["structuredContent"]["status"] == "completed"
    assert ack["resultType"] == "complete" and update["resultType"] == "complete"
    assert unknown["error"]["code"] == -32602
    assert undeclared["error"]["code"] == -32021
    assert undeclared["error"]["data"] == {"requiredCapabilities": {"extensions": {EXTENSION: {}}}}
    assert no_list["error"]["code"] == -32601
    # A client without the extension never gets a task: the job handle, as ever.
    assert plain.get("resultType") != "task" and plain["structuredContent"]["status"] in ("queued", "running")


async def test_2026_a_fast_call_answers_its_result_and_a_tool_error_completes(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=3.0, error=(422, {"detail": [{"loc": ["body", "prompt"], "msg": "no"}]}))
    # 1.5 s: time for a quick call in a cold process (its first upstream client is made then).
    async with modern_peer(server(settings.model_copy(update={"wait_s": 1.5}))) as peer:
        quick = await peer.result("tools/call", modern({"name": "qwen3_tts", "arguments": {"text": "Hi."}}))
        created = await peer.result("tools/call", modern({"name": "lyria2_music", "arguments": {"prompt": "calm"}}))
        with anyio.fail_after(10):
            while (got := await peer.result("tasks/get", modern({"taskId": created["taskId"]})))["status"] == "working":
                await anyio.sleep(0.1)
    assert quick["resultType"] == "complete" and quick["structuredContent"]["status"] == "completed"
    # A tool result with isError is a completed task (failed is for JSON-RPC errors).
    assert got["status"] == "completed" and got["result"]["isError"] is True
    assert got["result"]["structuredContent"]["status"] == "failed"


async def test_2026_cancel_stops_the_job_upstream(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=30)
    async with modern_peer(server(settings.model_copy(update={"wait_s": 0.1}))) as peer:
        created = await peer.result("tools/call", modern({"name": "lyria2_music", "arguments": {"prompt": "calm"}}))
        ack = await peer.result("tasks/cancel", modern({"taskId": created["taskId"]}))
        got = await peer.result("tasks/get", modern({"taskId": created["taskId"]}))
    assert ack["resultType"] == "complete" and set(ack) <= {"resultType", "_meta"}  # an empty acknowledgement
    assert got["status"] == "cancelled" and "result" not in got
    assert fake_fal.requests_of("cancel")


# --- over HTTP, per caller -------------------------------------------------------------------


class HttpPeer:
    """A 2025-11-25 client speaking raw JSON-RPC over streamable HTTP with a bearer token."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.session: str | None = None
        self._ids = itertools.count(1)

    def post(self, message: dict[str, Any]) -> dict[str, Any] | None:
        headers = MCP_HEADERS | {"Authorization": f"Bearer {self.token}", "MCP-Protocol-Version": TASKS}
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        response = httpx.post(self.url, json=message, headers=headers, timeout=30, verify=TRUST)
        assert response.status_code in (200, 202), response.text
        self.session = response.headers.get("mcp-session-id", self.session)
        if "id" not in message:
            return None
        lines = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        answers = [json.loads(line) for line in lines or [response.text]]
        [answer] = [item for item in answers if item.get("id") == message["id"]]
        return dict(answer)

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or {}})
        assert answer is not None
        return answer

    def start(self) -> dict[str, Any]:
        init = {"protocolVersion": TASKS, "capabilities": {"tasks": {}}, "clientInfo": {"name": "raw", "version": "0"}}
        initialized = self.request("initialize", init)
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return initialized


@pytest.mark.parametrize("action", ["accept", "decline"])
async def test_a_priced_task_asks_before_the_task_exists(
    settings: ServerSettings, fake_fal: FakeFal, action: str
) -> None:
    async with connected(server(settings), capabilities={"tasks": {}, "elicitation": {"form": {}}}) as (peer, _):
        peer.elicitation = {"action": action, "content": {"start": True}} if action == "accept" else {"action": action}
        answer = await peer.result(
            "tools/call", task_call("minimax_design_voice", {"prompt": "warm", "preview_text": "Hi"})
        )
        listed = await peer.result("tasks/list")
    [question] = peer.asked
    assert "$3.00" in question["message"]
    if action == "accept":
        assert answer["task"]["status"] == "working" and [t["taskId"] for t in listed["tasks"]] == [
            answer["task"]["taskId"]
        ]
    else:
        assert "task" not in answer and answer["isError"] is True and "was not started" in answer["content"][0]["text"]
        assert listed == {"tasks": []} and not fake_fal.requests_of("submit")


async def test_tasks_list_pages_with_a_cursor(settings: ServerSettings) -> None:
    async with connected(server(settings)) as (peer, _):
        made = [
            (await peer.result("tools/call", task_call("qwen3_tts", {"text": f"Take {n}."})))["task"]["taskId"]
            for n in range(101)  # one more than a page
        ]
        first = await peer.result("tasks/list")
        second = await peer.result("tasks/list", {"cursor": first["nextCursor"]})
    assert len(first["tasks"]) == 100 and len(second["tasks"]) == 1 and "nextCursor" not in second
    assert [task["taskId"] for task in first["tasks"] + second["tasks"]] == made[::-1]


async def test_over_http_a_callers_tasks_are_its_own(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=30)
    alice, bob = add_token(settings, "alice"), add_token(settings, "bob")
    with http_server(settings) as served:
        as_alice, as_bob = HttpPeer(served.mcp, alice), HttpPeer(served.mcp, bob)
        assert as_alice.start()["result"]["capabilities"]["tasks"]["requests"] == {"tools": {"call": {}}}
        as_bob.start()
        created = as_alice.request("tools/call", task_call("lyria2_music", {"prompt": "calm"}))["result"]["task"]
        seen_by_bob = {
            method: as_bob.request(method, {"taskId": created["taskId"]})
            for method in ("tasks/get", "tasks/result", "tasks/cancel")
        }
        bobs_list = as_bob.request("tasks/list")["result"]
        alices = as_alice.request("tasks/get", {"taskId": created["taskId"]})["result"]
        cancelled = as_alice.request("tasks/cancel", {"taskId": created["taskId"]})["result"]
    for method, answer in seen_by_bob.items():
        assert answer["error"]["code"] == -32602 and "No task with id" in answer["error"]["message"], method
    assert bobs_list == {"tasks": []}
    assert alices["status"] == "working" and cancelled["status"] == "cancelled"
