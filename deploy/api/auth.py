"""Optional bearer-token API keys, checked before any route runs.

Keys come from `auth.api_keys` (serve_config.yaml), the `VIDSERVE_API_KEYS` env var (comma
separated) and `auth.api_keys_file` / `VIDSERVE_API_KEYS_FILE` (one key per line, e.g. a mounted
Kubernetes Secret). With no key anywhere the API is open. Only SHA-256 digests are kept; the
presented key's digest is compared with every one of them in constant time. `/healthz` and
`/readyz` stay open for probes. A refusal is a 401 in OpenAI's error shape, which the OpenAI SDK
raises as `AuthenticationError`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from deploy.config import env
from deploy.config.settings import MIN_API_KEY_CHARS, AuthSettings
from deploy.serving.errors import Unauthorized

logger = logging.getLogger("ray.serve.vidserve.auth")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def read_keys_file(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ValueError(
            f"auth.api_keys_file {str(path)!r} cannot be read ({exc.strerror}); mount the "
            "Secret there or unset auth.api_keys_file / VIDSERVE_API_KEYS_FILE"
        ) from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    short = [n for n, key in enumerate(keys, 1) if len(key) < MIN_API_KEY_CHARS]
    if short:
        raise ValueError(
            f"auth.api_keys_file {str(path)!r}: the key on line(s) {short} is shorter than "
            f"{MIN_API_KEY_CHARS} characters"
        )
    return keys


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [_digest(k) for k in keys]

    @classmethod
    def load(cls, settings: AuthSettings) -> ApiKeys:
        keys = [k.get_secret_value() for k in settings.api_keys]
        keys += env.api_keys()
        if settings.api_keys_file is not None:
            keys += read_keys_file(settings.api_keys_file)
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def check(self, authorization: str | None) -> None:
        """Raises Unauthorized unless `authorization` is `Bearer <a configured key>`."""
        if authorization is None:
            raise Unauthorized(
                "no API key: send it as the header 'Authorization: Bearer <key>' (the OpenAI "
                "SDK does this with api_key=...)",
                code="missing_api_key",
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(
                "the Authorization header must be 'Bearer <key>'", code="invalid_api_key"
            )
        presented = _digest(token.strip())
        matched = False
        for digest in self._digests:  # no early exit: the time does not tell which key matched
            matched |= hmac.compare_digest(presented, digest)
        if not matched:
            raise Unauthorized("the API key is not valid", code="invalid_api_key")


class ApiKeyMiddleware:
    """ASGI middleware (streaming-safe, unlike BaseHTTPMiddleware) guarding every other path."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, open_paths: tuple[str, ...]) -> None:
        self.app = app
        self._keys = keys
        self._open = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._keys.enabled or route_path(scope) in self._open:
            await self.app(scope, receive, send)
            return
        try:
            self._keys.check(Headers(scope=scope).get("authorization"))
        except Unauthorized as exc:
            response = JSONResponse(
                exc.to_dict(), status_code=exc.status_code, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The path inside the app (Serve's route prefix is the ASGI root_path)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path
