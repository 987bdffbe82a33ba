"""Who is calling: the SDK's TokenVerifier over our bearer tokens and the OAuth issuer's JWTs. The
principal it puts in the token's claims is what `server.principal.current_principal` reads."""

from __future__ import annotations

import logging

import anyio.to_thread
from mcp.server.auth.provider import AccessToken, TokenVerifier

from mcp_audio.deploy.oauth import LEEWAY_S, OAuthVerifier
from mcp_audio.store.tokens import PREFIX, TokenFile

log = logging.getLogger("mcp_audio.auth")

OAUTH_PREFIX = "oauth:"
TOKEN_ISSUER = "mcp-audio"  # the `iss` our own tokens are reported with, for the SDK's session binding


class Verifier(TokenVerifier):
    """Accepts a live token of the token file, or a valid JWT of the configured issuer."""

    def __init__(self, tokens: TokenFile, oauth: OAuthVerifier | None) -> None:
        self.tokens = tokens
        self.oauth = oauth

    async def verify_token(self, token: str) -> AccessToken | None:
        if token.startswith(PREFIX):
            # The token file's stat, or the shared table's read: on a worker thread, not the loop.
            entry = await anyio.to_thread.run_sync(self.tokens.lookup, token)
            if entry is None:
                log.info("refused an unknown or revoked bearer token")
                return None
            claims = {"iss": TOKEN_ISSUER, "principal": entry.principal}
            return AccessToken(token=token, client_id=entry.principal, scopes=[], subject=entry.name, claims=claims)
        if self.oauth is None:
            return None
        jwt_claims = await self.oauth.verify(token)
        if jwt_claims is None:
            return None
        sub = jwt_claims["sub"]
        client_id = str(jwt_claims.get("client_id") or jwt_claims.get("azp") or sub)
        claims = {"iss": jwt_claims["iss"], "principal": OAUTH_PREFIX + sub}
        exp = jwt_claims.get("exp")
        return AccessToken(
            token=token,
            client_id=client_id,
            scopes=str(jwt_claims.get("scope", "")).split(),
            expires_at=int(exp) + LEEWAY_S if isinstance(exp, int | float) else None,  # exp already checked
            subject=sub,
            claims=claims,
        )
