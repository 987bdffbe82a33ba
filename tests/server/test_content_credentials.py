"""Content Credentials (C2PA) on every audio file the server saves, through a real MCP client
against the loopback fakes: a generated file says which model made it and when; edits keep
every input as an ingredient (generated and recorded); every format the finishing tools write
carries them (embedded, or a `.c2pa` sidecar that is an output file too); `audio_provenance`
reads any file back, reporting a changed byte as tampered; MCP_AUDIO_PROVENANCE=off writes none.

Files are read back with c2pa's own Reader (offline settings), not with our summary of it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import c2pa
import pytest
from mcp import Client

from mcp_audio.config import ServerSettings, Settings
from mcp_audio.core.media import sniff_content_type
from mcp_audio.files.provenance import Creation, load_signer, sign_audio
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import actions_of, active, body_of, completed, make_wav, server, text_of
from tests.server.test_post_tools import noise, tone, wav_bytes

pytestmark = pytest.mark.anyio

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
MIME = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac", ".m4a": "audio/mp4", ".ogg": "audio/ogg"}
OFFLINE = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}


# --- reading back, with c2pa itself -----------------------------------------------------------


def c2pa_read(path: Path, sidecar: Path | None = None) -> dict[str, Any]:
    """c2pa's own JSON report of a file (its sidecar's manifest when given)."""
    manifest = sidecar.read_bytes() if sidecar is not None else None
    with (
        c2pa.Settings.from_dict(OFFLINE) as settings,
        c2pa.Context(settings) as ctx,
        path.open("rb") as stream,
        c2pa.Reader(MIME[path.suffix], stream, manifest, context=ctx) as reader,
    ):
        report: dict[str, Any] = json.loads(reader.json())
    return report


def ingredient_manifest(report: dict[str, Any], ingredient: dict[str, Any]) -> dict[str, Any] | None:
    label = ingredient.get("active_manifest")
    return report["manifests"][label] if label else None


def failures(report: dict[str, Any]) -> list[str]:
    """c2pa's validation failures, but for the development certificate's expected "untrusted"."""
    found = report.get("validation_results", {}).get("activeManifest", {}).get("failure", [])
    return [f["code"] for f in found if f["code"] != "signingCredential.untrusted"]


# --- fixtures and calls -----------------------------------------------------------------------


@pytest.fixture
def saving(settings: ServerSettings, rec_dir: Path) -> ServerSettings:
    """The sandbox's settings with files saved and nothing about provenance configured."""
    return settings.model_copy(update={"download": "always", "allowed_dirs": str(rec_dir), "wait_s": 60})


def generated_wav(fake_fal: FakeFal, seconds: float = 3.0) -> bytes:
    """lyria2_music answers with this WAV (a tone: the finishing tools can measure it)."""
    data = wav_bytes(tone(seconds, 330, 0.2))
    url = fake_fal.put_file("gen/music.wav", data, "audio/wav")
    fake_fal.script("fal-ai/lyria2", output={"audio": {"url": url, "content_type": "audio/wav", "file_name": "m.wav"}})
    return data


def audio_of(body: dict[str, Any]) -> dict[str, Any]:
    [item] = [f for f in body["files"] if f["content_type"] != "application/c2pa"]
    path = Path(item["path"])
    # size and hash are of the signed bytes, as saved
    assert item["file_size"] == path.stat().st_size
    assert item["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    return item


def frames(data: bytes) -> bytes:
    with wave.open(io.BytesIO(data)) as w:
        return w.readframes(w.getnframes())


# --- generated files ------------------------------------------------------------------------


async def test_a_generated_file_says_which_model_made_it_and_when(saving: ServerSettings, fake_fal: FakeFal) -> None:
    sent = generated_wav(fake_fal)
    before = datetime.now(UTC) - timedelta(seconds=1)
    async with Client(server(saving)) as client:
        result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    body = body_of(result)
    item = audio_of(body)
    path = Path(item["path"])
    assert frames(path.read_bytes()) == frames(sent)  # the audio is the model's, untouched
    assert "Content Credentials: embedded; tagged: AI-generated audio (model: fal-ai/lyria2 via fal)" in text_of(result)
    credentials = item["credentials"]
    assert credentials["embedded"] is True and credentials.get("sidecar") is None
    assert credentials["ai_generated"] is True and credentials["models"] == ["fal-ai/lyria2"]
    assert credentials["disclosure"] == "AI-generated audio (model: fal-ai/lyria2 via fal)"
    assert "development certificate" in credentials["signer"]  # no configuration: the dev certificate

    report = c2pa_read(path)
    assert report["validation_state"] == "Valid" and not failures(report)  # well-formed, not trusted
    [created] = [a for a in actions_of(active(report)) if a["action"] == "c2pa.created"]
    assert created["digitalSourceType"] == TRAINED
    assert created["softwareAgent"]["name"] == "fal-ai/lyria2" and created["softwareAgent"]["upstream"] == "fal"
    assert before <= datetime.fromisoformat(created["when"]) <= datetime.now(UTC)
    assert active(report)["claim_generator_info"][0]["name"] == "mcp-audio"
    assert (saving.data_dir / "c2pa-dev" / "chain.pem").is_file()  # made once, in the data dir


async def test_an_upstream_manifest_is_kept_as_the_parent(
    saving: ServerSettings, fake_fal: FakeFal, tmp_path: Path
) -> None:
    """An upstream that signs its own output (as ElevenLabs and Lyria do): our manifest keeps
    theirs as its parent ingredient rather than replacing it."""
    theirs = tmp_path / "upstream.wav"
    theirs.write_bytes(wav_bytes(tone(1.0, 500, 0.2)))
    sign_audio(
        theirs,
        identity=load_signer(tmp_path / "upstream-ca"),
        title="upstream output",
        now=datetime.now(UTC),
        created=Creation("elevenlabs", "eleven-v3"),
        software="upstream-studio 9",
    )
    url = fake_fal.put_file("gen/signed.wav", theirs.read_bytes(), "audio/wav")
    fake_fal.script("fal-ai/lyria2", output={"audio": {"url": url, "content_type": "audio/wav"}})
    async with Client(server(saving)) as client:
        body = await completed(client, "lyria2_music", {"prompt": "calm"})
    report = c2pa_read(Path(audio_of(body)["path"]))
    [parent] = active(report)["ingredients"]
    assert parent["relationship"] == "parentOf"
    upstream = ingredient_manifest(report, parent)
    assert upstream is not None and upstream["claim_generator_info"][0]["name"] == "upstream-studio"
    assert [a["softwareAgent"]["name"] for a in actions_of(upstream) if a["action"] == "c2pa.created"] == ["eleven-v3"]


# --- edits keep the history ---------------------------------------------------------------


async def test_a_master_then_a_join_with_a_recording_keeps_both_in_the_chain(
    saving: ServerSettings, fake_fal: FakeFal, rec_dir: Path
) -> None:
    generated_wav(fake_fal)
    recording = rec_dir / "my-voice.wav"
    recording.write_bytes(wav_bytes(noise(2.0) + tone(2.0, 200, 0.2)))
    async with Client(server(saving)) as client:
        music = await completed(client, "lyria2_music", {"prompt": "calm"})
        master = await completed(client, "audio_master", {"audio_url": f"jobs://{music['job_id']}"})
        joined = await completed(
            client, "audio_join", {"audio_urls": [audio_of(master)["resource"], str(recording)], "format": "wav"}
        )
        read = await completed(client, "audio_provenance", {"audio_url": f"jobs://{joined['job_id']}"})

    report = c2pa_read(Path(audio_of(joined)["path"]))
    assert not failures(report)
    manifest = active(report)
    kinds = [a["action"] for a in actions_of(manifest)]
    assert kinds == ["c2pa.created", "c2pa.placed", "c2pa.placed", "c2pa.edited"]
    placed = [a for a in actions_of(manifest) if a["action"] == "c2pa.placed"]
    assert placed[1]["digitalSourceType"] == CAPTURE  # the caller's own recording
    first, second = manifest["ingredients"]
    assert [first["relationship"], second["relationship"]] == ["componentOf", "componentOf"]
    assert second["title"] == "my-voice.wav" and ingredient_manifest(report, second) is None
    assert str(rec_dir) not in json.dumps(manifest)  # a name, never the caller's local path
    # the mastered part: opened from the generated file, which says which model made it
    mastered = ingredient_manifest(report, first)
    assert mastered is not None
    assert [a["action"] for a in actions_of(mastered)][:2] == ["c2pa.opened", "c2pa.edited"]
    [generated] = mastered["ingredients"]
    made = ingredient_manifest(report, generated)
    assert made is not None
    [created] = [a for a in actions_of(made) if a["action"] == "c2pa.created"]
    assert created["softwareAgent"]["name"] == "fal-ai/lyria2" and created["digitalSourceType"] == TRAINED

    out = read["output"]  # the tool says the same, for an agent
    assert out["has_credentials"] and out["signature_valid"] and not out["tampered"] and not out["trusted"]
    assert out["ai_generated"] and out["ai_models"] == ["fal-ai/lyria2"]
    assert out["validation_state"] == "Valid" and "not from a trusted signer" in out["summary"]
    assert [i["title"] for i in out["manifest"]["ingredients"]] == [first["title"], "my-voice.wav"]
    assert audio_of(joined)["credentials"]["disclosure"] == "Contains AI-generated audio (model: fal-ai/lyria2)"


@pytest.mark.parametrize("fmt", ["mp3", "wav", "flac", "ogg", "m4a"])
async def test_every_format_the_finishing_tools_write_carries_credentials(
    saving: ServerSettings, fake_fal: FakeFal, fmt: str
) -> None:
    generated_wav(fake_fal)
    async with Client(server(saving)) as client:
        music = await completed(client, "lyria2_music", {"prompt": "calm"})
        trimmed = await completed(
            client, "audio_trim", {"audio_url": f"jobs://{music['job_id']}", "end_s": 2.0, "format": fmt}
        )
        item = audio_of(trimmed)
        read = (await completed(client, "audio_provenance", {"audio_url": item["resource"]}))["output"]
        sidecars = [f for f in trimmed["files"] if f["content_type"] == "application/c2pa"]
        served = [await client.read_resource(f["resource"]) for f in sidecars]
    path = Path(item["path"])
    credentials = item["credentials"]
    assert credentials["ai_generated"] and credentials["models"] == ["fal-ai/lyria2"]
    if fmt == "ogg":  # Ogg cannot embed a manifest: a sidecar, named in the result and an output file
        [sidecar] = sidecars
        assert credentials["embedded"] is False and credentials["sidecar"] == path.name + ".c2pa"
        assert sidecar["file_name"] == credentials["sidecar"] and sidecar["path"] == f"{path}.c2pa"
        assert sidecar["resource"] == f"files://{trimmed['job_id']}/{path.name}.c2pa"
        blob = base64.b64decode(served[0].contents[0].blob)  # type: ignore[union-attr]
        assert blob == Path(sidecar["path"]).read_bytes() and sidecar["sha256"] == hashlib.sha256(blob).hexdigest()
        report = c2pa_read(path, Path(sidecar["path"]))
    else:
        assert credentials["embedded"] is True and not sidecars
        report = c2pa_read(path)
        assert sniff_content_type(path.read_bytes()) == MIME[f".{fmt}"]  # still recognised as what it is
    assert not failures(report)
    assert [a["action"] for a in actions_of(active(report))][:2] == ["c2pa.opened", "c2pa.edited"]
    assert read["has_credentials"] and read["signature_valid"] and not read["tampered"]
    assert read["embedded"] is (fmt != "ogg") and read["ai_models"] == ["fal-ai/lyria2"]


# --- reading any file -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav", "ogg"])
async def test_a_byte_changed_after_signing_is_reported_as_tampered(
    saving: ServerSettings, fake_fal: FakeFal, fmt: str
) -> None:
    generated_wav(fake_fal, seconds=2.0)
    async with Client(server(saving)) as client:
        music = await completed(client, "lyria2_music", {"prompt": "calm"})
        made = await completed(client, "audio_trim", {"audio_url": f"jobs://{music['job_id']}", "format": fmt})
        reference = audio_of(made)["resource"]
        before = (await completed(client, "audio_provenance", {"audio_url": reference}))["output"]
        path = Path(audio_of(made)["path"])
        data = bytearray(path.read_bytes())
        data[len(data) * 2 // 3] ^= 0x01  # one bit of the audio
        path.write_bytes(bytes(data))
        after = (await completed(client, "audio_provenance", {"audio_url": reference}))["output"]
    assert before["signature_valid"] and not before["tampered"]
    assert after["tampered"] is True and after["has_credentials"] is True
    assert after["summary"].endswith("tampered: the content changed after it was signed")
    assert any("mismatch" in problem for problem in after["problems"])


async def test_a_file_without_credentials_says_so(saving: ServerSettings, rec_dir: Path) -> None:
    (rec_dir / "plain.wav").write_bytes(make_wav(0.5))
    async with Client(server(saving)) as client:
        read = await completed(client, "audio_provenance", {"audio_url": str(rec_dir / "plain.wav")})
    out = read["output"]
    assert out["has_credentials"] is False and out["manifest"] is None and not out["ai_generated"]
    assert out["summary"] == "no Content Credentials in this file"
    assert "files" not in read or read["files"] == []


async def test_an_operator_certificate_signs_and_its_root_makes_it_trusted(
    saving: ServerSettings, fake_fal: FakeFal, tmp_path: Path
) -> None:
    """MCP_AUDIO_C2PA_CERT/KEY sign instead of the development certificate; with the root in
    MCP_AUDIO_C2PA_TRUST_ANCHORS the reader reports the file as trusted."""
    load_signer(tmp_path / "operator")  # a CA and a signing certificate, standing in for a real one
    pki = tmp_path / "operator" / "c2pa-dev"
    configured = saving.model_copy(
        update={
            "c2pa_cert": pki / "chain.pem",
            "c2pa_key": pki / "key.pem",
            "c2pa_trust_anchors": pki / "ca.pem",
        }
    )
    generated_wav(fake_fal)
    async with Client(server(configured)) as client:
        music = await completed(client, "lyria2_music", {"prompt": "calm"})
        read = (await completed(client, "audio_provenance", {"audio_url": f"jobs://{music['job_id']}"}))["output"]
    assert audio_of(music)["credentials"]["signer"].startswith("O=mcp-audio development (untrusted),CN=")
    assert not (saving.data_dir / "c2pa-dev").exists()  # no development certificate was made
    assert read["trusted"] is True and read["validation_state"] == "Trusted"
    assert read["summary"].endswith("valid and trusted")


def test_a_certificate_without_its_key_is_a_clear_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MCP_AUDIO_C2PA_CERT and MCP_AUDIO_C2PA_KEY must be set together"):
        Settings(data_dir=tmp_path, c2pa_cert=tmp_path / "chain.pem")
    with pytest.raises(ValueError, match="provenance"):
        Settings(data_dir=tmp_path, provenance="maybe")
    assert Settings(data_dir=tmp_path, provenance="OFF").provenance == "off"


# --- turned off -----------------------------------------------------------------------------


async def test_provenance_off_writes_no_credentials(saving: ServerSettings, fake_fal: FakeFal) -> None:
    sent = generated_wav(fake_fal)
    off = saving.model_copy(update={"provenance": "off"})
    async with Client(server(off)) as client:
        music = await completed(client, "lyria2_music", {"prompt": "calm"})
        trimmed = await completed(client, "audio_trim", {"audio_url": f"jobs://{music['job_id']}", "format": "ogg"})
    item = audio_of(music)
    assert Path(item["path"]).read_bytes() == sent and "credentials" not in item
    [ogg] = trimmed["files"]  # no sidecar
    assert "credentials" not in ogg and not Path(f"{ogg['path']}.c2pa").exists()
    with pytest.raises(c2pa.C2paError):
        c2pa_read(Path(item["path"]))
    assert not (saving.data_dir / "c2pa-dev").exists()
