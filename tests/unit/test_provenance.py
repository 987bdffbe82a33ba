"""Content Credentials (mcp_audio.files.provenance): real audio files made with the post engine or
PyAV, signed, then read back with c2pa's own Reader and with mutagen; a byte of audio changed
after signing must be reported as tampered."""

from __future__ import annotations

import json
import os
import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mcp_audio.core.errors import ConfigError
from mcp_audio.files.provenance import (
    CAPTURE,
    EMBEDDED,
    SIDECAR,
    TRAINED,
    Creation,
    Ingredient,
    SigningIdentity,
    load_signer,
    read_provenance,
    sign_audio,
)
from mcp_audio.post import ops
from mcp_audio.post.engine import AudioWriter, resolve_output
from tests.helpers import actions_of, active

NOW = datetime(2026, 8, 3, 12, 0, tzinfo=UTC)
MODEL = Creation("fal", "fal-ai/elevenlabs/tts/eleven-v3")
SR = 48000


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> SigningIdentity:
    return load_signer(tmp_path_factory.mktemp("data"))


def tone(path: Path, fmt: str, codec: str | None = None, seconds: float = 0.4, freq: float = 440.0) -> Path:
    """A short stereo tone written by the post engine."""
    out, spec = resolve_output(path, fmt, codec)
    t = np.arange(round(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    with AudioWriter(out, spec, sample_rate=SR, channels=2) as writer:
        writer.write(np.vstack([x, x]).astype(np.float32))
    return out


def pyav_file(path: Path, container: str, codec: str, seconds: float = 0.4) -> Path:
    """Formats the engine does not write (ADTS AAC, AIFF), through PyAV directly."""
    fmt = "fltp" if codec == "aac" else "s16"
    with av.open(str(path), "w", format=container) as out:
        stream: Any = out.add_stream(codec, rate=SR, layout="stereo")
        n, done = 1024, 0
        while done < seconds * SR:
            t = (np.arange(done, done + n) / SR).astype(np.float32)
            x = 0.3 * np.sin(2 * np.pi * 330 * t)
            data = np.vstack([x, x]) if fmt == "fltp" else (np.vstack([x, x]).T.reshape(1, -1) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(
                data.astype(np.float32) if fmt == "fltp" else data, format=fmt, layout="stereo"
            )
            frame.sample_rate, frame.pts = SR, done
            for packet in stream.encode(frame):
                out.mux(packet)
            done += n
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def make(tmp_path: Path, kind: str) -> Path:
    if kind == "m4a-alac":
        return tone(tmp_path / "gen.m4a", "m4a", "alac")
    if kind == "m4b":
        return tone(tmp_path / "gen.m4a", "m4a").rename(tmp_path / "gen.m4b")
    if kind == "aac":
        return pyav_file(tmp_path / "gen.aac", "adts", "aac")
    if kind == "aiff":
        return pyav_file(tmp_path / "gen.aiff", "aiff", "pcm_s16be")
    return tone(tmp_path / f"gen.{kind}", kind)


def c2pa_json(path: Path, sidecar: Path | None = None) -> dict[str, Any]:
    """The manifest store as c2pa's own Reader gives it (not through our module)."""
    mime = {**EMBEDDED, **SIDECAR}[path.suffix]
    manifest = sidecar.read_bytes() if sidecar else None
    with open(path, "rb") as stream, c2pa.Reader(mime, stream, manifest) as reader:
        data: dict[str, Any] = json.loads(reader.json())
    return data


def disclosure_tag(path: Path) -> str | None:
    """The AI-disclosure tag as a tag reader sees it (mutagen; RIFF INFO parsed by hand)."""
    import mutagen

    if path.suffix == ".wav":
        data = path.read_bytes()
        at = data.find(b"LIST", 12)
        while at != -1 and data[at + 8 : at + 12] != b"INFO":
            at = data.find(b"LIST", at + 4)
        if at == -1:
            return None
        icmt = data.find(b"ICMT", at)
        size = int.from_bytes(data[icmt + 4 : icmt + 8], "little")
        return data[icmt + 8 : icmt + 8 + size].rstrip(b"\0").decode()
    audio: Any = mutagen.File(path)
    tags = audio.tags
    if path.suffix in (".mp3", ".aiff"):
        return str(tags["TXXX:AI_DISCLOSURE"].text[0])
    if path.suffix in (".m4a", ".m4b"):
        return bytes(tags["----:com.apple.iTunes:AI_DISCLOSURE"][0]).decode()
    if path.suffix in (".flac", ".ogg"):
        return str(tags["AI_DISCLOSURE"][0])
    return None


def flip_audio_byte(path: Path) -> None:
    """Change one byte inside an audio packet (located by the demuxer, not guessed)."""
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(audio=0) if p.size > 16 and p.pos is not None and p.pos >= 0]
    packet = packets[len(packets) // 2]
    assert packet.pos is not None
    offset = packet.pos + packet.size // 2
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))


KINDS = ["wav", "mp3", "flac", "ogg", "m4a", "m4a-alac", "m4b", "aac", "aiff"]


def test_the_format_table_matches_what_c2pa_can_embed() -> None:
    supported = set(c2pa.Builder.get_supported_mime_types())
    assert set(EMBEDDED.values()) <= supported
    assert not set(SIDECAR.values()) & supported


@pytest.mark.parametrize("kind", KINDS)
def test_a_generated_file_states_the_model_in_every_format(tmp_path: Path, dev: SigningIdentity, kind: str) -> None:
    path = make(tmp_path, kind)
    result = sign_audio(path, identity=dev, created=MODEL, title=path.name, now=NOW, software="mcp-audio 9.9")

    assert result.embedded is (path.suffix in EMBEDDED)
    assert (result.sidecar is None) is result.embedded
    if result.sidecar is not None:
        assert result.sidecar == Path(f"{path}.c2pa") and result.sidecar.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left

    store = c2pa_json(path, result.sidecar)
    manifest = active(store)
    [created] = actions_of(manifest)
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == TRAINED
    assert created["softwareAgent"]["name"] == MODEL.endpoint
    assert created["when"] == NOW.isoformat()
    assert manifest["claim_generator_info"][0]["name"] == "mcp-audio"
    assert store["validation_state"] == "Valid"  # well-formed; the dev certificate is not trusted
    assert [f["code"] for f in store["validation_results"]["activeManifest"]["failure"]] == [
        "signingCredential.untrusted"
    ]

    report = read_provenance(path)  # finds the sidecar by its name
    assert report.has_credentials and report.signature_valid and not report.tampered and not report.trusted
    assert report.ai_generated and report.ai_models == result.models == (MODEL.endpoint,)
    assert report.embedded is result.embedded
    assert "AI-generated" in report.summary and "not from a trusted signer" in report.summary

    expected = f"AI-generated audio (model: {MODEL.model})"
    assert result.disclosure == (None if kind == "aac" else expected)
    assert disclosure_tag(path) == result.disclosure
    with av.open(str(path)) as container:  # still a playable file
        assert sum(f.samples for f in container.decode(audio=0)) > 0.3 * SR


@pytest.mark.parametrize("kind", KINDS)
def test_one_changed_byte_of_audio_is_reported_as_tampered(tmp_path: Path, dev: SigningIdentity, kind: str) -> None:
    path = make(tmp_path, kind)
    sign_audio(path, identity=dev, created=MODEL, title=path.name, now=NOW)
    assert not read_provenance(path).tampered
    flip_audio_byte(path)

    report = read_provenance(path)
    assert report.has_credentials and report.tampered and report.validation_state == "Invalid"
    assert report.signature_valid  # the claim itself is intact; the content is not
    assert any("Hash.mismatch" in p for p in report.problems)
    assert report.summary.endswith("tampered: the content changed after it was signed")


def test_edits_keep_the_chain_generated_then_master_then_join_with_a_recording(
    tmp_path: Path, dev: SigningIdentity
) -> None:
    generated = tone(tmp_path / "speech.ogg", "ogg")  # a sidecar format: its manifest must still travel
    sign_audio(generated, identity=dev, created=MODEL, title="speech.ogg", now=NOW)

    mastered = ops.master(generated, tmp_path / "mastered.flac").path
    first = sign_audio(mastered, identity=dev, ingredients=[Ingredient(generated)], title="mastered", now=NOW,
                       operation="master")  # fmt: skip
    assert first.ai_generated and first.disclosure == f"Contains AI-generated audio (model: {MODEL.endpoint})"

    recorded = tone(tmp_path / "interview.wav", "wav", freq=220)
    joined = ops.join([mastered, recorded], tmp_path / "episode.mp3").path
    sign_audio(joined, identity=dev, ingredients=[Ingredient(mastered), Ingredient(recorded, captured=True)],
               title="episode", now=NOW + timedelta(minutes=1), operation="join")  # fmt: skip

    store = c2pa_json(joined)
    assert store["validation_state"] == "Valid"
    top = active(store)
    created, placed_master, placed_recording, edited = actions_of(top)
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"].endswith("/compositeWithTrainedAlgorithmicMedia")  # says both
    assert placed_master["action"] == placed_recording["action"] == "c2pa.placed"
    assert "digitalSourceType" not in placed_master  # its own manifest says what it is
    assert placed_recording["digitalSourceType"] == CAPTURE
    assert edited["action"] == "c2pa.edited" and edited["description"] == "mcp-audio join"

    master_ing, recording_ing = top["ingredients"]
    assert recording_ing["title"] == "interview.wav" and "active_manifest" not in recording_ing
    assert master_ing["relationship"] == "componentOf"
    master_manifest = store["manifests"][master_ing["active_manifest"]]
    opened, master_edit = actions_of(master_manifest)
    assert opened["action"] == "c2pa.opened" and master_edit["action"] == "c2pa.edited"
    [speech_ing] = master_manifest["ingredients"]
    assert speech_ing["relationship"] == "parentOf" and speech_ing["title"] == "speech.ogg"
    speech_manifest = store["manifests"][speech_ing["active_manifest"]]
    [speech_created] = actions_of(speech_manifest)
    assert speech_created["digitalSourceType"] == TRAINED
    assert speech_created["softwareAgent"]["name"] == MODEL.endpoint

    report = read_provenance(joined)
    assert report.ai_generated and report.ai_models == (MODEL.endpoint,)
    assert report.manifest is not None
    chain = report.manifest.ingredients[0].manifest
    assert chain is not None and chain.ingredients[0].manifest is not None
    assert chain.ingredients[0].manifest.actions[0].software_agent == MODEL.endpoint
    assert report.manifest.ingredients[1].manifest is None
    assert disclosure_tag(joined) == f"Contains AI-generated audio (model: {MODEL.endpoint})"


def test_an_edit_of_recordings_only_is_not_marked_as_ai(tmp_path: Path, dev: SigningIdentity) -> None:
    recorded = tone(tmp_path / "take.wav", "wav")
    trimmed = ops.trim(recorded, tmp_path / "take-trimmed.flac", start_s=0.1).path
    result = sign_audio(trimmed, identity=dev, ingredients=[Ingredient(recorded, captured=True)], title="t",
                        now=NOW, operation="trim")  # fmt: skip
    assert not result.ai_generated and result.disclosure is None
    opened, edited = actions_of(active(c2pa_json(trimmed)))
    assert opened["digitalSourceType"] == CAPTURE and "digitalSourceType" not in edited
    assert not read_provenance(trimmed).ai_generated


def operator_chain(tmp_path: Path, common_name: str) -> tuple[Path, Path, bytes]:
    """An Ed25519 CA and leaf, as a certificate authority would issue them (cert, key, root)."""
    now = datetime.now(UTC)
    ca_key, leaf_key = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Op")]
        )

    def base(subject: str, issuer: x509.Name, key: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer).public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        )  # fmt: skip

    ca = (
        base("Operator Root", name("Operator Root"), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, None)
    )
    leaf = (
        base(common_name, ca.subject, leaf_key.public_key())
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, None)
    )
    pem = serialization.Encoding.PEM
    cert, key = tmp_path / "op-chain.pem", tmp_path / "op-key.pem"
    cert.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert, key, ca.public_bytes(pem)


def test_the_development_certificate_is_made_once_and_reused(tmp_path: Path) -> None:
    first = load_signer(tmp_path)
    files = sorted((tmp_path / "c2pa-dev").iterdir())
    assert [f.name for f in files] == ["ca.pem", "chain.pem", "key.pem"]
    assert stat.S_IMODE((tmp_path / "c2pa-dev" / "key.pem").stat().st_mode) == 0o600
    second = load_signer(tmp_path)
    assert second == first and second.key_pem == first.key_pem and first.development
    assert "PRIVATE" not in repr(first)

    path = tone(tmp_path / "a.wav", "wav")
    sign_audio(path, identity=second, created=MODEL, title="a", now=NOW)
    assert not read_provenance(path).trusted
    assert first.ca_pem is not None
    trusted = read_provenance(path, trust_anchors=first.ca_pem)
    assert trusted.trusted and trusted.validation_state == "Trusted"


def test_the_operator_certificate_is_used_when_given(tmp_path: Path) -> None:
    cert, key, root = operator_chain(tmp_path, "Example Studio signer")
    identity = load_signer(tmp_path / "data", cert, key)
    assert identity.alg == "ed25519" and not identity.development
    assert not (tmp_path / "data" / "c2pa-dev").exists()

    path = tone(tmp_path / "a.flac", "flac")
    sign_audio(path, identity=identity, created=MODEL, title="a", now=NOW)
    info = active(c2pa_json(path))["signature_info"]
    assert info["common_name"] == "Example Studio signer" and info["alg"].lower() == "ed25519"
    assert read_provenance(path, trust_anchors=root).trusted

    other_key = tmp_path / "other.pem"
    other_key.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ConfigError, match="MCP_AUDIO_C2PA_KEY is not the key"):
        load_signer(tmp_path, cert, other_key)
    with pytest.raises(ConfigError, match="must be set together"):
        load_signer(tmp_path, cert, None)


def test_an_upstreams_credentials_are_kept_as_the_parent(tmp_path: Path, dev: SigningIdentity) -> None:
    """An ElevenLabs-like MP3 that arrives signed: saving keeps its manifest, and so does a trim."""
    cert, key, _ = operator_chain(tmp_path, "Upstream Labs")
    upstream = load_signer(tmp_path / "up", cert, key)
    path = tone(tmp_path / "upstream.mp3", "mp3")
    sign_audio(
        path, identity=upstream, created=Creation("labs", "v3"), title="tts", now=NOW, software="UpstreamLabs 2.0"
    )

    saved = sign_audio(path, identity=dev, created=MODEL, title="saved", now=NOW)
    assert saved.disclosure is not None
    store = c2pa_json(path)
    top = active(store)
    assert top["signature_info"]["common_name"] == "mcp-audio development signer"
    [parent] = top["ingredients"]
    assert parent["relationship"] == "parentOf"
    theirs = store["manifests"][parent["active_manifest"]]
    assert theirs["claim_generator_info"][0]["name"] == "UpstreamLabs"
    assert theirs["signature_info"]["common_name"] == "Upstream Labs"
    assert actions_of(top)[0]["softwareAgent"]["name"] == MODEL.endpoint

    trimmed = ops.trim(path, tmp_path / "trimmed.wav", start_s=0.05).path
    sign_audio(trimmed, identity=dev, ingredients=[Ingredient(path)], title="t", now=NOW, operation="trim")
    report = read_provenance(trimmed)
    assert report.signature_valid and not report.tampered
    assert report.manifest is not None
    saved_summary = report.manifest.ingredients[0].manifest
    assert saved_summary is not None and saved_summary.ingredients[0].manifest is not None
    assert saved_summary.ingredients[0].manifest.claim_generator == "UpstreamLabs 2.0"
    assert set(report.ai_models) == {MODEL.endpoint, "v3"}


def test_files_without_credentials_say_so(tmp_path: Path) -> None:
    for path in (tone(tmp_path / "plain.wav", "wav"), tone(tmp_path / "plain.ogg", "ogg")):
        report = read_provenance(path)
        assert not report.has_credentials and not report.ai_generated and report.manifest is None
        assert report.summary.startswith("no Content Credentials")
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(os.urandom(2000))
    assert not read_provenance(junk).has_credentials


def test_a_tampered_input_keeps_its_problem_in_the_ingredient(tmp_path: Path, dev: SigningIdentity) -> None:
    path = tone(tmp_path / "g.wav", "wav")
    sign_audio(path, identity=dev, created=MODEL, title="g", now=NOW)
    flip_audio_byte(path)
    out = shutil.copy(path, tmp_path / "copy.wav")
    out_path = ops.master(Path(out), tmp_path / "m.flac").path
    sign_audio(out_path, identity=dev, ingredients=[Ingredient(path)], title="m", now=NOW, operation="master")
    report = read_provenance(out_path)
    assert report.manifest is not None and not report.tampered
    [ingredient] = report.manifest.ingredients
    assert any("Hash.mismatch" in p for p in ingredient.problems)
