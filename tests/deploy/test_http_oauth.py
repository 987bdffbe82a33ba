"""HTTP mode as an OAuth 2.1 resource server, against a loopback issuer (metadata + JWKS) whose
keys are generated here: good tokens pass, every kind of bad one gets 401, metadata is served."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.serve import serve_in_thread
from tests.helpers import assert_secret_kept, text_of
from tests.http_harness import (
    INITIALIZE,
    MCP_HEADERS,
    TRUST,
    add_token,
    free_port,
    http_server,
    mcp_client,
    run_cli,
)

pytestmark = pytest.mark.anyio

AUDIENCE = "https://audio.example.com/mcp"


@dataclass
class Issuer:
    url: str
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    requests: list[str]
    published: list[dict[str, Any]]  # JWKs the issuer publishes besides its own two

    def publish(self, key: Any, kid: str) -> None:
        self.published.append(_public_jwk(key, kid, "RS256"))

    def token(self, alg: str = "RS256", key: Any = None, kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 600} | claims
        body = {name: value for name, value in body.items() if value is not None}
        signer = key or (self.rsa if alg == "RS256" else self.ec)
        return jwt.encode(body, signer, algorithm=alg, headers={"kid": kid or alg.lower()})


def _public_jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(key.public_key(), as_dict=True)
    return jwk | {"kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture(params=["oauth-authorization-server", "openid-configuration"])
def issuer(request: pytest.FixtureRequest) -> Iterator[Issuer]:
    """A loopback authorization server that publishes its metadata the given way, and its keys."""
    requests: list[str] = []
    keys = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
    }
    state: dict[str, str] = {}
    published: list[dict[str, Any]] = []

    async def metadata(incoming: Request) -> JSONResponse:
        requests.append(incoming.url.path)
        url = state["url"]
        return JSONResponse({"issuer": url, "jwks_uri": url + "/jwks", "token_endpoint": url + "/token"})

    async def jwks(incoming: Request) -> JSONResponse:
        requests.append(incoming.url.path)
        return JSONResponse(
            {
                "keys": [
                    _public_jwk(keys["rsa"], "rs256", "RS256"),
                    _public_jwk(keys["ec"], "es256", "ES256"),
                    *published,
                ]
            }
        )

    app = Starlette(routes=[Route(f"/.well-known/{request.param}", metadata), Route("/jwks", jwks)])
    with serve_in_thread(app) as url:
        state["url"] = url
        yield Issuer(url, keys["rsa"], keys["ec"], requests, published)  # type: ignore[arg-type]


def _env(issuer: Issuer) -> dict[str, str]:
    return {"MCP_AUDIO_OAUTH_ISSUER": issuer.url, "MCP_AUDIO_OAUTH_AUDIENCE": AUDIENCE}


def _post(url: str, token: str | None = None) -> httpx.Response:
    headers = MCP_HEADERS | ({"Authorization": f"Bearer {token}"} if token else {})
    return httpx.post(url, json=INITIALIZE, headers=headers, timeout=10, verify=TRUST)


async def test_good_tokens_pass_and_the_principal_is_sub(settings: ServerSettings, issuer: Issuer) -> None:
    with http_server(settings, extra_env=_env(issuer)) as served:
        assert _post(served.mcp, issuer.token("RS256")).status_code == 200
        assert _post(served.mcp, issuer.token("ES256")).status_code == 200
        token = issuer.token("ES256", sub="alice@example.com")
        async with mcp_client(served.mcp, token) as client:
            result = await client.call_tool("elevenlabs_sound_effect", {"text": "rain", "duration_seconds": 3})
        assert not result.is_error, text_of(result)
    assert_secret_kept(token, settings, served.stderr, text_of(result))
    assert "/jwks" in issuer.requests  # discovered through the metadata


async def test_two_oauth_users_have_their_own_jobs(settings: ServerSettings, issuer: Issuer) -> None:
    with http_server(settings, extra_env=_env(issuer)) as served:
        async with mcp_client(served.mcp, issuer.token(sub="ann")) as as_ann:
            made = await as_ann.call_tool("elevenlabs_sound_effect", {"text": "wind", "duration_seconds": 3})
            job_id = made.structured_content["job_id"]  # type: ignore[index]
            assert not (await as_ann.call_tool("get_job", {"job_id": job_id})).is_error
        async with mcp_client(served.mcp, issuer.token("ES256", sub="ben")) as as_ben:
            theirs = await as_ben.call_tool("get_job", {"job_id": job_id})
            listed = await as_ben.call_tool("list_jobs", {})
    assert theirs.is_error and "No job with id" in text_of(theirs)
    assert listed.structured_content == {"jobs": []}


async def test_bad_tokens_get_401_naming_the_resource_metadata(settings: ServerSettings, issuer: Issuer) -> None:
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = issuer.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    bad = {
        "expired": issuer.token(exp=now - 3600, iat=now - 7200),
        "not yet valid": issuer.token(nbf=now + 3600),
        "wrong audience": issuer.token(aud="https://other.example.com/mcp"),
        "wrong issuer": issuer.token(iss="https://evil.example.com"),
        "no exp": issuer.token(exp=None),
        "no sub": issuer.token(sub=None),
        "bad signature (foreign key, known kid)": issuer.token(key=foreign, kid="rs256"),
        "foreign key, unknown kid": issuer.token(key=foreign, kid=uuid.uuid4().hex),
        "EC key id with an RSA signature": issuer.token(kid="es256"),
        "alg none": jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": now + 600}, None, "none"),
        "HS256 with the public key as secret": _hs256_with(public_pem, issuer, now),
        "not a JWT": "abc.def.ghi",
    }
    with http_server(settings, extra_env=_env(issuer)) as served:
        port = served.url.rsplit(":", 1)[1]
        expected = f'resource_metadata="http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"'
        for case, token in bad.items():
            refused = _post(served.mcp, token)
            assert refused.status_code == 401, case
            assert refused.headers["www-authenticate"].startswith("Bearer "), case
            assert expected in refused.headers["www-authenticate"], case
        assert _post(served.mcp).status_code == 401  # OAuth on: a token is required
        assert _post(served.mcp, issuer.token()).status_code == 200
    for token in bad.values():
        assert token not in served.stderr


def _hs256_with(secret: bytes, issuer: Issuer, now: int) -> str:
    # PyJWT refuses to sign HS256 with a PEM key; the attack's token is built by hand.
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rs256"}).encode())
    body = b64(json.dumps({"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": now + 600}).encode())
    signature = b64(hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
    return f"{header}.{body}.{signature}"


async def test_a_rotated_key_is_fetched_when_a_token_names_it(settings: ServerSettings, issuer: Issuer) -> None:
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with http_server(settings, extra_env=_env(issuer)) as served:
        assert _post(served.mcp, issuer.token()).status_code == 200  # keys fetched once
        early = _post(served.mcp, issuer.token(key=rotated, kid="next"))
        issuer.publish(rotated, "next")
        deadline = time.monotonic() + 15
        while _post(served.mcp, issuer.token(key=rotated, kid="next")).status_code != 200:
            assert time.monotonic() < deadline, "the rotated key was never fetched"
            await anyio.sleep(0.5)
        fetches = issuer.requests.count("/jwks")
    assert early.status_code == 401  # not published yet
    assert fetches <= 4  # unknown key ids do not make every request a request to the issuer


def test_protected_resource_metadata_names_the_issuer(settings: ServerSettings, issuer: Issuer) -> None:
    env = _env(issuer) | {"MCP_AUDIO_PUBLIC_URL": "http://127.0.0.1:1"}
    env.pop("MCP_AUDIO_OAUTH_AUDIENCE")  # defaults to the public URL + /mcp
    with http_server(settings, extra_env=env) as served:
        for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
            metadata = httpx.get(served.url + path, timeout=10)
            assert metadata.status_code == 200, path
            assert metadata.json()["authorization_servers"] == [issuer.url]  # exactly, no slash added
            assert metadata.json()["resource"] == "http://127.0.0.1:1/mcp"
        now = int(time.time())
        assert _post(served.mcp, issuer.token(aud="http://127.0.0.1:1/mcp", exp=now + 60)).status_code == 200
        assert _post(served.mcp, issuer.token()).status_code == 401  # AUDIENCE is not this resource


def test_tokens_still_work_beside_oauth(settings: ServerSettings, issuer: Issuer) -> None:
    token = add_token(settings, "ci")
    with http_server(settings, extra_env=_env(issuer)) as served:
        assert _post(served.mcp, token).status_code == 200
        assert _post(served.mcp, issuer.token()).status_code == 200


@pytest.mark.parametrize("issuer_url", ["http://127.0.0.1:9", "http://auth.example.com", "ftp://auth.example.com"])
def test_an_http_issuer_is_refused_off_loopback(settings: ServerSettings, issuer_url: str) -> None:
    add_token(settings, "x")
    args = ["serve", "--http", "--host", "0.0.0.0", "--port", str(free_port())]
    done = run_cli(settings, *args, extra_env={"MCP_AUDIO_OAUTH_ISSUER": issuer_url})
    assert done.returncode == 1
    assert "MCP_AUDIO_OAUTH_ISSUER" in done.stderr and ("https://" in done.stderr or "http://" in done.stderr)


def test_oauth_on_every_address_needs_the_public_url(settings: ServerSettings) -> None:
    args = ["serve", "--http", "--host", "0.0.0.0", "--port", str(free_port())]
    done = run_cli(settings, *args, extra_env={"MCP_AUDIO_OAUTH_ISSUER": "https://login.example.com"})
    assert done.returncode == 1 and "set MCP_AUDIO_PUBLIC_URL" in done.stderr
