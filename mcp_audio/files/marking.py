"""What the output saver writes into each audio file it saves: C2PA Content Credentials saying
what made it (a model, or an edit of input files) and a plain AI-disclosure tag (the library is
files/provenance.py).

The saver calls `Marker.mark` in a worker thread once a file is written, before it is measured
(size and SHA-256 are of the signed bytes) and before it goes to a bucket. A file that cannot be
signed is saved all the same and its result says why: a paid job's output is never dropped.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mcp_audio import __version__
from mcp_audio.core.results import Credentials

if TYPE_CHECKING:  # the signing code loads at the first save, not at start-up
    from mcp_audio.files.provenance import Creation, Ingredient, SigningIdentity

__all__ = ["C2PA_TYPE", "Marker", "Origin"]

log = logging.getLogger("mcp_audio.provenance")

C2PA_TYPE = "application/c2pa"  # a sidecar manifest's content type
SOFTWARE = f"mcp-audio {__version__}"
DEVELOPMENT = "mcp-audio development certificate (untrusted)"


@dataclass(frozen=True)
class Origin:
    """What made a job's files: a model (`created`), or an edit (`operation`) of `ingredients`."""

    created: Creation | None = None
    ingredients: tuple[Ingredient, ...] = ()
    operation: str = "edit"

    @classmethod
    def generated(cls, upstream: str, endpoint: str) -> Origin:
        from mcp_audio.files.provenance import Creation

        return cls(created=Creation(upstream, endpoint))

    @classmethod
    def edit(cls, inputs: Sequence[Ingredient], operation: str) -> Origin:
        """`inputs` in order, every one kept as an ingredient (with its own credentials, if any)."""
        if not inputs:
            raise ValueError("an edit needs its input files")
        return cls(ingredients=tuple(inputs), operation=operation)


def is_media(path: Path, content_type: str | None) -> bool:
    """Audio (or video) the library can mark: not a transcript, subtitles or JSON."""
    kind = content_type or mimetypes.guess_type(path.name)[0] or ""
    from mcp_audio.files.provenance import EMBEDDED, SIDECAR

    return kind.startswith(("audio/", "video/")) and path.suffix.lower() in EMBEDDED.keys() | SIDECAR.keys()


class Marker:
    """Signs saved files with the operator's certificate (`cert`, `key`: PEM paths) or the
    development one made once in `data_dir`; the identity is loaded on the first file and kept."""

    def __init__(self, data_dir: Path, cert: Path | None = None, key: Path | None = None) -> None:
        self._data_dir, self._cert, self._key = data_dir, cert, key
        self._identity: SigningIdentity | None = None
        self._failure: str | None = None  # a certificate that cannot sign fails once, not at every save
        self._lock = threading.Lock()  # files are saved from several worker threads

    def identity(self) -> SigningIdentity:
        from mcp_audio.files.provenance import load_signer
        from mcp_audio.post.credentials import short_error

        with self._lock:
            if self._identity is None and self._failure is None:
                try:
                    self._identity = load_signer(self._data_dir, self._cert, self._key)
                except Exception as exc:
                    self._failure = short_error(exc)
                    log.error("Content Credentials are not written: %s", self._failure)
            if self._identity is None:
                raise RuntimeError(self._failure)
            return self._identity

    def mark(self, path: Path, origin: Origin) -> Credentials:
        """Write `path`'s credentials and disclosure tag (blocking: call in a worker thread).
        Never raises: a failure is logged and returned as `Credentials.error`."""
        from mcp_audio.files.provenance import sign_audio
        from mcp_audio.post.credentials import short_error

        try:
            identity = self.identity()
            signed = sign_audio(
                path,
                identity=identity,
                title=path.name,
                now=datetime.now(UTC),
                created=origin.created,
                ingredients=origin.ingredients,
                operation=origin.operation,
                software=SOFTWARE,
            )
        except Exception as exc:  # the file stays saved, unmarked; the result says why
            error = f"no Content Credentials written: {short_error(exc)}"
            log.warning("%s: %s", path.name, error)
            return Credentials(error=error)
        return Credentials(
            embedded=signed.embedded,
            sidecar=signed.sidecar.name if signed.sidecar is not None else None,
            disclosure=signed.disclosure,
            ai_generated=signed.ai_generated,
            models=list(signed.models),
            signer=DEVELOPMENT if identity.development else identity.subject,
        )
