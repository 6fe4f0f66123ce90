"""HS256 JWTs for POST /v1/auth, signed with the server's own secret (stdlib only)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math

from sandbox.errors import ApiError
from sandbox.state import SandboxState

AUTH_REQUIRED_MESSAGE = "Authorization header is empty (Bearer JWTtoken is required)"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(state: SandboxState) -> str:
    issued = math.floor(state.now())
    claims = {
        "id": "4000000001",
        "email": state.config.email,
        "iat": issued,
        "exp": issued + math.ceil(state.config.jwt_ttl),
    }
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = _b64(hmac.new(state.jwt_secret, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def require(state: SandboxState, authorization: str | None) -> None:
    """Raise 401 AUTH_REQUIRED unless ``authorization`` carries a valid, unexpired token."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "AUTH_REQUIRED", AUTH_REQUIRED_MESSAGE)
    try:
        header, payload, signature = token.split(".")
        expected = hmac.new(state.jwt_secret, f"{header}.{payload}".encode(), hashlib.sha256)
        valid = hmac.compare_digest(_unb64(signature), expected.digest())
        claims = json.loads(_unb64(payload)) if valid else None
    except (ValueError, UnicodeError):
        valid, claims = False, None
    if not valid or not isinstance(claims, dict):
        raise ApiError(401, "AUTH_REQUIRED", "Invalid token")
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= state.now():
        raise ApiError(401, "AUTH_REQUIRED", "Token is expired")
