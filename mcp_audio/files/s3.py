"""Output files in an S3-compatible bucket (`MCP_AUDIO_OUTPUT_URL=s3://bucket/prefix`), where
every replica can serve them (and remote callers' uploads, which every replica can use: uploads.py).

A file is downloaded (or written) to a staging folder as usual (atomic, size, SHA-256, audio
properties), then put in the bucket under `{prefix}/{name}` and removed locally. Its result
carries a presigned URL (valid MCP_AUDIO_S3_URL_EXPIRES_S) and `path: s3://bucket/key`;
`files://` reads the object from the bucket on whichever replica is asked. Credentials come
from the usual AWS settings (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or a
profile); the endpoint of another S3-compatible store from MCP_AUDIO_S3_ENDPOINT_URL.
boto3 is imported only when a bucket is configured.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mcp_audio.core.errors import ConfigError
from mcp_audio.core.results import OutputFile
from mcp_audio.files.outputs import OutputSaver

if TYPE_CHECKING:
    from mcp_audio.config import ServerSettings
    from mcp_audio.files.marking import Origin

log = logging.getLogger("mcp_audio.s3")

SCHEME = "s3://"


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without slashes) of `s3://bucket[/prefix]`."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
        raise ConfigError(f"MCP_AUDIO_OUTPUT_URL {url[:200]!r} is not `s3://bucket/prefix`")
    return parsed.netloc, parsed.path.strip("/")


class Bucket:
    """One bucket (and prefix) through boto3, created on first use."""

    def __init__(self, url: str, *, endpoint_url: str | None, expires_s: int) -> None:
        self.name, self.prefix = parse_s3_url(url)
        self._endpoint = endpoint_url
        self._expires_s = expires_s
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import boto3  # type: ignore[import-untyped]
            from botocore.config import Config  # type: ignore[import-untyped]

            self._client = boto3.client(
                "s3",
                endpoint_url=self._endpoint,
                region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                # Path-style addressing: what MinIO and other S3-compatible stores expect.
                config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
            )
        return self._client

    def key_for(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, source: Path, key: str, content_type: str | None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self.client().upload_file(str(source), self.name, key, ExtraArgs=extra)

    def presign(self, key: str) -> str:
        url: str = self.client().generate_presigned_url(
            "get_object", Params={"Bucket": self.name, "Key": key}, ExpiresIn=self._expires_s
        )
        return url

    def fetch(self, key: str, dest: Path, *, uploaded_after: float) -> float | None:
        """Download `key` to `dest`; its time of upload (epoch s), or None (nothing downloaded) if
        there is no such object or it was put there before `uploaded_after`."""
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        client = self.client()
        try:
            head = client.head_object(Bucket=self.name, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        uploaded_at = float(head["LastModified"].timestamp())
        if uploaded_at < uploaded_after:
            return None
        client.download_file(self.name, key, str(dest))
        return uploaded_at

    def size(self, uri: str) -> int:
        """The size of `s3://bucket/key`, which must be in this bucket."""
        parsed = urlparse(uri)
        if parsed.netloc != self.name:
            raise FileNotFoundError(f"{uri[:200]} is not in the configured bucket")
        return int(self.client().head_object(Bucket=self.name, Key=parsed.path.lstrip("/"))["ContentLength"])

    def read(self, uri: str) -> bytes:
        """The bytes of `s3://bucket/key`, which must be in this bucket."""
        parsed = urlparse(uri)
        if parsed.netloc != self.name:
            raise FileNotFoundError(f"{uri[:200]} is not in the configured bucket")
        data: bytes = self.client().get_object(Bucket=self.name, Key=parsed.path.lstrip("/"))["Body"].read()
        return data


class S3OutputSaver(OutputSaver):
    """An OutputSaver whose saved files end up in a bucket instead of the output folder."""

    def __init__(self, bucket: Bucket, staging: Path, **options: Any) -> None:
        super().__init__(staging, **options)
        self.bucket = bucket

    def _finish(
        self, target: Path, job_id: str, item: OutputFile, measured: tuple[int, str] | None, origin: Origin | None
    ) -> list[OutputFile]:
        """Marked and measured in the staging folder, then each file (and its sidecar) put in the bucket."""
        return [self._to_bucket(saved) for saved in super()._finish(target, job_id, item, measured, origin)]

    def _to_bucket(self, item: OutputFile) -> OutputFile:
        assert item.path is not None and item.file_name is not None
        local = Path(item.path)
        key = self.bucket.key_for(item.file_name)
        try:
            self.bucket.put(local, key, item.content_type)
        except Exception as exc:  # boto3/botocore errors: the upstream URL still works
            log.warning("could not store %s in bucket %s: %s", item.file_name, self.bucket.name, exc)
            return item.model_copy(
                update={
                    "path": None,
                    "file_uri": None,
                    "resource": None,
                    "download_error": f"not stored in the output bucket {self.bucket.name} (MCP_AUDIO_OUTPUT_URL): "
                    + failure_code(exc),
                }
            )
        finally:
            local.unlink(missing_ok=True)
        uri = f"{SCHEME}{self.bucket.name}/{key}"
        return item.model_copy(update={"url": self.bucket.presign(key), "path": uri, "file_uri": uri})


def failure_code(exc: Exception) -> str:
    """What the agent is told: S3's error code (botocore's message also names local paths)."""
    code = re.search(r"An error occurred \((\w+)\)", str(exc))
    return code[1] if code else type(exc).__name__


def bucket_of(settings: ServerSettings) -> Bucket | None:
    """The bucket MCP_AUDIO_OUTPUT_URL names, if any."""
    if not settings.output_url:
        return None
    return Bucket(settings.output_url, endpoint_url=settings.s3_endpoint_url, expires_s=settings.s3_url_expires_s)


def open_saver(settings: ServerSettings, **options: Any) -> OutputSaver:
    """The output folder's saver, or the bucket's when MCP_AUDIO_OUTPUT_URL names one."""
    bucket = bucket_of(settings)
    if bucket is None:
        return OutputSaver(settings.output_dir, **options)
    return S3OutputSaver(bucket, settings.data_dir / "staging", **options)


_buckets: dict[tuple[str, str | None], Bucket] = {}


def read_saved(path: str, settings: ServerSettings, *, max_bytes: int | None = None) -> bytes:
    """The bytes of a saved output: a local file, or an object in the configured bucket. Over
    `max_bytes` (measured before anything is read) raises TooLargeToRead."""
    if not path.startswith(SCHEME):
        with Path(path).open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise TooLargeToRead(size)
            return handle.read()
    bucket = _bucket(settings, path)
    if max_bytes is not None and (size := bucket.size(path)) > max_bytes:
        raise TooLargeToRead(size)
    return bucket.read(path)


def presigned(path: str, settings: ServerSettings) -> str:
    """A short-lived URL of a saved output in the bucket (`s3://bucket/key`)."""
    return _bucket(settings, path).presign(urlparse(path).path.lstrip("/"))


class TooLargeToRead(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _bucket(settings: ServerSettings, path: str) -> Bucket:
    if not settings.output_url:
        raise FileNotFoundError(f"{path[:200]} is in a bucket, and this server has no MCP_AUDIO_OUTPUT_URL")
    where = (settings.output_url, settings.s3_endpoint_url)
    if where not in _buckets:
        _buckets[where] = Bucket(settings.output_url, endpoint_url=settings.s3_endpoint_url, expires_s=300)
    return _buckets[where]
