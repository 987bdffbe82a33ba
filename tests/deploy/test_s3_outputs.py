"""Outputs in an S3-compatible bucket (moto in server mode): each saved file is stored once in
the bucket, results carry presigned URLs, and `files://` is served from the bucket by any
replica, with nothing left in a local folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import pytest
from mcp import Client

from mcp_audio.config import ServerSettings
from mcp_audio.core.errors import ConfigError
from mcp_audio.files.provenance import read_provenance
from mcp_audio.files.s3 import parse_s3_url
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.conftest import on_backend
from tests.helpers import audio_payload, body_of, make_wav, server, text_of
from tests.http_harness import add_token, http_server, mcp_client

pytestmark = pytest.mark.anyio
boto3 = pytest.importorskip("boto3", reason="S3 tests need boto3 and moto: pip install boto3 'moto[server]'")


@pytest.fixture
def bucketed(settings: ServerSettings, s3_endpoint: str, s3_bucket: str) -> ServerSettings:
    return settings.model_copy(
        update={"output_url": f"s3://{s3_bucket}/team/audio", "s3_endpoint_url": s3_endpoint, "download": None}
    )


def objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


async def test_a_saved_output_goes_to_the_bucket_with_a_presigned_url(
    bucketed: ServerSettings, fake_fal: FakeFal, s3_endpoint: str, s3_bucket: str
) -> None:
    async with Client(server(bucketed, transport="http")) as client:  # over HTTP too: a bucket holds them
        result = await client.call_tool("lyria2_music", {"prompt": "calm"})
        assert not result.is_error, text_of(result)
        [item] = body_of(result)["files"]
        served = await client.read_resource(item["resource"])
    stored = objects(s3_endpoint, s3_bucket)
    [(key, data)] = stored.items()
    assert key == f"team/audio/{item['file_name']}" and item["path"] == f"s3://{s3_bucket}/{key}"
    fal_copy = next(data for name, (data, _) in fake_fal.files.items() if name.endswith(".wav"))
    # the model's audio, signed before it went to the bucket
    assert audio_payload(data) == audio_payload(fal_copy) and item["file_size"] == len(data)
    assert item["credentials"]["embedded"] and data != fal_copy
    assert "X-Amz-Signature=" in item["url"] and item["url"].startswith(f"{s3_endpoint}/{s3_bucket}/team/audio/")
    async with httpx.AsyncClient(trust_env=False) as http:
        assert (await http.get(item["url"])).content == data
    assert served.contents[0].blob  # type: ignore[union-attr]
    import base64

    assert base64.b64decode(served.contents[0].blob) == data  # type: ignore[union-attr]
    assert not bucketed.output_dir.exists() or not any(bucketed.output_dir.iterdir())
    assert not any((bucketed.data_dir / "staging").iterdir())  # nothing kept locally


async def test_a_sidecar_of_credentials_goes_to_the_bucket_with_its_file(
    bucketed: ServerSettings, rec_dir: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    """An Ogg file cannot embed Content Credentials: it is signed in the staging folder and its
    `.c2pa` sidecar is stored next to it in the bucket, an output file of its own."""
    (rec_dir / "take.wav").write_bytes(make_wav(1.0))
    local = bucketed.model_copy(update={"allowed_dirs": str(rec_dir)})
    async with Client(server(local)) as client:
        result = await client.call_tool("audio_trim", {"audio_url": str(rec_dir / "take.wav"), "format": "ogg"})
        assert not result.is_error, text_of(result)
        audio, sidecar = body_of(result)["files"]
        served = await client.read_resource(sidecar["resource"])
    stored = objects(s3_endpoint, s3_bucket)
    assert sorted(stored) == [f"team/audio/{audio['file_name']}", f"team/audio/{audio['file_name']}.c2pa"]
    assert audio["credentials"]["sidecar"] == sidecar["file_name"] == f"{audio['file_name']}.c2pa"
    assert sidecar["path"] == f"{audio['path']}.c2pa" and sidecar["content_type"] == "application/c2pa"
    manifest = stored[f"team/audio/{sidecar['file_name']}"]
    import base64

    assert base64.b64decode(served.contents[0].blob) == manifest  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory() as folder:  # read back as a reader would: the file and its sidecar
        copy = Path(folder) / audio["file_name"]
        copy.write_bytes(stored[f"team/audio/{audio['file_name']}"])
        Path(f"{copy}.c2pa").write_bytes(manifest)
        report = read_provenance(copy)
    assert report.has_credentials and report.signature_valid and not report.tampered
    assert report.manifest is not None and report.manifest.ingredients[0].title == "take.wav"
    assert not any((bucketed.data_dir / "staging").iterdir())  # nothing kept locally


async def test_files_are_served_by_a_replica_that_did_not_save_them(
    bucketed: ServerSettings, fake_fal: FakeFal, pg_url: str, tmp_path: object
) -> None:
    first = on_backend(bucketed, pg_url)
    second = first.model_copy(update={"data_dir": first.data_dir.parent / "other-data"})  # another machine's disk
    async with Client(server(first, transport="http")) as one:
        [item] = body_of(await one.call_tool("lyria2_music", {"prompt": "calm"}))["files"]
    async with Client(server(second, transport="http")) as other:
        served = await other.read_resource(item["resource"])
        job = body_of(await other.call_tool("get_job", {"job_id": item["resource"].split("/")[2]}))
    assert served.contents[0].blob  # type: ignore[union-attr]
    assert job["files"][0]["path"] == item["path"]
    assert [r.kind for r in fake_fal.requests].count("file") == 1  # downloaded once, by the first


async def test_an_unreachable_bucket_leaves_the_upstream_url_and_says_why(
    settings: ServerSettings, fake_fal: FakeFal, s3_endpoint: str, s3_bucket: str
) -> None:
    missing = settings.model_copy(
        update={"output_url": "s3://no-such-bucket/x", "s3_endpoint_url": s3_endpoint, "download": "always"}
    )
    async with Client(server(missing)) as client:
        result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    [item] = body_of(result)["files"]
    assert "path" not in item and item["url"].startswith(fake_fal.base_url or "-")
    assert item["download_error"] == (
        "not stored in the output bucket no-such-bucket (MCP_AUDIO_OUTPUT_URL): NoSuchBucket"
    )


def test_an_output_url_that_is_not_s3_is_refused_naming_the_setting() -> None:
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    for wrong in ("https://bucket/x", "s3:///x", "s3://b/x?y=1"):
        with pytest.raises(ConfigError, match=r"MCP_AUDIO_OUTPUT_URL .* is not `s3://bucket/prefix`"):
            parse_s3_url(wrong)


async def test_an_upload_one_replica_received_is_a_file_input_on_another(
    bucketed: ServerSettings, pg_url: str, s3_endpoint: str, s3_bucket: str
) -> None:
    first = on_backend(bucketed, pg_url)  # tokens in the database: both replicas know them
    second = first.model_copy(update={"data_dir": first.data_dir.parent / "other-data"})  # another machine's disk
    alice, bob = add_token(first, "alice"), add_token(first, "bob")
    bucket_env = {"MCP_AUDIO_OUTPUT_URL": str(first.output_url), "MCP_AUDIO_S3_ENDPOINT_URL": s3_endpoint}
    wav = make_wav(2.0)
    with http_server(first, extra_env=bucket_env) as one, http_server(second, extra_env=bucket_env) as two:
        stored = httpx.post(one.url + "/uploads", content=wav, headers={"Authorization": f"Bearer {alice}"})
        assert stored.status_code == 201, stored.text
        reference = stored.json()["file"]
        async with mcp_client(two.mcp, alice) as as_alice:
            measured = await as_alice.call_tool("audio_info", {"audio_url": reference})
            again = await as_alice.call_tool("audio_info", {"audio_url": reference})  # now from its own copy
        async with mcp_client(two.mcp, bob) as as_bob:
            stolen = await as_bob.call_tool("audio_info", {"audio_url": reference})
    assert not measured.is_error, text_of(measured)
    assert body_of(measured)["output"]["duration_s"] == pytest.approx(2.0, abs=0.01)
    assert not again.is_error, text_of(again)
    assert stolen.is_error and "POST the file to /uploads again" in text_of(stolen)
    [(key, data)] = [(key, data) for key, data in objects(s3_endpoint, s3_bucket).items() if "/uploads/" in key]
    assert key.startswith("team/audio/uploads/") and key.endswith(reference.removeprefix("upload://"))
    assert data == wav
    assert [p.name for p in (second.data_dir / "uploads").rglob("*") if p.is_file()] == [key.rsplit("/", 1)[1]]


def test_an_upload_the_bucket_refuses_is_answered_503_and_nothing_is_kept(
    settings: ServerSettings, s3_endpoint: str, s3_bucket: str
) -> None:
    token = add_token(settings, "alice")
    bucket_env = {"MCP_AUDIO_OUTPUT_URL": "s3://no-such-bucket/x", "MCP_AUDIO_S3_ENDPOINT_URL": s3_endpoint}
    with http_server(settings, extra_env=bucket_env) as served:
        refused = httpx.post(
            served.url + "/uploads", content=make_wav(1.0), headers={"Authorization": f"Bearer {token}"}
        )
    assert refused.status_code == 503
    assert refused.json()["error"] == (
        "could not store the upload in the bucket no-such-bucket (MCP_AUDIO_OUTPUT_URL): NoSuchBucket; try again later"
    )
    assert [path for path in (settings.data_dir / "uploads").rglob("*") if path.is_file()] == []
