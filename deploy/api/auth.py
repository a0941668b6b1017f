"""Optional bearer-token API keys, checked before any route runs.

Keys come from `auth.api_keys` (serve_config.yaml), the `VIDSERVE_API_KEYS` env var (comma
separated) and `auth.api_keys_file` / `VIDSERVE_API_KEYS_FILE` (one key per line, e.g. a mounted
Kubernetes Secret). With no key anywhere the API is open. Only SHA-256 digests are kept; the
presented key's digest is compared with every one of them in constant time. `/healthz` and
`/readyz` stay open for probes. A refusal is a 401 in OpenAI's error shape, which the OpenAI SDK
raises as `AuthenticationError`. `auth.max_concurrent_per_key` caps the requests one key has in
flight on a replica (a 429 with Retry-After past it: the SDK's `RateLimitError`, which it retries).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter
from pathlib import Path

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from deploy.api.error_handlers import error_response
from deploy.config import env
from deploy.config.settings import MIN_API_KEY_CHARS, AuthSettings
from deploy.core.errors import TooManyRequests, Unauthorized

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
        # Who owns a job (deploy/jobs/): a fingerprint of the key, never the key itself.
        self._owners = [
            hashlib.sha256(b"vidserve-owner:" + k.encode()).hexdigest()[:24] for k in keys
        ]

    @classmethod
    def load(cls, settings: AuthSettings) -> ApiKeys:
        keys = [k.get_secret_value() for k in settings.api_keys]
        from_env = env.api_keys()
        short = [n for n, key in enumerate(from_env, 1) if len(key) < MIN_API_KEY_CHARS]
        if short:
            raise ValueError(
                f"VIDSERVE_API_KEYS: key number {short} (comma-separated) is shorter than "
                f"{MIN_API_KEY_CHARS} characters; use a random key such as `python -c 'import "
                "secrets; print(secrets.token_urlsafe(32))'`"
            )
        keys += from_env
        if settings.api_keys_file is not None:
            keys += read_keys_file(settings.api_keys_file)
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def owner(self, position: int) -> str:
        """The stable fingerprint of the key at `position` (it survives reordering keys)."""
        return self._owners[position]

    def check(self, authorization: str | None) -> int:
        """Which configured key `authorization` (`Bearer <key>`) presents, by position;
        Unauthorized unless it is one."""
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
        matched = -1
        for position, digest in enumerate(self._digests):
            # No early exit: the time does not tell which key matched.
            if hmac.compare_digest(presented, digest):
                matched = position
        if matched < 0:
            raise Unauthorized("the API key is not valid", code="invalid_api_key")
        return matched


def check_exposure(settings: AuthSettings, keys: ApiKeys, *, in_cluster: bool) -> None:
    """An ingress in a Kubernetes pod (reachable through its Service) refuses to start without
    keys unless auth.allow_open_network says so; `vidserve run` binds loopback instead
    (config/serve_config.py `bind_safely`)."""
    if keys.enabled or settings.allow_open_network or not in_cluster:
        return
    raise ValueError(
        "no API key is configured and this ingress runs in a Kubernetes pod, where every job, "
        "caption and search result would be open to whoever reaches the Service: mount keys "
        "(VIDSERVE_API_KEYS_FILE from the vidserve-api-keys Secret, see docs/deploy-kuberay.md) "
        "or set auth.allow_open_network: true to serve without keys on purpose"
    )


class ApiKeyMiddleware:
    """ASGI middleware (streaming-safe, unlike BaseHTTPMiddleware) guarding every other path."""

    def __init__(
        self,
        app: ASGIApp,
        keys: ApiKeys,
        open_paths: tuple[str, ...],
        max_concurrent_per_key: int = 0,
        retry_after_s: int = 1,
    ) -> None:
        self.app = app
        self._keys = keys
        self._open = frozenset(p for p in open_paths if not p.endswith("*"))
        self._open_prefixes = tuple(p.removesuffix("*") for p in open_paths if p.endswith("*"))
        self._max_per_key = max_concurrent_per_key
        self._retry_after_s = retry_after_s
        self._in_flight: Counter[int] = Counter()  # key position -> requests in flight here

    def _is_open(self, path: str) -> bool:
        return path in self._open or (
            bool(self._open_prefixes) and path.startswith(self._open_prefixes)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._keys.enabled:
            await self.app(scope, receive, send)
            return
        if self._is_open(route_path(scope)):
            # Open to all, but a valid key is still recognised (/readyz then tells more).
            authorization = Headers(scope=scope).get("authorization")
            if authorization is not None:
                try:
                    key = self._keys.check(authorization)
                except Unauthorized:
                    pass
                else:
                    scope.setdefault("state", {})["owner"] = self._keys.owner(key)
            await self.app(scope, receive, send)
            return
        try:
            key = self._keys.check(Headers(scope=scope).get("authorization"))
        except Unauthorized as exc:
            response = error_response(exc, scope)
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        if self._max_per_key and self._in_flight[key] >= self._max_per_key:
            refused = TooManyRequests(
                f"this API key already has {self._in_flight[key]} requests in flight, the most "
                f"auth.max_concurrent_per_key allows; retry after {self._retry_after_s} s",
                details={"retry_after_s": self._retry_after_s},
            )
            await error_response(refused, scope)(scope, receive, send)
            return
        scope.setdefault("state", {})["owner"] = self._keys.owner(key)
        self._in_flight[key] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._in_flight[key] -= 1


def route_path(scope: Scope) -> str:
    """The path inside the app (Serve's route prefix is the ASGI root_path)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path
