"""Access tokens: issue and verify JWTs with a pinned algorithm and required claims."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from orchestrator.errors import Unauthorized

REQUIRED_CLAIMS = ("sub", "iss", "aud", "exp", "iat", "jti")
_CACHE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    iat: float
    exp: float
    jti: str


class TokenService:
    def __init__(
        self,
        *,
        secret: str,
        algorithm: str,
        issuer: str,
        audience: str,
        lifetime_seconds: int,
        leeway_seconds: int,
    ) -> None:
        self._secret = secret
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.lifetime_seconds = lifetime_seconds
        self.leeway_seconds = leeway_seconds
        # Verified tokens by their exact text: a hit skips the HMAC but never the expiry check.
        self._verified: dict[str, Claims] = {}

    def issue(self, subject: str) -> str:
        now = time.time()
        payload = {
            "sub": subject,
            "iss": self.issuer,
            "aud": self.audience,
            # sub-second precision, so that a token issued just after a password change
            # is told apart from one issued just before it
            "iat": round(now, 6),
            "exp": int(now) + self.lifetime_seconds,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(payload, self._secret, algorithm=self.algorithm)

    def verify(self, token: str) -> Claims:
        """The token's claims, or `Unauthorized` for anything short of a valid token."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[token] = claims
        if time.time() > claims.exp + self.leeway_seconds:
            self._verified.pop(token, None)
            raise Unauthorized("Token expired")
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("Token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("Invalid token") from None
        sub, iat, exp, jti = payload["sub"], payload["iat"], payload["exp"], payload["jti"]
        if not isinstance(sub, str) or not sub or not isinstance(jti, str):
            raise Unauthorized("Invalid token")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            raise Unauthorized("Invalid token")
        return Claims(sub=sub, iat=float(iat), exp=float(exp), jti=jti)
