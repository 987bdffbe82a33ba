"""C2PA Content Credentials for the audio files the server saves (EU AI Act Art. 50(2) marking).

`load_signer` gives the signing identity: the operator's PEM certificate chain and key, or a
development chain (CA + leaf) made once in the data dir. `sign_audio` writes a manifest into a
file (in place, atomically) where C2PA defines embedding for the format, else into a sidecar
`<file>.c2pa`; before signing it writes a plain AI-disclosure tag for players that read only
tags, so the signature covers the final bytes. `read_provenance` (from post/credentials.py,
where the reading lives) reads any file's credentials.

c2pa (a native library) is imported inside the functions: the server's start-up stays light.
Reading and signing never touch the network: no timestamp authority, no OCSP, no remote manifests.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_audio.core.errors import ConfigError, McpAudioError
from mcp_audio.post.credentials import (
    AI_SOURCE_TYPES,
    CAPTURE,
    COMPOSITE,
    COMPOSITE_TRAINED,
    EMBEDDED,
    IPTC,
    SIDECAR,
    TRAINED,
    Action,
    IngredientSummary,
    ManifestSummary,
    ProvenanceReport,
    c2pa_context,
    clip,
    format_of,
    read_provenance,
    short_error,
    storage_of,
)
from mcp_audio.post.heap import fixed_mmap_threshold, release_freed

if TYPE_CHECKING:
    import c2pa

# Reading lives in post/credentials.py (the local audio_provenance tool reads too); its names are
# re-exported here so the signer and the reader are one API to callers.
__all__ = [
    "AI_SOURCE_TYPES", "CAPTURE", "COMPOSITE", "COMPOSITE_TRAINED", "EMBEDDED", "IPTC", "SIDECAR", "TRAINED",
    "Action", "Creation", "Ingredient", "IngredientSummary", "ManifestSummary", "ProvenanceError",
    "ProvenanceReport", "SignResult", "SigningIdentity", "load_signer", "read_provenance", "sign_audio",
    "storage_of", "write_disclosure",
]  # fmt: skip

ACTIONS_LABEL = "c2pa.actions.v2"
DEV_DIR = "c2pa-dev"
CERT_ENV, KEY_ENV = "MCP_AUDIO_C2PA_CERT", "MCP_AUDIO_C2PA_KEY"


class ProvenanceError(McpAudioError):
    """Credentials could not be written to a file (the message names the file)."""


# --- signing identity ------------------------------------------------------------------


@dataclass(frozen=True)
class SigningIdentity:
    """A certificate chain (leaf first, PEM) and its private key, with the c2pa algorithm name."""

    chain_pem: bytes
    key_pem: bytes = field(repr=False)  # secret: never in a repr, a log or a result
    alg: str  # "es256", "es384", "es512", "ps256", "ed25519"
    development: bool  # the self-signed dev chain: validates as well-formed, not trusted
    subject: str  # the leaf's subject, for messages
    ca_pem: bytes | None = None  # the dev chain's root (for a trust list in tests); None for the operator's


def load_signer(data_dir: Path, cert_pem: Path | None = None, key_pem: Path | None = None) -> SigningIdentity:
    """The operator's certificate chain and key when both are given, else the development
    chain in `data_dir/c2pa-dev/` (made once, key 0600; remade when it nears expiry).

    The identity is proven by signing a tiny WAV in memory, so a bad certificate fails here,
    once, with a ConfigError naming MCP_AUDIO_C2PA_CERT/KEY, not at every save.
    """
    if (cert_pem is None) != (key_pem is None):
        raise ConfigError(f"{CERT_ENV} and {KEY_ENV} must be set together (a PEM certificate chain and its key)")
    if cert_pem is not None and key_pem is not None:
        identity = _operator_identity(cert_pem, key_pem)
    else:
        identity = _dev_identity(data_dir)
    try:
        _probe(identity)
    except Exception as exc:
        where = "the development certificate" if identity.development else f"{CERT_ENV}/{KEY_ENV}"
        raise ConfigError(f"{where} cannot sign C2PA manifests: {short_error(exc)}") from exc
    return identity


def _operator_identity(cert_path: Path, key_path: Path) -> SigningIdentity:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        chain_pem = cert_path.read_bytes()
        certs = x509.load_pem_x509_certificates(chain_pem)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{CERT_ENV}: cannot read a PEM certificate chain from {cert_path}: {short_error(exc)}"
        ) from exc
    try:
        key_pem = key_path.read_bytes()
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (OSError, ValueError, TypeError) as exc:
        # The message of a key parse error never contains the key itself.
        raise ConfigError(
            f"{KEY_ENV}: cannot read an unencrypted PEM private key from {key_path}: {type(exc).__name__}"
        ) from exc
    leaf = certs[0]
    if leaf.public_key() != key.public_key():
        raise ConfigError(f"{KEY_ENV} is not the key of the first certificate in {CERT_ENV} (the signing certificate)")
    return SigningIdentity(chain_pem, key_pem, _alg_of(key), False, leaf.subject.rfc4514_string())


def _alg_of(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in algs:
            return algs[key.curve.name]
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    elif isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise ConfigError(f"{KEY_ENV}: C2PA signs with EC P-256/P-384/P-521, Ed25519 or RSA (PSS) keys only")


def _dev_identity(data_dir: Path) -> SigningIdentity:
    from cryptography import x509

    folder = data_dir / DEV_DIR
    paths = [folder / "chain.pem", folder / "key.pem", folder / "ca.pem"]
    if all(p.exists() for p in paths):
        chain_pem, key_pem, ca_pem = (p.read_bytes() for p in paths)
        leaf = x509.load_pem_x509_certificate(chain_pem)
        if leaf.not_valid_after_utc > datetime.now(UTC) + timedelta(days=30):
            return SigningIdentity(chain_pem, key_pem, "es256", True, leaf.subject.rfc4514_string(), ca_pem)
        shutil.rmtree(folder, ignore_errors=True)  # nearly expired: make a new one
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / f".{DEV_DIR}-{uuid.uuid4().hex}"
    staging.mkdir(mode=0o700)
    try:
        chain_pem, key_pem, ca_pem = _make_dev_chain(datetime.now(UTC))
        for path, data in zip(paths, (chain_pem, key_pem, ca_pem), strict=True):
            fd = os.open(staging / path.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        # One rename publishes the three files together; a concurrent replica that lost the
        # race finds the folder taken and uses the winner's chain.
        with contextlib.suppress(OSError):
            staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _dev_identity(data_dir)


def _make_dev_chain(now: datetime) -> tuple[bytes, bytes, bytes]:
    """A P-256 CA and a leaf that c2pa-rs accepts: the leaf is not a CA, has digitalSignature
    key usage, the emailProtection extended key usage and the CA's authority key identifier."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mcp-audio development (untrusted)"),
            ]
        )

    def usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(sign, False, False, False, False, ca, ca, False, False)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    start, ca_end, leaf_end = now - timedelta(hours=1), now + timedelta(days=3650), now + timedelta(days=1825)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("mcp-audio development CA"))
        .issuer_name(name("mcp-audio development CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(ca_end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("mcp-audio development signer"))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(leaf_end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return leaf.public_bytes(pem) + ca_pem, key_pem, ca_pem


def _signer(identity: SigningIdentity) -> c2pa.Signer:
    import c2pa

    info = c2pa.C2paSignerInfo(identity.alg, identity.chain_pem, identity.key_pem, None)  # None: no TSA, offline
    return c2pa.Signer.from_info(info)


def _probe(identity: SigningIdentity) -> None:
    import c2pa

    wav = io.BytesIO()
    wav.write(b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16))
    wav.write(b"data" + struct.pack("<I", 0))
    wav.seek(0)
    manifest = _manifest("probe", [{"action": "c2pa.created", "digitalSourceType": IPTC + "digitalCreation"}])
    with c2pa_context() as ctx, c2pa.Builder(manifest, context=ctx) as builder, _signer(identity) as signer:
        builder.sign(signer, "audio/wav", wav, io.BytesIO())


# --- signing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Creation:
    """The model that generated a file."""

    upstream: str  # "fal", "voice_api", "eigen"
    endpoint: str  # "fal-ai/elevenlabs/tts/eleven-v3"

    @property
    def model(self) -> str:
        return f"{self.endpoint} via {self.upstream}"


@dataclass(frozen=True)
class Ingredient:
    """An input file of an edit (or a reference given to a model). Its own credentials, embedded
    or in `sidecar` (default `<file>.c2pa` when it exists), are kept as the ingredient's manifest."""

    path: Path
    title: str | None = None  # default: the file name
    sidecar: Path | None = None
    captured: bool = False  # a recording of the real world (digitalSourceType digitalCapture)


@dataclass(frozen=True)
class SignResult:
    path: Path
    embedded: bool
    sidecar: Path | None  # the `<file>.c2pa` written when the format cannot embed
    disclosure: str | None  # the tag text written, None when nothing in the file is AI-made
    ai_generated: bool
    models: tuple[str, ...]  # the models named by the manifest and its ingredients

    def as_dict(self) -> dict[str, Any]:
        return {
            "embedded": self.embedded,
            "sidecar": None if self.sidecar is None else str(self.sidecar),
            "disclosure": self.disclosure,
            "ai_generated": self.ai_generated,
            "models": list(self.models),
        }


def sign_audio(
    path: Path,
    *,
    identity: SigningIdentity,
    title: str,
    now: datetime,
    created: Creation | None = None,
    ingredients: Sequence[Ingredient] = (),
    operation: str = "edit",
    software: str = "mcp-audio",
) -> SignResult:
    """Write Content Credentials for `path` (a file this server just saved) and a disclosure tag.

    `created`: a model generated the file: a `c2pa.created` action (trainedAlgorithmicMedia, the
    model as software agent); `ingredients` are then what was given to the model (inputTo). If the
    file already carries an upstream's credentials they are kept as its parent ingredient.
    Without `created`: an edit (`operation`: join, mix, master, trim, production) of
    `ingredients`: `c2pa.opened` for one input, `c2pa.placed` for each of several, then `c2pa.edited`.
    `software` names this server (with its version) as the claim generator and editing agent.
    """
    import c2pa

    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if created is None and not ingredients:
        raise ValueError("sign_audio needs `created` (a generated file) or `ingredients` (an edit)")
    # c2pa-rs holds about twice the file while it signs: its buffers go back to the OS once freed,
    # and what other threads freed is handed back first, so the two do not add up (post/heap.py).
    fixed_mmap_threshold()
    release_freed()
    mime, embed = format_of(path)
    when = now.isoformat()
    agent = {"name": software}
    reports = [_ingredient_report(item) for item in ingredients]
    ai_models = [m for r in reports for m in r.ai_models]
    any_ai = created is not None or any(r.ai_generated for r in reports)

    with contextlib.ExitStack() as stack:
        ctx = stack.enter_context(c2pa_context())
        actions: list[dict[str, Any]] = []
        defs: list[tuple[dict[str, Any], str, Path, bytes | None]] = []
        if created is not None:
            model = {"name": created.endpoint, "upstream": created.upstream}
            upstream = read_provenance(path)
            if upstream.has_credentials:
                # An upstream's signed file (ElevenLabs, Lyria): keep its manifest as the parent.
                defs.append(_ingredient_def(Ingredient(path, title), "parentOf", "self", upstream))
                actions.append(_action("c2pa.opened", when, model, TRAINED, ["self"]))
                actions.append(
                    {"action": "c2pa.edited.metadata", "when": when, "softwareAgent": agent,
                     "description": "AI-disclosure tag added"}
                )  # fmt: skip
            else:
                ids = [f"input{i}" for i in range(len(ingredients))]
                actions.append(_action("c2pa.created", when, model, TRAINED, ids or None))
            for i, (item, report) in enumerate(zip(ingredients, reports, strict=True)):
                defs.append(_ingredient_def(item, "inputTo", f"input{i}", report))
            ai_models.insert(0, created.endpoint)
        elif len(ingredients) == 1:
            [item], [report] = ingredients, reports
            source = CAPTURE if item.captured and not report.has_credentials else None
            defs.append(_ingredient_def(item, "parentOf", "input0", report))
            actions.append(_action("c2pa.opened", when, agent, source, ["input0"]))
            actions.append(_action("c2pa.edited", when, agent, TRAINED if report.ai_generated else None, None))
        else:
            every_ai = all(r.ai_generated for r in reports)
            actions.append(_action("c2pa.created", when, agent, _composite(any_ai, every_ai), None))
            for i, (item, report) in enumerate(zip(ingredients, reports, strict=True)):
                label = f"input{i}"
                source = CAPTURE if item.captured and not report.has_credentials else None
                defs.append(_ingredient_def(item, "componentOf", label, report))
                actions.append(_action("c2pa.placed", when, agent, source, [label]))
            actions.append(_action("c2pa.edited", when, agent, None, None))
        if created is None and operation:
            actions[-1]["description"] = clip(f"{software} {operation}")
        builder = stack.enter_context(c2pa.Builder(_manifest(title, actions, software), context=ctx))
        for definition, fmt, data, sidecar_bytes in defs:
            if sidecar_bytes is not None:
                builder.add_resource(definition["manifest_data"]["identifier"], io.BytesIO(sidecar_bytes))
            with open(data, "rb") as source_stream:
                builder.add_ingredient(definition, fmt, source_stream)

        models = tuple(dict.fromkeys(ai_models))
        disclosure = _disclosure_text(created, models) if any_ai else None
        if disclosure is not None and write_disclosure(path, disclosure) is None:
            disclosure = None  # a format without tags (ADTS AAC)
        if not embed:
            builder.set_no_embed()
        sidecar = Path(f"{path}.c2pa") if not embed else None
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.signing")
        try:
            with open(path, "rb") as src, open(tmp, "w+b") as dst:
                signer = stack.enter_context(_signer(identity))
                manifest_bytes = builder.sign(signer, mime, src, dst)
            shutil.copymode(path, tmp)
            if sidecar is not None:
                _write_atomic(sidecar, manifest_bytes)
            os.replace(tmp, path)
        except c2pa.C2paError as exc:
            raise ProvenanceError(f"cannot sign {path.name}: {short_error(exc)}") from exc
        finally:
            tmp.unlink(missing_ok=True)
    return SignResult(path, embed, sidecar, disclosure, any_ai, models)


def _composite(any_ai: bool, every_ai: bool) -> str:
    if every_ai:
        return IPTC + "compositeSynthetic"
    return COMPOSITE_TRAINED if any_ai else COMPOSITE


def _action(
    name: str, when: str, agent: dict[str, str], source: str | None, ingredient_ids: list[str] | None
) -> dict[str, Any]:
    action: dict[str, Any] = {"action": name, "when": when, "softwareAgent": agent}
    if source is not None:
        action["digitalSourceType"] = source
    if ingredient_ids:
        action["parameters"] = {"ingredientIds": ingredient_ids}
    return action


def _manifest(title: str, actions: list[dict[str, Any]], software: str = "mcp-audio") -> dict[str, Any]:
    name, _, version = software.partition(" ")
    generator = {"name": name} | ({"version": version} if version else {})
    return {
        "claim_generator_info": [generator],
        "title": clip(title),
        "assertions": [{"label": ACTIONS_LABEL, "data": {"actions": actions}}],
    }


def _ingredient_def(
    item: Ingredient, relationship: str, label: str, report: ProvenanceReport
) -> tuple[dict[str, Any], str, Path, bytes | None]:
    """(ingredient JSON, format, the file to read, sidecar manifest bytes to attach)."""
    mime, _ = format_of(item.path)
    definition: dict[str, Any] = {
        "title": clip(item.title or item.path.name),
        "relationship": relationship,
        "label": label,
        "format": mime,
    }
    sidecar_bytes = None
    if report.sidecar is not None and report.has_credentials and report.raw is not None:
        # c2pa-rs reads embedded credentials itself; a sidecar's it does not, so attach them,
        # with the validation c2pa's own Reader gave them.
        sidecar_bytes = report.sidecar.read_bytes()
        definition |= {
            "active_manifest": report.raw["active_manifest"],
            "validation_results": report.raw.get("validation_results", {}),
            "manifest_data": {"format": "application/c2pa", "identifier": f"{label}.c2pa"},
        }
    return definition, mime, item.path, sidecar_bytes


def _ingredient_report(item: Ingredient) -> ProvenanceReport:
    if not item.path.is_file():
        raise ProvenanceError(f"ingredient {item.path.name} is not a file")
    return read_provenance(item.path, item.sidecar)


def _disclosure_text(created: Creation | None, models: tuple[str, ...]) -> str:
    named = ", ".join(models) or "unnamed"
    if created is not None:
        return f"AI-generated audio (model: {created.model})"
    return f"Contains AI-generated audio (model{'s' if len(models) > 1 else ''}: {named})"


def _write_atomic(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# --- disclosure tags -------------------------------------------------------------------

DISCLOSURE_KEY = "AI_DISCLOSURE"


def write_disclosure(path: Path, text: str) -> str | None:
    """Write `text` as a plain tag: ID3 TXXX:AI_DISCLOSURE (MP3, AIFF), RIFF LIST/INFO ICMT + ISFT
    (WAV), Vorbis comment AI_DISCLOSURE (FLAC, Ogg), MP4 freeform ----:com.apple.iTunes:AI_DISCLOSURE
    (M4A/M4B). Returns where it was written, None for formats without tags (ADTS AAC)."""
    ext = path.suffix.lower()
    if ext == ".wav":
        _write_riff_info(path, {b"ICMT": text, b"ISFT": "mcp-audio"})
        return "RIFF INFO ICMT"
    if ext in (".mp3", ".aiff", ".aif"):
        id3 = _untyped("mutagen.id3")
        if ext == ".mp3":
            try:
                tags = id3.ID3(path)
            except id3.ID3NoHeaderError:
                tags = id3.ID3()
        else:
            aiff = _untyped("mutagen.aiff").AIFF(path)
            if aiff.tags is None:
                aiff.add_tags()
            tags = aiff.tags
        tags.setall("TXXX:" + DISCLOSURE_KEY, [id3.TXXX(encoding=3, desc=DISCLOSURE_KEY, text=[text])])
        tags.save(path, v2_version=3)
        return "ID3 TXXX:" + DISCLOSURE_KEY
    if ext in (".flac", ".ogg", ".opus"):
        audio = _untyped("mutagen").File(path)
        if audio is None:
            raise ProvenanceError(f"cannot tag {path.name}: not a FLAC or Ogg file")
        if audio.tags is None:
            audio.add_tags()
        audio.tags[DISCLOSURE_KEY] = [text]
        audio.save()
        return "Vorbis comment " + DISCLOSURE_KEY
    if ext in (".m4a", ".m4b", ".mp4"):
        mp4mod = _untyped("mutagen.mp4")
        mp4 = mp4mod.MP4(path)
        if mp4.tags is None:
            mp4.add_tags()
        mp4.tags["----:com.apple.iTunes:" + DISCLOSURE_KEY] = [mp4mod.MP4FreeForm(text.encode())]
        mp4.save()
        return "MP4 ----:com.apple.iTunes:" + DISCLOSURE_KEY
    return None


def _untyped(module: str) -> Any:
    """mutagen, imported on first use (it has no type hints: its calls are typed Any here)."""
    import importlib

    return importlib.import_module(module)


def _write_riff_info(path: Path, entries: dict[bytes, str]) -> None:
    """Replace the WAV's LIST/INFO chunk in place: the old one becomes a JUNK chunk of the same
    size (players skip it) and a new LIST/INFO is appended, so the audio data is never copied."""
    with open(path, "r+b") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ProvenanceError(f"cannot tag {path.name}: not a RIFF/WAVE file (RF64 is not tagged)")
        end = os.fstat(f.fileno()).st_size
        pos = 12
        old: dict[bytes, bytes] = {}
        while pos + 8 <= end:
            f.seek(pos)
            cid, size = struct.unpack("<4sI", f.read(8))
            if cid == b"LIST" and size >= 4 and f.read(4) == b"INFO":
                body = f.read(min(size - 4, 1 << 16))
                old |= _parse_info(body)
                f.seek(pos)
                f.write(b"JUNK")
            pos += 8 + size + (size & 1)
        if end & 1:  # a last chunk without its pad byte
            f.seek(end)
            f.write(b"\0")
            end += 1
        items = old | {k: v.encode("utf-8", "replace")[:1000] for k, v in entries.items()}
        body = b"INFO"
        for key, value in items.items():
            data = value + b"\0"
            body += key + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"")
        f.seek(end)
        f.write(b"LIST" + struct.pack("<I", len(body)) + body)
        total = end + 8 + len(body)
        if total - 8 > 0xFFFFFFFF:
            raise ProvenanceError(f"cannot tag {path.name}: too large for RIFF")
        f.seek(4)
        f.write(struct.pack("<I", total - 8))


def _parse_info(body: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos + 8 <= len(body):
        key, size = struct.unpack("<4sI", body[pos : pos + 8])
        out[key] = body[pos + 8 : pos + 8 + size].rstrip(b"\0")
        pos += 8 + size + (size & 1)
    return out
