"""Resources as a client lists and reads them: distinct names and descriptions, the Voice API's
live model list, and saved files read with their own content type."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_audio.sandbox.voice_api import FakeVoiceApi
from tests.helpers import CATALOG, body_of, make_wav, text_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def client(every_client: Client) -> Client:
    return every_client


async def test_every_resource_has_its_own_name_and_description(client: Client) -> None:
    resources = (await client.list_resources()).resources
    templates = (await client.list_resource_templates()).resource_templates
    names = [r.name for r in resources] + [t.name for t in templates]
    descriptions = [r.description for r in resources] + [t.description for t in templates]
    assert len(names) == len(set(names)), names
    assert len(descriptions) == len(set(descriptions)), descriptions
    voices = {str(r.uri): r for r in resources if str(r.uri).startswith("voices://")}
    assert set(voices) >= {f"voices://{family}" for family in CATALOG.voice_families} | {"voices://cloned"}
    assert (
        voices["voices://qwen3-tts"].description
        == "9 preset voices for `voice` of speak with model 'qwen3': each one's name and notes."
    )
    assert "`voice` of speak with model 'elevenlabs'" in (voices["voices://elevenlabs"].description or "")
    assert (voices["voices://eigen"].description or "").startswith("No presets: voices saved by clone tools")
    assert all("preset voices of" not in (r.description or "").lower() for r in voices.values())


async def test_voice_api_listing_is_the_live_model_list(client: Client, fake_voice: FakeVoiceApi) -> None:
    fake_voice.models = [{"id": "m-only", "title": "Only One", "languages": ["de"], "tags": ["calm"]}]
    listed = json.loads(text_of_resource(await client.read_resource("voices://voice-api")))
    assert [model["id"] for model in listed] == ["m-only"]
    filtered = json.loads(text_of_resource(await client.read_resource("voices://voice-api?language=de")))
    assert [model["id"] for model in filtered] == ["m-only"]
    assert [r.query for r in fake_voice.requests_of("models")][-1] == {"language": "de"}


@pytest.mark.parametrize(("fmt", "content_type"), [("wav", "audio/wav"), ("mp3", "audio/mpeg"), ("flac", "audio/flac")])
async def test_a_saved_file_is_read_with_its_content_type(
    client: Client, rec_dir: Path, fmt: str, content_type: str
) -> None:
    (rec_dir / "a.wav").write_bytes(make_wav(1.0))
    result = await client.call_tool("audio_trim", {"audio_url": str(rec_dir / "a.wav"), "format": fmt})
    assert not result.is_error, text_of(result)
    [item] = body_of(result)["files"]
    [content] = (await client.read_resource(item["resource"])).contents
    assert content.mime_type == content_type == item["content_type"]
    assert base64.b64decode(content.blob) == Path(item["path"]).read_bytes()  # type: ignore[union-attr]


def text_of_resource(result: Any) -> str:
    [content] = result.contents
    return str(content.text)
