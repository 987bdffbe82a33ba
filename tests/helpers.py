"""What the tests share: keys, fast pacing, a server factory, audio makers, result readers,
secret checks and subprocess helpers. Fixtures live in conftest.py."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import wave
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from mcp import Client, StdioServerParameters
from mcp.server.mcpserver import MCPServer
from mcp_types import TextContent

from mcp_audio.catalog import Catalog, load_catalog
from mcp_audio.config import ServerSettings
from mcp_audio.core.upstreams import REMOTE
from mcp_audio.providers.base import Pacing
from mcp_audio.sandbox._base import FakeUpstream
from mcp_audio.sandbox.serve import serve_in_thread
from mcp_audio.server import build_server
from tests.forked import ForkedProcess

# The key each fake accepts, per upstream.
KEYS = {
    "fal": "fal-test-key-0123456789abcdef",
    "voice_api": "voice-test-key-0123456789abcdef",
    "eigen": "eigen-test-key-0123456789abcdef",
}
FAL_KEY, VOICE_KEY, EIGEN_KEY = KEYS["fal"], KEYS["voice_api"], KEYS["eigen"]
VOICE_HOST = "voice-api.p.rapidapi.com"
CORE_TOOLS = {"qwen3_tts", "qwen3_tts_clone_voice", "whisper_transcribe", "lyria2_music", "elevenlabs_sound_effect"}

# Polls and retries in tests: the same logic, in milliseconds instead of seconds.
FAST = Pacing(
    poll_initial_s=0.02,
    poll_max_s=0.1,
    retry_attempts=5,
    retry_initial_s=0.01,
    retry_max_s=0.05,
    stream_idle_check_s=2.0,
    outage_retry_max_s=0.2,
    lease_s=2.0,
    webhook_check_s=0.5,
)

Fake = TypeVar("Fake", bound=FakeUpstream[Any])
CATALOG = load_catalog()  # immutable: one parse of the manifests serves every test's server
# What tools/list shows of the catalog: each tool no family lists, and each family tool, by kind.
FAMILY_MEMBERS = {m.capability.name for f in CATALOG.families.values() for m in f.members.values()}
LISTED_KINDS = {cap.name: cap.spec.kind for cap in CATALOG.capabilities.values() if cap.name not in FAMILY_MEMBERS}
LISTED_KINDS |= {family.name: family.kind for family in CATALOG.families.values()}


def server(
    settings: ServerSettings, catalog: Catalog | None = None, *, transport: Literal["stdio", "http"] = "stdio"
) -> MCPServer[Any]:
    """The real server, with test pacing."""
    return build_server(settings, catalog or CATALOG, transport=transport, pacing=FAST)


def served(fake: Fake) -> Iterator[Fake]:
    """Serve a loopback fake, with its base_url set (yield from it in a fixture)."""
    with serve_in_thread(fake.app) as url:
        fake.base_url = url
        yield fake


def text_of(result: Any) -> str:
    return "\n".join(item.text for item in result.content if isinstance(item, TextContent))


def body_of(result: Any) -> dict[str, Any]:
    assert result.structured_content is not None, text_of(result)
    body: dict[str, Any] = result.structured_content
    return body


# --- audio --------------------------------------------------------------------------------


async def completed(client: Any, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call `tool` and return its structured result, which must be a completed job."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    body = body_of(result)
    assert body["status"] == "completed", body
    return body


def mounted_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """`where` as a tmpfs of `size` (e.g. "2m") that really fills up, for a fixture to yield from;
    the test is skipped where mounting is not allowed (needs root or CAP_SYS_ADMIN)."""
    import pytest

    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.decode()[:200].strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


# --- Content Credentials (a c2pa Reader's JSON report) ----------------------------------------


def active(report: dict[str, Any]) -> dict[str, Any]:
    """The report's active manifest."""
    manifest: dict[str, Any] = report["manifests"][report["active_manifest"]]
    return manifest


def actions_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The actions of a manifest's one c2pa.actions assertion."""
    [assertion] = [a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions")]
    found: list[dict[str, Any]] = assertion["data"]["actions"]
    return found


def make_wav(seconds: float = 1.0, rate: int = 16000, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(int(seconds * rate) * 2 * channels))
    return buffer.getvalue()


def audio_payload(data: bytes) -> bytes:
    """A saved file's audio without what the server adds to it (Content Credentials and the
    AI-disclosure tag): a WAV's frames, or what follows the ID3v2 tags of an MP3."""
    if data[:4] == b"RIFF":
        with wave.open(io.BytesIO(data)) as w:
            return w.readframes(w.getnframes())
    while data[:3] == b"ID3" and len(data) >= 10:
        size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
        data = data[10 + size + (10 if data[5] & 0x10 else 0) :]
    return data


def make_mp3(frames: int = 38) -> bytes:
    """MPEG-1 Layer III frames, 128 kbit/s, 44.1 kHz, stereo: 1152 samples (26.1 ms) each."""
    return (b"\xff\xfb\x90\x04" + bytes(413)) * frames


def make_flac(seconds: float = 2.0, rate: int = 48000, channels: int = 2) -> bytes:
    """A FLAC stream header: `fLaC` and a STREAMINFO block (enough to read its properties)."""
    total = int(seconds * rate)
    packed = (rate << 44) | ((channels - 1) << 41) | ((16 - 1) << 36) | total
    info = struct.pack(">HH", 4096, 4096) + bytes(6) + packed.to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info


def make_lying_flac(seconds: float, claimed_s: float, rate: int = 8000, channels: int = 1) -> bytes:
    """A real FLAC of `seconds` of silence (encoded by PyAV) whose STREAMINFO claims only
    `claimed_s`: what FFmpeg reports as its duration, while decoding yields all of it."""
    import av
    import numpy as np

    layout = "mono" if channels == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout=layout)
        total, pos = int(seconds * rate), 0
        while pos < total:
            n = min(65536, total - pos)
            frame = av.AudioFrame.from_ndarray(np.zeros((channels, n), dtype=np.int16), format="s16p", layout=layout)
            frame.sample_rate, frame.pts = rate, pos
            pos += n
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = bytearray(buffer.getvalue())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first: its 36-bit sample count at bytes 21..25
    packed = int.from_bytes(data[21:26], "big")
    data[21:26] = ((packed & ~((1 << 36) - 1)) | int(claimed_s * rate)).to_bytes(5, "big")
    return bytes(data)


# --- secrets ------------------------------------------------------------------------------


def assert_secret_kept(secret: str, settings: ServerSettings, *texts: str) -> None:
    """`secret` is in none of `texts`, nor in the job database or its write-ahead log."""
    for text in texts:
        assert secret not in text
    wal = Path(str(settings.database_path) + "-wal")  # gone once a server closed the database
    for path in (settings.database_path, wal):
        if path.exists():
            assert secret.encode() not in path.read_bytes()


# --- processes ----------------------------------------------------------------------------

# What a 2025-era stdio client sends first.
HANDSHAKE: list[dict[str, Any]] = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
]


def env_for(settings: ServerSettings) -> dict[str, str]:
    """The environment a subprocess server needs to use these settings (keys included)."""
    drop = {upstream.key_env for upstream in REMOTE.values()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_AUDIO_") and k not in drop}
    for upstream in REMOTE.values():
        key = settings.key_of(upstream)
        if key is not None:
            env[upstream.key_env] = key
        for url in upstream.urls:
            env[url.env] = str(getattr(settings, url.field))
    env.update(
        MCP_AUDIO_DATA_DIR=str(settings.data_dir),
        MCP_AUDIO_OUTPUT_DIR=str(settings.output_dir),
        MCP_AUDIO_WAIT_S=str(settings.wait_s),
        MCP_AUDIO_DOWNLOAD=settings.download or "always",
    )
    if settings.allowed_dirs is not None:
        env["MCP_AUDIO_ALLOWED_DIRS"] = settings.allowed_dirs
    if settings.database_url is not None:
        env["MCP_AUDIO_DATABASE_URL"] = settings.database_url.get_secret_value()
    return env


def stdio_params(settings: ServerSettings) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_audio"], env=env_for(settings))


def start_tool_call(
    env: dict[str, str], name: str, arguments: dict[str, Any], log: Path | None = None
) -> ForkedProcess:
    """A stdio server process (forked warm: tests/forked.py) that has been sent the handshake and
    one tools/call (id 2), its stdin kept open; `log`: a file its stderr goes to."""
    proc = ForkedProcess([], env, stdin=True, stderr=log)
    assert proc.stdin is not None
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    for message in (*HANDSHAKE, call):
        proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    return proc


def stop(proc: subprocess.Popen[Any] | ForkedProcess) -> None:
    """Kill a server process and close its pipes (no ResourceWarning left behind)."""
    if isinstance(proc, ForkedProcess):
        proc.clean_up()
        return
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


async def finish_the_unfinished_job(client: Client) -> dict[str, Any]:
    """After a restart: the one unfinished job, waited for through get_job; its result."""
    listed = await client.call_tool("list_jobs", {"status": "unfinished"})
    assert listed.structured_content is not None
    [job] = listed.structured_content["jobs"]
    done = await client.call_tool("get_job", {"job_id": job["job_id"], "wait_s": 20})
    body: dict[str, Any] = done.structured_content or {}
    assert body["status"] == "completed", text_of(done)
    return body


def stated_advanced(schema: dict[str, Any]) -> dict[str, str]:
    """What a tool's `advanced` group states of each member, read back from its one line of words
    ("seed int; top_p, temperature 0-1; voice_setting {speed 0.5-2}"): member (dotted when
    nested) -> its words. Written apart from the server's code, so a test reads it as a model would."""
    group = schema["properties"].get("advanced")
    return {} if group is None else _stated(group["description"], "")


def _stated(line: str, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for clause in _top_level_split(line):
        names, _, words = clause.partition(" ")
        while names.endswith(","):  # "top_p, temperature 0-1": several members, one statement
            more, _, words = words.partition(" ")
            names += more
        for name in names.split(","):
            out[prefix + name] = words
            if words.startswith("{"):
                out |= _stated(words[1:-1], f"{prefix}{name}.")
    return out


def _top_level_split(line: str) -> list[str]:
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(line):
        quoted = not quoted if ch == '"' else quoted
        depth += 0 if quoted else {"{": 1, "}": -1}.get(ch, 0)
        if not quoted and depth == 0 and line.startswith("; ", i):
            parts.append(line[start:i])
            start = i + 2
    return [*parts, line[start:]]


# --- family tools, read back as a model reads them ----------------------------------------


def per_choice(description: str, choices: Collection[str]) -> tuple[str, dict[str, str]]:
    """A family tool's description of one argument (or of its `advanced` group) read back: the
    words said for every choice ("Code, e.g. en"), and the words of each "[a, b] words" group for
    each choice it names. A bracket that names anything but choices ("[Verse]") is part of the words.
    Written apart from the server's code, so a test reads it as a model would."""
    marks = [
        m
        for m in re.finditer(r"(?:^|(?<= ))\[([^\[\]]+)\](?: |$)", description)
        if all(name in choices for name in m.group(1).split(", "))
    ]
    if not marks:
        return description, {}
    said: dict[str, str] = {}
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        words = description[mark.end() : following.start() if following else None].strip()
        for name in mark.group(1).split(", "):
            assert name not in said, f"{name} has two groups in {description!r}"
            said[name] = words
    return description[: marks[0].start()].strip().removesuffix(";"), said


def own_words(words: str) -> tuple[str, str]:
    """One choice's words split into its own description of the argument and its bounds:
    "Language, e.g. english: text" -> ("Language, e.g. english", "text"). A choice whose argument
    means what the words said for every choice say has no description of its own."""
    description, colon, bounds = words.rpartition(": ")
    return (description, bounds) if colon else ("", words)


@dataclass
class Rules:
    """What a schema's description states for one choice of `chooser` (a family's `model`, or a
    tool's own endpoint input): arguments it does not take, those it requires, their shorter caps,
    and, for a family, that choice's own rules ("With model=ace-step: Only mode=song: tags.")."""

    not_taken: set[str] = field(default_factory=set)
    required: set[str] = field(default_factory=set)
    max_chars: dict[str, int] = field(default_factory=dict)
    own: str = ""
    unread: list[str] = field(default_factory=list)  # sentences in no known wording


_RULE = re.compile(
    r"(?P<rule>Only|Not|Required with|Required except with|At most (?P<n>\d+) chars with) "
    r"(?P<chooser>\w+)=(?P<choices>[^:]+): (?P<names>.+)"
)


def stated_rules(description: str, chooser: str, choice: str) -> Rules:
    """The rules of a schema's `description` for `chooser`=`choice` ("Only model=whisper|wizper:
    task. Required with model=maya: prompt."). A "With model=x:" block holds x's own rules (worded
    for its own chooser) until a sentence is about `chooser` again."""
    out, owner = Rules(), None
    for sentence in re.split(r"\.(?: |$)", description.strip()):
        if not sentence:
            continue
        within = re.fullmatch(rf"With {re.escape(chooser)}=([^:]+): (.+)", sentence)
        if within:
            owner, sentence = within.group(1), within.group(2)
        rule = _RULE.fullmatch(sentence)
        if rule is None:
            out.unread.append(sentence)
            continue
        if rule["chooser"] != chooser or within:
            if owner is None:
                out.unread.append(sentence)
            elif owner == choice:
                out.own += sentence + ". "
            continue
        owner = None
        names = rule["names"].split(", ")
        named = choice in rule["choices"].split("|")
        if (rule["rule"] == "Only" and not named) or (rule["rule"] == "Not" and named):
            out.not_taken |= set(names)
        elif (rule["rule"] == "Required with" and named) or (rule["rule"] == "Required except with" and not named):
            out.required |= set(names)
        elif rule["n"] and named:
            out.max_chars |= dict.fromkeys(names, int(rule["n"]))
    out.own = out.own.strip()
    return out


def stated_advanced_of(schema: dict[str, Any], choices: Collection[str], choice: str) -> dict[str, str]:
    """What a family tool's `advanced` group states of each member for one choice (see
    stated_advanced): its "[a, b] line" group, or the one line when it names no choices."""
    group = schema["properties"].get("advanced")
    if group is None:
        return {}
    every, said = per_choice(group["description"], choices)
    if not said:
        return _stated(every, "")
    assert not every, f"advanced: words for no choice: {every!r}"
    return _stated(said[choice], "") if choice in said else {}


def shown_as(tool: str) -> list[tuple[str, str | None, str | None]]:
    """Where tools/list shows a capability: (its own name, None, None) when no family lists it, else
    per `model` choice that runs it: (the family tool, the choice, the endpoint choice it fixes)."""
    if tool not in FAMILY_MEMBERS:
        return [(tool, None, None)]
    return [
        (family.name, choice, member.fixed)
        for family in CATALOG.families.values()
        for choice, member in family.members.items()
        if member.capability.name == tool
    ]
