"""Reading C2PA Content Credentials of any audio file: what made it, from what, whether the
signature validates, whether it is trusted, and whether the content changed after signing.

Pure functions over a file (no server state), so the local `audio_provenance` tool
(providers/local_post.py) and the signer (files/provenance.py, which writes credentials into
the files the server saves) share them. c2pa (a native library) is imported inside the
functions: the server's start-up stays light. Reading never touches the network: no OCSP, no
remote manifests (a file's manifest URL is untrusted input).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import c2pa

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED = IPTC + "trainedAlgorithmicMedia"
COMPOSITE_TRAINED = IPTC + "compositeWithTrainedAlgorithmicMedia"
CAPTURE = IPTC + "digitalCapture"
COMPOSITE = IPTC + "composite"
# Source types that say "a model made (some of) this".
AI_SOURCE_TYPES = frozenset(
    IPTC + name
    for name in (
        "trainedAlgorithmicMedia",
        "compositeWithTrainedAlgorithmicMedia",
        "compositeSynthetic",
        "algorithmicMedia",
        "trainedAlgorithmicData",
    )
)

EMBEDDED: dict[str, str] = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".m4b": "audio/mp4",
    ".mp4": "video/mp4",
}
"""Extensions whose format c2pa-rs embeds a manifest into (RIFF chunk, ID3 GEOB, FLAC block, BMFF uuid box)."""

SIDECAR: dict[str, str] = {
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".aac": "audio/aac",
    ".aiff": "audio/aiff",
    ".aif": "audio/aiff",
    ".webm": "audio/webm",
}
"""Formats c2pa-rs cannot embed into: the manifest goes to `<file>.c2pa`, hashing the whole file."""

MAX_DEPTH = 12  # ingredient nesting read back; a hostile file could nest without end
MAX_INGREDIENTS = 64
MAX_TEXT = 300  # manifest strings are untrusted and go to an agent: bounded
TAMPER_CODES = ("assertion.dataHash.mismatch", "assertion.bmffHash.mismatch", "assertion.boxesHash.mismatch")
# Never fetch: a file's manifest URL is untrusted input (SSRF), and signing must work offline.
OFFLINE = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}


def format_of(path: Path) -> tuple[str, bool]:
    ext = path.suffix.lower()
    if ext in EMBEDDED:
        return EMBEDDED[ext], True
    return SIDECAR.get(ext, "application/octet-stream"), False


@contextlib.contextmanager
def c2pa_context(trust_anchors: bytes | None = None) -> Iterator[c2pa.Context]:
    import c2pa

    settings: dict[str, Any] = dict(OFFLINE)
    if trust_anchors:
        settings["trust"] = {"user_anchors": trust_anchors.decode()}
    with c2pa.Settings.from_dict(settings) as s, c2pa.Context(s) as ctx:
        yield ctx


# --- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    action: str  # "c2pa.created", "c2pa.opened", "c2pa.placed", "c2pa.edited", ...
    software_agent: str | None
    digital_source_type: str | None
    when: str | None
    description: str | None = None


@dataclass(frozen=True)
class ManifestSummary:
    label: str
    title: str | None
    claim_generator: str | None  # "mcp-audio 0.4.0", "ElevenLabs ..."
    signed_by: str | None  # the certificate's common name and issuer
    signed_at: str | None  # from a timestamp, when the manifest has one
    actions: tuple[Action, ...]
    ingredients: tuple[IngredientSummary, ...]

    def ai_models(self) -> list[str]:
        """Software agents of actions stating an AI source type, here and in every ingredient."""
        found = [
            a.software_agent or "unnamed model"
            for a in self.actions
            if a.digital_source_type == TRAINED and a.action in ("c2pa.created", "c2pa.opened")
        ]
        for ingredient in self.ingredients:
            if ingredient.manifest is not None:
                found += ingredient.manifest.ai_models()
        return found

    def ai_generated(self) -> bool:
        if any(a.digital_source_type in AI_SOURCE_TYPES for a in self.actions):
            return True
        return any(i.manifest is not None and i.manifest.ai_generated() for i in self.ingredients)


@dataclass(frozen=True)
class IngredientSummary:
    title: str | None
    relationship: str | None  # parentOf, componentOf, inputTo
    manifest: ManifestSummary | None  # None: the input carried no credentials
    problems: tuple[str, ...]  # validation failures of the input's own manifest


@dataclass(frozen=True)
class ProvenanceReport:
    has_credentials: bool
    embedded: bool | None
    sidecar: Path | None
    manifest: ManifestSummary | None
    validation_state: str | None  # c2pa's: "Invalid", "Valid" (well-formed), "Trusted"
    signature_valid: bool
    trusted: bool
    tampered: bool  # the content changed after signing (a hash no longer matches)
    ai_generated: bool
    ai_models: tuple[str, ...]
    problems: tuple[str, ...]  # "code: explanation" of each validation failure
    summary: str
    raw: dict[str, Any] | None = field(default=None, repr=False, compare=False)  # c2pa's JSON

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("raw")
        body["sidecar"] = None if self.sidecar is None else str(self.sidecar)
        return body


def read_provenance(path: Path, sidecar: Path | None = None, *, trust_anchors: bytes | None = None) -> ProvenanceReport:
    """Read and validate `path`'s Content Credentials (embedded, or in `sidecar`, default
    `<file>.c2pa` when it exists). `trust_anchors`: PEM roots to trust (e.g. the C2PA trust list);
    without them every signature validates at best as well-formed ("Valid"), not "Trusted"."""
    import c2pa

    if sidecar is None and Path(f"{path}.c2pa").is_file():
        sidecar = Path(f"{path}.c2pa")
    mime, embeddable = format_of(path)
    manifest_data = sidecar.read_bytes() if sidecar is not None else None
    if manifest_data is None and not embeddable:
        return _none(path, f"no Content Credentials: {path.suffix or 'this'} files cannot embed them and no sidecar")
    try:
        with c2pa_context(trust_anchors) as ctx, open(path, "rb") as stream:
            reader = c2pa.Reader.try_create(mime, stream, manifest_data, context=ctx)
            if reader is None:
                return _none(path, "no Content Credentials in this file")
            with reader:
                raw = json.loads(reader.json())
                embedded = reader.is_embedded()
                remote = reader.get_remote_url()
    except c2pa.C2paError as exc:
        return _none(path, f"no readable Content Credentials: {short_error(exc)}")
    manifests: dict[str, Any] = raw.get("manifests") or {}
    active = raw.get("active_manifest")
    if not active or active not in manifests:
        note = f" (it points to a remote manifest at {clip(remote)}, not fetched)" if remote else ""
        return _none(path, "no Content Credentials in this file" + note)
    results = raw.get("validation_results", {}).get("activeManifest", {})
    failures = [f for f in results.get("failure", []) if isinstance(f, dict)]
    successes = {s.get("code") for s in results.get("success", []) if isinstance(s, dict)}
    codes = [str(f.get("code")) for f in failures]
    state = raw.get("validation_state")
    tampered = any(c in TAMPER_CODES or c.endswith("Hash.mismatch") for c in codes)
    signature_valid = "claimSignature.validated" in successes and not any(
        c.startswith("claimSignature.") or c in ("signingCredential.invalid", "signingCredential.revoked")
        for c in codes
    )
    summary_manifest = _summarise(manifests, active, raw, 0, [0])
    ai = summary_manifest.ai_generated()
    models = tuple(dict.fromkeys(summary_manifest.ai_models()))
    verdict = (
        "tampered: the content changed after it was signed"
        if tampered
        else "valid and trusted"
        if state == "Trusted"
        else "valid but not from a trusted signer"
        if signature_valid and state == "Valid"
        else f"invalid ({', '.join(codes) or state})"
    )
    made = f"AI-generated ({', '.join(models)})" if ai else "no AI generation stated"
    return ProvenanceReport(
        has_credentials=True,
        embedded=embedded,
        sidecar=sidecar,
        manifest=summary_manifest,
        validation_state=state,
        signature_valid=signature_valid,
        trusted=state == "Trusted",
        tampered=tampered,
        ai_generated=ai,
        ai_models=models,
        problems=tuple(clip(f"{f.get('code')}: {f.get('explanation', '')}") for f in failures),
        summary=f"Content Credentials by {summary_manifest.claim_generator or 'an unnamed tool'}: {made}; {verdict}",
        raw=raw,
    )


def _none(path: Path, summary: str) -> ProvenanceReport:
    return ProvenanceReport(False, None, None, None, None, False, False, False, False, (), (), summary)


def _summarise(
    manifests: dict[str, Any], label: str, raw: dict[str, Any], depth: int, count: list[int]
) -> ManifestSummary:
    m = manifests[label]
    actions: list[Action] = []
    for assertion in m.get("assertions", []):
        if isinstance(assertion, dict) and str(assertion.get("label", "")).startswith("c2pa.actions"):
            for a in (assertion.get("data") or {}).get("actions", [])[:64]:
                if isinstance(a, dict):
                    actions.append(
                        Action(
                            clip(a.get("action")) or "?",
                            clip(_agent_name(a.get("softwareAgent"))),
                            clip(a.get("digitalSourceType")),
                            clip(a.get("when")),
                            clip(a.get("description")),
                        )
                    )
    ingredients: list[IngredientSummary] = []
    for ing in m.get("ingredients", []):
        if not isinstance(ing, dict) or count[0] >= MAX_INGREDIENTS:
            break
        count[0] += 1
        child = ing.get("active_manifest")
        nested = None
        if depth < MAX_DEPTH and isinstance(child, str) and child in manifests and child != label:
            nested = _summarise(manifests, child, raw, depth + 1, count)
        fails = (ing.get("validation_results") or {}).get("activeManifest", {}).get("failure", [])
        problems = tuple(clip(f"{f.get('code')}: {f.get('explanation', '')}") for f in fails if isinstance(f, dict))
        ingredients.append(IngredientSummary(clip(ing.get("title")), clip(ing.get("relationship")), nested, problems))
    gen = (m.get("claim_generator_info") or [{}])[0]
    generator = " ".join(str(gen.get(k)) for k in ("name", "version") if gen.get(k)) if isinstance(gen, dict) else None
    sig = m.get("signature_info") or {}
    signer = ", ".join(str(sig[k]) for k in ("common_name", "issuer") if sig.get(k)) or None
    return ManifestSummary(
        label=clip(label) or "?",
        title=clip(m.get("title")),
        claim_generator=clip(generator or m.get("claim_generator")),
        signed_by=clip(signer),
        signed_at=clip(sig.get("time")),
        actions=tuple(actions),
        ingredients=tuple(ingredients),
    )


def _agent_name(agent: Any) -> str | None:
    if isinstance(agent, dict):
        return " ".join(str(agent[k]) for k in ("name", "version") if agent.get(k)) or None
    return agent if isinstance(agent, str) else None


def clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[: MAX_TEXT - 1] + "…"
    return value if value is None or isinstance(value, str) else clip(str(value))


def short_error(exc: BaseException) -> str:
    return clip(" ".join(str(exc).split())) or type(exc).__name__


Kind = Literal["embedded", "sidecar"]


def storage_of(path: Path) -> Kind:
    """Where `sign_audio` puts the credentials of a file with this name."""
    return "embedded" if format_of(path)[1] else "sidecar"
