"""MCP_AUDIO_TOOLSETS=dynamic through a real MCP client: a small tools/list, `enable_toolset`
adding a family with notifications/tools/list_changed (both eras), refusals that name the
allowed values, and families kept apart per caller."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import ToolListChangedNotification

from mcp_audio.config import TOOLSETS, Settings
from mcp_audio.server.toolsets import DynamicToolsets
from tests.helpers import CATALOG, FAMILY_MEMBERS, LISTED_KINDS, make_wav, server, text_of
from tests.http_harness import add_token, http_server, mcp_client

pytestmark = pytest.mark.anyio

JOB_TOOLS = {"get_job", "cancel_job", "list_jobs", "find_audio_tools"}  # always listed
# As tools/list shows them: a family tool (e.g. transcribe) stands for its members.
STT_TOOLS = {name for name, kind in LISTED_KINDS.items() if kind == "stt"}


def reached(listed: set[str]) -> set[str]:
    """The capabilities the listed tools run: their own, and every `model` of a family tool."""
    out = {name for name in listed if name in CATALOG.capabilities}
    for name in listed & set(CATALOG.families):
        out |= {member.capability.name for member in CATALOG.families[name].members.values()}
    return out


@pytest.fixture
def dynamic(settings: Settings, rec_dir: Path) -> Settings:
    return settings.model_copy(update={"toolsets": "dynamic", "allowed_dirs": str(rec_dir)})


def names(tools: Any) -> set[str]:
    return {tool.name for tool in tools.tools}


async def test_tools_list_starts_small_and_a_family_is_added(dynamic: Settings) -> None:
    notes: list[Any] = []

    async def handler(message: Any) -> None:
        notes.append(message)

    async with Client(server(dynamic), mode="legacy", message_handler=handler) as client:
        assert client.session.server_capabilities.tools.list_changed is True  # type: ignore[union-attr]
        first = await client.list_tools()
        assert names(first) == JOB_TOOLS | {"enable_toolset"}
        size = len(json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in first.tools]))
        assert size // 4 <= 1000  # the whole list with find_audio_tools (issue 23), against ~19,000 with every tool
        [enable] = [tool for tool in first.tools if tool.name == "enable_toolset"]
        assert f"stt ({len(STT_TOOLS)}: transcription)" in (enable.description or "")
        assert enable.input_schema["properties"]["toolset"]["enum"] == [
            "tts",
            "stt",
            "music",
            "sfx",
            "edit",
            "post",
            "all",
        ]
        result = await client.call_tool("enable_toolset", {"toolset": "stt"})
        assert not result.is_error, text_of(result)
        assert set(result.structured_content["added"]) == STT_TOOLS  # type: ignore[index]
        await anyio.sleep(0.05)
        assert any(isinstance(note, ToolListChangedNotification) for note in notes)
        now = await client.list_tools()
        assert names(now) == JOB_TOOLS | {"enable_toolset"} | STT_TOOLS
        # Every transcription capability is reachable: listed itself, or a `model` of a listed family.
        assert reached(names(now)) >= {n for n, cap in CATALOG.capabilities.items() if cap.spec.kind == "stt"}
        [transcribe] = [tool for tool in now.tools if tool.name == "transcribe"]
        assert transcribe.input_schema["properties"]["model"]["enum"] == list(CATALOG.families["transcribe"].members)
        again = await client.call_tool("enable_toolset", {"toolset": "stt"})
        assert text_of(again) == "stt was already enabled."


async def test_a_2026_era_listener_hears_of_the_change(dynamic: Settings) -> None:
    async with Client(server(dynamic)) as client:
        async with client.listen(tools_list_changed=True) as subscription:
            await client.call_tool("enable_toolset", {"toolset": "sfx"})
            with anyio.fail_after(5):
                async for _event in subscription:
                    break
        listed = names(await client.list_tools())
    assert "make_sound_effect" in listed and "transcribe" not in listed
    assert "elevenlabs_sound_effect" in reached(listed) and "elevenlabs_sound_effect" not in listed


async def test_all_lists_every_tool_and_a_bad_toolset_names_the_allowed_ones(dynamic: Settings) -> None:
    async with Client(server(dynamic)) as client:
        bad = await client.call_tool("enable_toolset", {"toolset": "speech"})
        everything = await client.call_tool("enable_toolset", {"toolset": "all"})
        listed = names(await client.list_tools())
    assert bad.is_error
    assert "`toolset`: got 'speech'; allowed: tts, stt, music, sfx, edit, post, all." in text_of(bad)
    assert not everything.is_error
    assert listed == set(LISTED_KINDS) | JOB_TOOLS | {"enable_toolset", "produce_audio", "redo_part"}
    assert reached(listed) == set(CATALOG.capabilities) and not listed & FAMILY_MEMBERS


async def test_a_tool_not_listed_yet_can_still_be_called(dynamic: Settings, rec_dir: Path) -> None:
    (rec_dir / "a.wav").write_bytes(make_wav(1.0))
    async with Client(server(dynamic)) as client:
        result = await client.call_tool("audio_info", {"audio_url": str(rec_dir / "a.wav")})
    assert not result.is_error, text_of(result)


async def test_over_http_each_caller_enables_its_own_families(settings: Settings) -> None:
    alice, bob = add_token(settings, "alice"), add_token(settings, "bob")
    with http_server(settings, extra_env={"MCP_AUDIO_TOOLSETS": "dynamic"}) as served:
        async with mcp_client(served.mcp, alice) as as_alice:
            await as_alice.call_tool("enable_toolset", {"toolset": "post"})
            alice_tools = names(await as_alice.list_tools())
        async with mcp_client(served.mcp, bob) as as_bob:
            bob_tools = names(await as_bob.list_tools())
    assert "audio_join" in alice_tools and "transcribe" not in alice_tools
    assert bob_tools == JOB_TOOLS | {"enable_toolset"}


def test_families_are_kept_apart_per_caller() -> None:
    toolsets = DynamicToolsets(list(LISTED_KINDS.items()))
    assert toolsets.enable("alice", "post") and toolsets.enable("bob", "stt")
    assert "audio_join" not in toolsets.hidden("alice") and "audio_join" in toolsets.hidden("bob")
    assert toolsets.hidden("alice") >= STT_TOOLS and not STT_TOOLS & toolsets.hidden("bob")


def test_dynamic_is_a_toolset_of_its_own() -> None:
    assert Settings(toolsets="dynamic").enabled_kinds == Settings().enabled_kinds
    with pytest.raises(ValueError, match="allowed: all, dynamic, or a comma list of"):
        Settings(toolsets="dynamic,stt")


async def test_each_toolset_reaches_every_tool_of_its_kinds(dynamic: Settings) -> None:
    """Enabling a toolset lists a way to call each capability of its kinds: the capability, or a
    family tool with it among its models (as MCP_AUDIO_TOOLSETS=<that toolset> would offer it)."""
    missing: dict[str, list[str]] = {}
    for toolset, kinds in TOOLSETS.items():
        async with Client(server(dynamic)) as client:  # one caller per toolset
            enabled = await client.call_tool("enable_toolset", {"toolset": toolset})
            assert not enabled.is_error, text_of(enabled)
            listed = names(await client.list_tools())
        wanted = {name for name, cap in CATALOG.capabilities.items() if cap.spec.kind in kinds}
        if wanted - reached(listed):
            missing[toolset] = sorted(wanted - reached(listed))
    assert not missing
