"""OAuth 2.1 resource server: verify the issuer's JWT access tokens (RS256, ES256) with PyJWT.

The issuer's metadata (RFC 8414, or OpenID discovery) names its `jwks_uri`; keys are cached
and fetched again when a token names a key id we do not hold (key rotation), at most once
per REFETCH_S. Only asymmetric algorithms are accepted, so `alg: none` and the HS256
public-key-as-secret confusion are refused before any key is looked at.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlparse

import anyio

from mcp_audio.core.errors import ConfigError

log = logging.getLogger("mcp_audio.oauth")

ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}  # alg -> the JWK key type it needs
LEEWAY_S = 30  # clock skew allowed on exp and nbf
KEYS_TTL_S = 600.0
REFETCH_S = 5.0
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    return host in LOOPBACK or host.startswith("127.")


def check_issuer(issuer: str, bind_host: str) -> None:
    """An https issuer anywhere; an http one only on loopback, served on loopback."""
    parsed = urlparse(issuer)
    if parsed.scheme == "https" and parsed.hostname:
        return
    if parsed.scheme == "http" and parsed.hostname and is_loopback(parsed.hostname) and is_loopback(bind_host):
        return
    raise ConfigError(
        f"MCP_AUDIO_OAUTH_ISSUER={issuer!r} must be an https:// URL (http:// is accepted only for an issuer on "
        "loopback, with the server bound to loopback)"
    )


def metadata_urls(issuer: str) -> list[str]:
    """Where the issuer's metadata may be: RFC 8414 path insertion first, then OpenID's forms."""
    parsed = urlparse(issuer)
    base, path = f"{parsed.scheme}://{parsed.netloc}", parsed.path.rstrip("/")
    return [
        f"{base}/.well-known/oauth-authorization-server{path}",
        f"{base}/.well-known/openid-configuration{path}",
        f"{base}{path}/.well-known/openid-configuration",
    ]


class OAuthVerifier:
    def __init__(self, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self._keys: list[Any] = []  # jwt.PyJWK
        self._fetched_at = 0.0
        self._jwks_uri: str | None = None
        self._lock = anyio.Lock()

    async def verify(self, token: str) -> dict[str, Any] | None:
        """The token's claims when it is valid for this resource; None (logged why) otherwise."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            log.info("refused an access token signed with alg %r (allowed: %s)", alg, ", ".join(ALGORITHMS))
            return None
        for key in await self._candidates(header.get("kid"), alg):
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.key,
                    algorithms=[alg],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=LEEWAY_S,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
            except jwt.InvalidSignatureError:
                continue  # another key of the set may have signed it
            except jwt.PyJWTError as exc:
                log.info("refused an access token: %s", exc)
                return None
            if not isinstance(claims.get("sub"), str) or not claims["sub"]:
                return None
            return claims
        log.info("refused an access token: no key of the issuer's JWKS verifies its signature")
        return None

    async def _candidates(self, kid: str | None, alg: str) -> list[Any]:
        keys = await self._key_set(refresh=False)
        if kid is not None and not any(key.key_id == kid for key in keys):
            keys = await self._key_set(refresh=True)  # the issuer may have rotated its keys
        kty = ALGORITHMS[alg]
        return [
            key
            for key in keys
            if key.key_type == kty
            and (kid is None or key.key_id == kid)
            and (key.algorithm_name in (None, alg))
            and key.public_key_use in (None, "sig")
        ]

    async def _key_set(self, *, refresh: bool) -> list[Any]:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            stale = not self._keys or refresh or age > KEYS_TTL_S
            # Asked again at most every REFETCH_S: a failing issuer or a stream of foreign key ids
            # must not turn each request into a request to the issuer.
            if self._fetched_at == 0 or (stale and age > REFETCH_S):
                try:
                    self._keys = await self._fetch_keys()
                except (OSError, ValueError, KeyError) as exc:
                    log.warning("could not fetch the OAuth issuer's keys: %s", exc)
                self._fetched_at = time.monotonic()
            return self._keys

    async def _fetch_keys(self) -> list[Any]:
        import httpx
        import jwt

        from mcp_audio.net import http_client

        async with http_client(timeout=10.0, follow_redirects=False) as http:  # the shared trust store
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover(http)
            try:
                response = await http.get(self._jwks_uri)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise OSError(f"{self._jwks_uri}: {exc}") from exc
            try:
                return list(jwt.PyJWKSet.from_dict(response.json()).keys)
            except jwt.PyJWKSetError as exc:
                raise ValueError(f"{self._jwks_uri} holds no usable key ({exc})") from exc

    async def _discover(self, http: Any) -> str:
        import httpx

        for url in metadata_urls(self.issuer):
            try:
                response = await http.get(url)
            except httpx.HTTPError as exc:
                raise OSError(f"{url}: {exc}") from exc
            if response.status_code != 200:
                continue
            metadata = response.json()
            if metadata.get("issuer") != self.issuer:
                raise ValueError(f"{url} names issuer {metadata.get('issuer')!r}, not {self.issuer!r}")
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str) or urlparse(jwks_uri).scheme != urlparse(self.issuer).scheme:
                raise ValueError(f"{url} has no usable jwks_uri ({jwks_uri!r})")
            return jwks_uri
        tried = ", ".join(metadata_urls(self.issuer))
        raise ValueError(f"no authorization server metadata for {self.issuer} (tried {tried})")
